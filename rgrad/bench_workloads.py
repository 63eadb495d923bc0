"""The benchmark workloads on scalar engines, in one place for both
`python -m rgrad bench` (rgrad/benchmarks.py) and the pytest-benchmark suite
(bench/, which imports them):

    chain           acc = acc * 0.999 + x[i] over n leaves (3,000 / 30,000 /
                    300,000 steps): build, and backward over a built chain
    seed            the README's worked example, build + backward
    demo step       one eager step of micrograd's demo: hinge loss + 1e-4 L2
                    over 100 moons, zero_grad, backward, SGD (lr 1): step 0 of
                    a freshly seeded model
    demo second step  step 1 of that loop, after an untimed step 0: what each
                    of the demo's later steps costs (rgrad's fused MLP makes its
                    plan at the model's first call, in step 0)
    demo loop       the demo's loop as micrograd's notebook writes it, LOOP_STEPS
                    steps of a freshly seeded model (the learning rate decays
                    as there): each step's graph lives until the next step's
                    loss is made (the notebook keeps it in total_loss), as it
                    does in micrograd's own loop. In rgrad that graph is live
                    when the arena compacts, so compaction moves it: the two
                    step groups above drop it when their step returns.

Each scalar engine is an `Impl`. micrograd appears twice: "micrograd" with
Python's cyclic garbage collector as it comes, and "micrograd-nogc" with the
collector disabled around the timed region only (`gc_off`), because most of
micrograd's build time is the collector rescanning its Values and closures.
The replayed demo step and its compiled peers live in rgrad/bench_peers.py.
"""
import random
import sys
import threading

__all__ = ["Impl", "load_impls", "IMPL_ORDER", "INSTALL", "chain_leaves", "chain",
           "chain_expected", "seed", "moons", "demo_model", "demo_loss",
           "accuracy", "demo_step", "checksum", "with_big_stack",
           "SEED_EXPECTED", "DEMO_LOSS", "DEMO_ACCURACY", "DEMO_CHECKSUM",
           "DEMO_NEXT_LOSS", "DEMO_NEXT_ACCURACY", "DEMO_NEXT_CHECKSUM", "DEMO_EXPECTED",
           "LOOP_STEPS", "DEMO_LOOP_LOSS", "DEMO_LOOP_ACCURACY", "DEMO_LOOP_CHECKSUM",
           "demo_loop"]

IMPL_ORDER = ("rgrad", "micrograd", "micrograd-nogc", "torch")
INSTALL = {"micrograd": "pip install micrograd==0.1.0",
           "micrograd-nogc": "pip install micrograd==0.1.0",
           "torch": "pip install torch"}

SEED_EXPECTED = {"g": 24.70408163265306, "a.grad": 138.83381924198252,
                 "b.grad": 645.5772594752186}
# micrograd 0.1.0's step 0 on rgrad.data.make_moons(100, noise=0.1, seed=1337)
# with random.seed(1337) before MLP(2, [16, 16, 1]) and lr 1
DEMO_LOSS = 0.9093643844649194
DEMO_ACCURACY = 0.5
DEMO_CHECKSUM = 7.510907886666312      # sum of the 337 parameters after step 0
# and its step 1 (micrograd 0.1.0's, as above)
DEMO_NEXT_LOSS = 1.6737409104703749
DEMO_NEXT_ACCURACY = 0.77
DEMO_NEXT_CHECKSUM = 0.47580153176665335   # after step 1
# and the last of LOOP_STEPS steps of its notebook's loop (demo_loop), as above
LOOP_STEPS = 10
DEMO_LOOP_LOSS = 0.2736597465044655
DEMO_LOOP_ACCURACY = 0.93
DEMO_LOOP_CHECKSUM = -3.9854052676039435
# (loss, accuracy, parameter sum after it) of each eager demo group's step
# (demo loop: of its last step; micrograd 0.1.0's, as above)
DEMO_EXPECTED = {"demo step": (DEMO_LOSS, DEMO_ACCURACY, DEMO_CHECKSUM),
                 "demo second step": (DEMO_NEXT_LOSS, DEMO_NEXT_ACCURACY, DEMO_NEXT_CHECKSUM),
                 "demo loop": (DEMO_LOOP_LOSS, DEMO_LOOP_ACCURACY, DEMO_LOOP_CHECKSUM)}


