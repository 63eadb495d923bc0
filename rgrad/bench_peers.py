"""The replayed demo step and its like-for-like peers, for `python -m rgrad
bench` and bench/test_bench_replayed.py.

One step of micrograd's demo (100 moons, MLP 2-16-16-1, mean hinge loss +
1e-4 L2, gradient, SGD with lr 1) whose computation is prepared once and then
run again every step, by each engine in its own way:

    rgrad-replay    rgrad's graph built once: forward(), zero_grad,
                    backward(), rgrad.optim.SGD.step()
    rgrad-batch     one sample's loss built once and run over the 100 rows
                    by rgrad.Batch, the L2 term replayed beside it, SGD
    torch-tensors   PyTorch on a batch of 100 (float64 tensors, one thread):
                    no graph to reuse, but the work is in vectorized kernels
    jax-jit         jax.jit of the whole step (loss, grad, update), float64,
                    XLA on one thread
    casadi-vm       a CasADi SX graph of loss and updated parameters,
                    evaluated by its Function virtual machine

These are set beside micrograd's *eager* step (micrograd has no other), and
the table says so. Every peer starts from micrograd's seeded weights, so its
step-0 loss and parameter sum must match micrograd's (bench_workloads.DEMO_*)
to 1e-9: a peer that computes something else is reported, not timed as equal.
"""
import os
import random

from .bench_workloads import version_of

__all__ = ["PEER_ORDER", "PEER_INSTALL", "load_peers", "seeded_weights"]

PEER_ORDER = ("rgrad-replay", "rgrad-batch", "torch-tensors", "jax-jit", "casadi-vm")
PEER_INSTALL = {"torch-tensors": "pip install torch", "jax-jit": "pip install jax",
                "casadi-vm": "pip install casadi"}
SIZES = (2, 16, 16, 1)
ALPHA = 1e-4
LR = 1.0


def seeded_weights():
    """[(W, b)] per layer as lists, W[j] the j-th neuron's weights: micrograd's
    draws after random.seed(1337) (neuron by neuron, biases 0)."""
    random.seed(1337)
    layers = []
    for nin, nout in zip(SIZES, SIZES[1:]):
        W = [[random.uniform(-1, 1) for _ in range(nin)] for _ in range(nout)]
        layers.append((W, [0.0] * nout))
    return layers


class _RgradReplay:
    def __init__(self, X, y):
        from .bench_workloads import LOADERS, demo_loss, demo_model
        from .optim import SGD
        impl = LOADERS["rgrad"]()
        self.model = demo_model(impl)
        _, self.total = demo_loss(impl, self.model, X, y)
        self.opt = SGD(self.model.parameters(), lr=LR)

    def step(self):
        self.total.forward()
        self.opt.zero_grad()
        self.total.backward()
        self.opt.step()

    def loss(self):
        return self.total.data

    def param_sum(self):
        return sum(p.data for p in self.model.parameters())


class _RgradBatch:
    def __init__(self, X, y, threads=1):
        from . import Batch, Value, values
        from .bench_workloads import LOADERS, demo_model
        from .optim import SGD
        impl = LOADERS["rgrad"]()
        self.model = demo_model(impl)
        x, t = values([0.0, 0.0]), Value(0.0)
        loss1 = (1 + -t * self.model(x)).relu()       # one sample's hinge loss
        self.batch = Batch([loss1], inputs=[*x, t], threads=threads)
        self.reg = ALPHA * sum(p * p for p in self.model.parameters())
        rows = [[x0, x1, yi] for (x0, x1), yi in zip(X, y)]
        try:
            import numpy
            rows = numpy.asarray(rows, dtype=float)
        except ImportError:
            pass
        self.rows, self.n = rows, len(y)
        self.opt = SGD(self.model.parameters(), lr=LR)
        self.total = None

    def step(self):
        out = self.batch.forward(self.rows)
        self.reg.forward()
        self.opt.zero_grad()
        self.batch.backward(scale=1.0 / self.n)
        self.reg.backward()
        self.opt.step()
        first = out[:, 0].sum() if hasattr(out, "shape") else sum(r[0] for r in out)
        self.total = (float(first) * (1.0 / self.n), self.reg.data)

    def loss(self):
        return self.total[0] + self.total[1]

    def param_sum(self):
        return sum(p.data for p in self.model.parameters())


