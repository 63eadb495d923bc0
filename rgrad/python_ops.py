"""Ops defined in Python: micrograd's extension pattern (`Value(data,
children, op)` with an `out._backward` closure) and rgrad.Function, which can
also be replayed. Their nodes are RG_PY nodes; `_walk` runs a graph holding
them, C running the built-in ops between them."""
from ._rgrad import ffi, lib
from .collection import _closures, _forwards, _names
from .engine import _RG_PYGRAPH, Value, _check
from .graph import _children


def _nothing():
    pass


def _walk(root, backward):
    """backward() or forward() over a graph that may hold Python ops: C runs
    the built-in ops between them; Python runs each Python op in its turn."""
    try:
        lib.rg_pin(1)   # first in the try: an exception landing after it unpins
        n = _check(lib.rg_tape(root, ffi.NULL, 0))
        tape = ffi.new("int32_t[]", n)
        _check(lib.rg_tape(root, tape, n))
        pos = ffi.new("int32_t *", n - 1 if backward else 0)
        node = ffi.new("uint64_t *")
        if backward:
            _check(lib.rg_set_grad(root, 1.0, True))   # micrograd's int 1
        while True:
            rc = lib.rg_run(tape, n, pos, backward, node)
            if rc != _RG_PYGRAPH:
                _check(rc)
                return
            i = node[0]
            if backward:
                entry = _closures.get(i)
                if entry is not None:
                    entry[0]()
            else:
                _replay_python_op(i)
            pos[0] += -1 if backward else 1
    finally:
        lib.rg_pin(-1)


def _replay_python_op(i):
    entry, closure = _forwards.get(i), _closures.get(i)
    out = None
    if entry is not None and closure is not None:
        cls, k = entry
        out = _contents(closure[0].__closure__[k])
    if not isinstance(out, Value):
        raise RuntimeError(
            f"forward(): the graph holds the op {_names.get(i, '')!r}, defined in "
            "Python with a _backward closure only, and its data cannot be "
            "recomputed; define it as an rgrad.Function to make it replayable")
    out.data = cls.forward(*[x.data for x in _children(out)])
    out.grad = 0


def _contents(cell):
    try:
        return cell.cell_contents
    except ValueError:  # the variable was deleted in its function
        return None


class Function:
    """An op defined in Python with both a forward and a backward, which
    `forward()` can replay (in the spirit of torch.autograd.Function):

        class Cube(rgrad.Function):
            @staticmethod
            def forward(x):                 # input data -> output data
                return x ** 3
            @staticmethod
            def backward(grad, out, x):     # d root/d out, output data, input data
                return (3 * x ** 2 * grad,) # -> d root/d input, one per input

        y = Cube.apply(v)
    """

    @staticmethod
    def forward(*inputs):
        raise NotImplementedError

    @staticmethod
    def backward(grad, out, *inputs):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs):
        xs = tuple(x if isinstance(x, Value) else Value(x) for x in inputs)
        out = Value(cls.forward(*[x.data for x in xs]), xs, cls.__name__)
        del xs        # the closure finds the inputs through the node: it holds
                      # only `out`, so a chain of these frees in one collection

        def _backward():
            xs = _children(out)
            grads = tuple(cls.backward(out.grad, out.data, *[x.data for x in xs]))
            if len(grads) != len(xs):
                raise ValueError(f"{cls.__name__}.backward returned {len(grads)} "
                                 f"grads for {len(xs)} inputs")
            for x, g in zip(xs, grads):
                x.grad += g
        out._backward = _backward
        _forwards[lib.rg_id(out._s)] = (cls, _backward.__code__.co_freevars.index("out"))
        return out