# ---- the scalar engines ---------------------------------------------------------

class Impl:
    """What the workloads need from an engine: `leaf(x)` makes a leaf that
    takes a grad, `data(v)`/`grad(v)` read a node as a float, `mlp(nin, nouts)`
    builds micrograd's MLP with micrograd's weight draws, `zero_grad(model)`,
    `sgd(model, lr)`, `tidy()` (untimed, before each round), and `gc_off`:
    whether the cyclic collector is disabled while a round is timed."""

    def __init__(self, name, version, leaf, data, grad, mlp, zero_grad, sgd,
                 tidy=None, gc_off=False):
        self.name = name
        self.version = version
        self.leaf = leaf
        self.data = data
        self.grad = grad
        self.mlp = mlp
        self.zero_grad = zero_grad
        self.sgd = sgd
        self.tidy = tidy or (lambda: None)
        self.gc_off = gc_off


def version_of(dist, module):
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:       # noqa: BLE001 - metadata missing: ask the module
        return getattr(module, "__version__", "unknown")


def _micrograd_sgd(model, lr):
    for p in model.parameters():
        p.data -= lr * p.grad


def _load_rgrad():
    import rgrad
    from rgrad import Value
    from rgrad.nn import MLP
    return Impl("rgrad", rgrad.__version__, Value, lambda v: v.data,
                lambda v: v.grad, MLP, lambda m: m.zero_grad(), _micrograd_sgd,
                tidy=rgrad.collect)


def _load_micrograd(gc_off=False):
    import micrograd
    from micrograd.engine import Value
    from micrograd.nn import MLP
    return Impl("micrograd-nogc" if gc_off else "micrograd",
                version_of("micrograd", micrograd), Value, lambda v: v.data,
                lambda v: v.grad, MLP, lambda m: m.zero_grad(), _micrograd_sgd,
                gc_off=gc_off)


def _load_torch():
    import torch
    torch.set_num_threads(1)      # every peer runs on one thread

    def leaf(x):
        return torch.tensor(float(x), dtype=torch.float64, requires_grad=True)

    def zero_grad(model):
        for p in model.parameters():
            p.grad = None

    def sgd(model, lr):
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad

    return Impl("torch", torch.__version__, leaf, lambda v: v.item(),
                lambda v: 0.0 if v.grad is None else v.grad.item(),
                lambda nin, nouts: ScalarMLP(nin, nouts, leaf), zero_grad, sgd)


LOADERS = {"rgrad": _load_rgrad, "micrograd": _load_micrograd,
           "micrograd-nogc": lambda: _load_micrograd(gc_off=True),
           "torch": _load_torch}


def load_impls():
    """({name: Impl} for what is installed, {name: install hint} for what
    is not). rgrad itself must import."""
    impls, missing = {}, {}
    for name in IMPL_ORDER:
        try:
            impls[name] = LOADERS[name]()
        except ImportError:
            if name == "rgrad":
                raise
            missing[name] = INSTALL[name]
    return impls, missing


class ScalarMLP:
    """micrograd's MLP on scalar tensors: weights drawn with
    random.uniform(-1, 1) in micrograd's order, bias 0, each neuron summed as
    b + w0*x0 + w1*x1 + ..., ReLU on all layers but the last."""

    def __init__(self, nin, nouts, leaf):
        sizes = [nin] + list(nouts)
        self.layers = []
        for i in range(len(nouts)):
            layer = []
            for _ in range(sizes[i + 1]):
                w = [leaf(random.uniform(-1, 1)) for _ in range(sizes[i])]
                layer.append((w, leaf(0.0), i < len(nouts) - 1))
            self.layers.append(layer)

    def __call__(self, x):
        for layer in self.layers:
            out = []
            for w, b, relu in layer:
                act = b
                for wi, xi in zip(w, x):
                    act = act + wi * xi
                out.append(act.relu() if relu else act)
            x = out[0] if len(out) == 1 else out
        return x

    def parameters(self):
        return [p for layer in self.layers for w, b, _ in layer for p in w + [b]]


