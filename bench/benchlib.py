"""What the benchmarks share: the three implementations behind one interface,
the workloads written once for all of them, and a big-stack thread runner.

Each implementation is an `Impl`: `leaf(x)` makes a leaf that takes a grad,
`data(v)` / `grad(v)` read a node as a float, `mlp(nin, nouts)` builds
micrograd's MLP with micrograd's weight draws, `zero_grad(model)` clears its
parameters' grads, and `rounds[workload]` says how many timed rounds the
workload gets (sized so that the whole suite stays around a minute).
"""
import gc
import random
import sys
import threading

CHAIN_STEPS = 30_000
MEM_STEPS = 100_000           # chain length for bench/test_bench_memory.py

# micrograd's backward is recursive (build_topo): the 30,000-step chain is
# ~60,000 calls deep.
RECURSION_LIMIT = 200_000
BIG_STACK = 512 * 1024 * 1024

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


# ---- workloads ----------------------------------------------------------------

def chain(impl, x):
    """acc = acc * 0.999 + x[i] over all of x, from a leaf 0.0."""
    acc = impl.leaf(0.0)
    for xi in x:
        acc = acc * 0.999 + xi
    return acc


def chain_leaves(impl, n=CHAIN_STEPS):
    return [impl.leaf(float(i % 7)) for i in range(n)]


def chain_expected(n=CHAIN_STEPS):
    """(acc, d acc / d x[0], d acc / d x[-1]) for chain(chain_leaves(n)), by
    the same recurrence in floats."""
    acc = 0.0
    for i in range(n):
        acc = acc * 0.999 + float(i % 7)
    return acc, 0.999 ** (n - 1), 1.0


def seed(impl):
    """micrograd's README example, build and backward. Written with explicit
    rebinding (`c = c + (c + 1)`), which is what `c += c + 1` does for
    micrograd and rgrad Values (no __iadd__); for torch it avoids in-place ops."""
    V = impl.leaf
    a = V(-4.0)
    b = V(2.0)
    c = a + b
    d = a * b + b**3
    c = c + (c + 1)
    c = c + (1 + c + (-a))
    d = d + (d * 2 + (b + a).relu())
    d = d + (3 * d + (b - a).relu())
    e = c - d
    f = e**2
    g = f / 2.0
    g = g + 10.0 / f
    g.backward()
    return a, b, g


SEED_EXPECTED = {"g": 24.70408163265306, "a.grad": 138.83381924198252,
                 "b.grad": 645.5772594752186}


def moons():
    from rgrad.data import make_moons
    X, labels = make_moons(100, noise=0.1, seed=1337)
    return X, [2 * label - 1 for label in labels]


def demo_model(impl):
    random.seed(1337)
    return impl.mlp(2, [16, 16, 1])


def demo_step(impl, model, X, y, lr=1.0, alpha=1e-4):
    """One step of micrograd's demo.ipynb: forward over all 100 samples,
    max-margin loss + alpha * L2, zero_grad, backward, SGD (lr of step 0).
    Returns (loss, accuracy)."""
    V = impl.leaf
    inputs = [[V(x0), V(x1)] for x0, x1 in X]
    scores = [model(x) for x in inputs]
    losses = [(1 + -yi * si).relu() for yi, si in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = alpha * sum(p * p for p in model.parameters())
    total = data_loss + reg_loss
    accuracy = sum((yi > 0) == (impl.data(si) > 0) for yi, si in zip(y, scores)) / len(y)
    impl.zero_grad(model)
    total.backward()
    for p in model.parameters():
        p.data -= lr * p.grad
    return impl.data(total), accuracy


# micrograd 0.1.0's numbers for step 0 (rgrad.data.make_moons, seed 1337)
DEMO_EXPECTED_LOSS = 0.9093643844649194
DEMO_EXPECTED_ACCURACY = 0.5


def params_checksum(impl, model):
    return sum(impl.data(p) for p in model.parameters())


# ---- running deep recursion safely ------------------------------------------

def run_with_big_stack(fn):
    """fn() in a thread with a 512 MB C stack and a raised recursion limit, so
    that micrograd's recursive topological sort cannot overflow the C stack
    (on interpreters where Python calls use it); re-raises fn's exception."""
    result, error = [], []

    def target():
        try:
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            error.append(exc)

    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, RECURSION_LIMIT))
    old_size = threading.stack_size(BIG_STACK)
    try:
        t = threading.Thread(target=target, name="big-stack")
        t.start()
    finally:
        threading.stack_size(old_size)
    t.join()
    sys.setrecursionlimit(old_limit)
    if error:
        raise error[0]
    return result[0] if result else None


def fresh():
    """Between rounds (untimed): free the previous round's garbage, so that a
    round does not pay the cyclic GC for its predecessor's graph."""
    gc.collect()
