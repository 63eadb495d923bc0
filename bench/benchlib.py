"""What the benchmarks share: the three implementations behind one interface,
and the workloads, taken from rgrad.benchmarks (which `python -m rgrad bench`
runs) so that both measure the same code.

Each implementation is an `Impl`: `leaf(x)` makes a leaf that takes a grad,
`data(v)` / `grad(v)` read a node as a float, `mlp(nin, nouts)` builds
micrograd's MLP with micrograd's weight draws, `zero_grad(model)` clears its
parameters' grads, and `rounds[workload]` says how many timed rounds the
workload gets (sized so that the whole suite stays around a minute).
"""
import gc
import random

CHAIN_STEPS = 30_000
MEM_STEPS = 100_000           # chain length for bench/test_bench_memory.py

IMPLS = ("rgrad", "micrograd", "torch")


class Impl:
    def __init__(self, name, leaf, data, grad, mlp, zero_grad, rounds):
        self.name = name
        self.leaf = leaf
        self.data = data
        self.grad = grad
        self.mlp = mlp
        self.zero_grad = zero_grad
        self.rounds = rounds

    @staticmethod
    def sgd(model, lr):
        """micrograd's update: p.data -= lr * p.grad for every parameter."""
        for p in model.parameters():
            p.data -= lr * p.grad


def _rgrad():
    import rgrad  # noqa: F401
    from rgrad import Value
    from rgrad.nn import MLP
    return Impl("rgrad", Value, lambda v: v.data, lambda v: v.grad, MLP,
                lambda m: m.zero_grad(),
                {"build": 50, "backward": 50, "demo-step": 30, "memory": 5})


def _micrograd(micrograd):
    from micrograd.engine import Value
    from micrograd.nn import MLP
    return Impl("micrograd", Value, lambda v: v.data, lambda v: v.grad, MLP,
                lambda m: m.zero_grad(),
                {"build": 7, "backward": 7, "demo-step": 3, "memory": 1})


def _torch(torch):
    def leaf(x):
        return torch.tensor(float(x), dtype=torch.float64, requires_grad=True)

    def grad(v):
        return 0.0 if v.grad is None else v.grad.item()

    def mlp(nin, nouts):
        return TorchScalarMLP(nin, nouts, leaf)

    def zero_grad(model):
        for p in model.parameters():
            p.grad = None

    return Impl("torch", leaf, lambda v: v.item(), grad, mlp, zero_grad,
                {"build": 7, "backward": 7, "demo-step": 5, "memory": 1})


def make_impl(name, importorskip):
    """The Impl called `name`; `importorskip` is pytest.importorskip, so that a
    missing micrograd or torch skips only its own benchmarks."""
    if name == "rgrad":
        return _rgrad()
    if name == "micrograd":
        return _micrograd(importorskip("micrograd"))
    if name == "torch":
        return _torch(importorskip("torch"))
    raise ValueError(name)


# ---- torch: micrograd's MLP on scalar float64 tensors -------------------------

class _TorchNeuron:
    def __init__(self, nin, nonlin, leaf):
        self.w = [leaf(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = leaf(0.0)
        self.nonlin = nonlin

    def __call__(self, x):
        act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return act.relu() if self.nonlin else act

    def parameters(self):
        return self.w + [self.b]


class TorchScalarMLP:
    """micrograd.nn.MLP, neuron by neuron, on scalar tensors: the same weight
    draws in the same order and the same arithmetic order, so a seeded model
    gives micrograd's numbers."""

    def __init__(self, nin, nouts, leaf):
        sz = [nin] + list(nouts)
        self.layers = [[_TorchNeuron(sz[i], i != len(nouts) - 1, leaf)
                        for _ in range(sz[i + 1])] for i in range(len(nouts))]

    def __call__(self, x):
        for layer in self.layers:
            out = [n(x) for n in layer]
            x = out[0] if len(out) == 1 else out
        return x

    def parameters(self):
        return [p for layer in self.layers for n in layer for p in n.parameters()]


# ---- workloads: the ones `python -m rgrad bench` runs (rgrad/benchmarks.py) --

from rgrad.benchmarks import (  # noqa: E402
    DEMO_ACCURACY as DEMO_EXPECTED_ACCURACY, DEMO_LOSS as DEMO_EXPECTED_LOSS,
    SEED_EXPECTED, chain, chain_expected, demo_model, demo_step, moons, seed)
from rgrad.benchmarks import checksum as params_checksum  # noqa: E402
from rgrad.benchmarks import with_big_stack as run_with_big_stack  # noqa: E402


def chain_leaves(impl, n=CHAIN_STEPS):
    from rgrad.benchmarks import chain_leaves as leaves
    return leaves(impl, n)


def fresh():
    """Between rounds (untimed): free the previous round's garbage, so that a
    round does not pay the cyclic GC for its predecessor's graph."""
    gc.collect()