# ---- the workloads --------------------------------------------------------------

def chain_leaves(impl, n):
    return [impl.leaf(float(i % 7)) for i in range(n)]


def chain(impl, x):
    acc = impl.leaf(0.0)
    for xi in x:
        acc = acc * 0.999 + xi
    return acc


def chain_expected(n):
    """(acc, d acc/d x[0], d acc/d x[-1]) by the same recurrence in floats."""
    acc = 0.0
    for i in range(n):
        acc = acc * 0.999 + float(i % 7)
    return acc, 0.999 ** (n - 1), 1.0


def seed(impl):
    """The worked example, with `c += ...` spelled as rebinding (what it is
    for Values; for tensors it avoids in-place ops)."""
    a = impl.leaf(-4.0)
    b = impl.leaf(2.0)
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


def moons():
    """The demo's data: 100 moons and labels in {-1, +1}."""
    from .data import make_moons
    X, labels = make_moons(100, noise=0.1, seed=1337)
    return X, [2 * label - 1 for label in labels]


def demo_model(impl):
    random.seed(1337)
    return impl.mlp(2, [16, 16, 1])


def demo_loss(impl, model, X, y, alpha=1e-4):
    """(scores, total loss): micrograd's demo loss over all of X."""
    inputs = [[impl.leaf(x0), impl.leaf(x1)] for x0, x1 in X]
    scores = [model(x) for x in inputs]
    losses = [(1 + -yi * si).relu() for yi, si in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = alpha * sum(p * p for p in model.parameters())
    return scores, data_loss + reg_loss


def accuracy(impl, y, scores):
    return sum((yi > 0) == (impl.data(si) > 0) for yi, si in zip(y, scores)) / len(y)


def demo_step(impl, model, X, y, lr=1.0):
    """One eager step; returns (loss, accuracy) before the update."""
    scores, total = demo_loss(impl, model, X, y)
    acc = accuracy(impl, y, scores)
    impl.zero_grad(model)
    total.backward()
    impl.sgd(model, lr)
    return impl.data(total), acc


def demo_loop(impl, model, X, y, steps=LOOP_STEPS):
    """micrograd's notebook loop, `steps` steps: each step's loss (and so its
    graph) is held until the next step's has been made, as the notebook's
    total_loss is. Returns the last step's (loss, accuracy) before its update."""
    total = None
    for k in range(steps):
        scores, total = demo_loss(impl, model, X, y)   # the last step's graph goes only now
        acc = accuracy(impl, y, scores)
        impl.zero_grad(model)
        total.backward()
        impl.sgd(model, 1.0 - 0.9 * k / 100)
    return impl.data(total), acc


def checksum(impl, model):
    return sum(impl.data(p) for p in model.parameters())


# ---- micrograd's recursive backward ---------------------------------------------

BIG_STACK = 512 * 1024 * 1024


def with_big_stack(fn, depth=200_000):
    """fn() in a thread with a 512 MB stack and the recursion limit raised to
    `depth` (micrograd sorts the graph recursively, two calls per chain step),
    both restored afterwards; re-raises fn's exception."""
    result, error = [], []

    def target():
        try:
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            error.append(exc)

    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, depth))
    try:
        old_size = threading.stack_size(BIG_STACK)
        try:
            t = threading.Thread(target=target, name="rgrad-bench-big-stack")
            t.start()
        finally:
            threading.stack_size(old_size)
        t.join()
    finally:
        sys.setrecursionlimit(old_limit)
    if error:
        raise error[0]
    return result[0]


def chain_depth(n):
    """Recursion depth micrograd's backward needs on an n-step chain."""
    return 2 * n + 10_000
