"""Optimizers that update every parameter in one C call, as PyTorch's do.

    opt = rgrad.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad(); loss.backward(); opt.step()

`lr` (and the other hyperparameters) may change between steps.
"""
from collections.abc import Iterable

from ._rgrad import ffi, lib
from .engine import Value, _check

__all__ = ["Optimizer", "SGD", "Adam"]


class Optimizer:
    """Holds the parameters' handles in a C array; the parameters themselves
    are kept alive by `self.params`."""

    def __init__(self, params: Iterable[Value], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for p in self.params:
            if not isinstance(p, Value):
                raise TypeError(f"optimizer parameters must be Values, not {type(p).__name__!r}")
        if not lr >= 0.0:
            raise ValueError(f"invalid learning rate: {lr}")
        self.lr = lr
        self._n = len(self.params)
        self._h = ffi.new("int32_t[]", [p._s for p in self.params])

    # Pickle and copy: the C arrays become lists, and the handles are taken
    # again from the parameters (copied along with the optimizer).
    _buffers = ()

    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k != "_h"}
        for k in self._buffers:
            if state.get(k) is not None:
                state[k] = list(state[k])
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._h = ffi.new("int32_t[]", [p._s for p in self.params])
        for k in self._buffers:
            if state.get(k) is not None:
                setattr(self, k, ffi.new("double[]", state[k]))

    def zero_grad(self) -> None:
        """Set every parameter's grad to zero."""
        _check(lib.rg_set_many(self._h, self._n, lib.RG_GRAD, ffi.NULL))   # int 0s

    def step(self) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """p -= lr * g, where g is the grad plus weight_decay * p, and with momentum
    the running sum buf = momentum * buf + g takes g's place. With the defaults
    this is exactly micrograd's `p.data -= lr * p.grad`."""

    _buffers = ("_velocity",)

    def __init__(self, params: Iterable[Value], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        if not momentum >= 0.0 or not weight_decay >= 0.0:
            raise ValueError("momentum and weight_decay must be >= 0")
        self.momentum = momentum
        self.weight_decay = weight_decay
        self._velocity = None
        self._first = True

    def step(self) -> None:
        velocity = ffi.NULL
        if self.momentum != 0.0:
            if self._velocity is None:
                self._velocity = ffi.new("double[]", self._n)
            velocity = self._velocity
        _check(lib.rg_sgd_step(self._h, self._n, self.lr, self.momentum,
                               self.weight_decay, velocity,
                               velocity != ffi.NULL and self._first))
        if velocity != ffi.NULL:
            self._first = False


class Adam(Optimizer):
    """Adam (Kingma and Ba), computed as torch.optim.Adam computes it."""

    _buffers = ("_m", "_v")

    def __init__(self, params: Iterable[Value], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"invalid betas: {betas}")
        if not eps >= 0.0 or not weight_decay >= 0.0:
            raise ValueError("eps and weight_decay must be >= 0")
        self.betas = (b1, b2)
        self.eps = eps
        self.weight_decay = weight_decay
        self.t = 0
        self._m = ffi.new("double[]", self._n)
        self._v = ffi.new("double[]", self._n)

    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        _check(lib.rg_adam_step(self._h, self._n, self.lr, b1, b2, self.eps,
                                self.weight_decay, self.t, self._m, self._v))