class _TorchTensors:
    def __init__(self, X, y):
        import torch
        torch.set_num_threads(1)
        self.torch = torch
        f64 = torch.float64
        self.params = [torch.tensor(t, dtype=f64, requires_grad=True)
                       for W, b in seeded_weights() for t in (W, b)]
        self.X = torch.tensor(X, dtype=f64)
        self.y = torch.tensor(y, dtype=f64)
        self.total = None

    def step(self):
        torch, p = self.torch, self.params
        h = self.X
        for i in range(0, len(p), 2):
            h = h @ p[i].T + p[i + 1]
            if i + 2 < len(p):
                h = torch.relu(h)
        total = (torch.relu(1 - self.y * h[:, 0]).mean()
                 + ALPHA * sum((q * q).sum() for q in p))
        for q in p:
            q.grad = None
        total.backward()
        with torch.no_grad():
            for q in p:
                q -= LR * q.grad
        self.total = total.detach()

    def loss(self):
        return self.total.item()

    def param_sum(self):
        return sum(q.sum().item() for q in self.params)


class _JaxJit:
    def __init__(self, X, y):
        # one XLA thread, as for torch; only effective before jax starts
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                           "intra_op_parallelism_threads=1")
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        self.jax = jax

        def loss_fn(params, X, y):
            h = X
            for i, (W, b) in enumerate(params):
                h = h @ W.T + b
                if i + 1 < len(params):
                    h = jnp.maximum(h, 0.0)
            data = jnp.mean(jnp.maximum(1.0 - y * h[:, 0], 0.0))
            return data + ALPHA * sum(jnp.sum(W * W) + jnp.sum(b * b)
                                      for W, b in params)

        def step(params, X, y):
            total, grads = jax.value_and_grad(loss_fn)(params, X, y)
            return total, [(W - LR * dW, b - LR * db)
                           for (W, b), (dW, db) in zip(params, grads)]

        self._step = jax.jit(step)
        self.params = [(jnp.asarray(W, dtype=jnp.float64),
                        jnp.asarray(b, dtype=jnp.float64))
                       for W, b in seeded_weights()]
        self.X = jnp.asarray(X, dtype=jnp.float64)
        self.y = jnp.asarray(y, dtype=jnp.float64)
        self.total = None

    def step(self):
        self.total, self.params = self._step(self.params, self.X, self.y)
        self.jax.block_until_ready((self.total, self.params))

    def loss(self):
        return float(self.total)

    def param_sum(self):
        return sum(float(W.sum()) + float(b.sum()) for W, b in self.params)


class _CasadiVM:
    def __init__(self, X, y):
        import casadi as ca
        weights = seeded_weights()
        flat = []                    # micrograd's parameter order: w..., b per neuron
        for W, b in weights:
            for wj, bj in zip(W, b):
                flat += wj + [bj]
        P = ca.SX.sym("p", len(flat))
        h = ca.DM(X)
        k = 0
        for i, (nin, nout) in enumerate(zip(SIZES, SIZES[1:])):
            rows = []
            for _ in range(nout):
                rows.append(P[k:k + nin + 1].T)
                k += nin + 1
            Wb = ca.vertcat(*rows)                   # nout x (nin + 1): [W | b]
            W, b = Wb[:, :nin], Wb[:, nin]
            h = ca.mtimes(h, W.T) + ca.repmat(b.T, h.shape[0], 1)
            if i + 2 < len(SIZES):
                h = ca.fmax(h, 0)
        margins = ca.fmax(1 - ca.DM(y) * h, 0)
        total = ca.sum1(margins) / len(y) + ALPHA * ca.sumsqr(P)
        self.fn = ca.Function("demo_step", [P], [total, P - LR * ca.gradient(total, P)])
        self.p = ca.DM(flat)
        self.total = None

    def step(self):
        self.total, self.p = self.fn(self.p)

    def loss(self):
        return float(self.total)

    def param_sum(self):
        return float(sum(self.p.full().ravel()))


def _versions():
    def torch_version():
        import torch
        return torch.__version__

    def jax_version():
        import jax
        return jax.__version__

    def casadi_version():
        import casadi
        return version_of("casadi", casadi)

    from . import __version__
    return {"rgrad-replay": lambda: __version__, "rgrad-batch": lambda: __version__,
            "torch-tensors": torch_version,
            "jax-jit": jax_version, "casadi-vm": casadi_version}


FACTORIES = {"rgrad-replay": _RgradReplay, "rgrad-batch": _RgradBatch,
             "torch-tensors": _TorchTensors,
             "jax-jit": _JaxJit, "casadi-vm": _CasadiVM}


def load_peers():
    """({name: (version, factory)} for what is installed, {name: install
    hint} for what is not). factory(X, y) returns an object with step(),
    loss() (the last step's loss, before its update) and param_sum()."""
    peers, missing = {}, {}
    for name, version in _versions().items():
        try:
            peers[name] = (version(), FACTORIES[name])
        except ImportError:
            missing[name] = PEER_INSTALL[name]
    return peers, missing
