"""`python -m rgrad bench`: rgrad's speed against micrograd 0.1.0 and PyTorch
scalar tensors, on the workloads of the repository's bench/ suite (which is
not installed with the package, so they are restated here):

    chain build     acc = acc * 0.999 + x[i] over 30,000 leaves (made untimed)
    chain backward  backward() over a freshly built chain (built untimed)
    seed            the README's worked example, build + backward
    demo step       one step of micrograd's demo: hinge loss + 1e-4 L2 over 100
                    moons, zero_grad, backward, SGD (eager: the graph is built
                    in the step; a freshly seeded MLP(2, [16, 16, 1]) per round)
                    and, for rgrad only, the replayed step on a graph built once:
                    forward, optimizer zero_grad, backward, rgrad.optim.SGD step

Each round is prepared untimed (a fresh graph or model, then gc.collect());
a warm-up round comes first; the table shows the median of the timed rounds.
Every implementation's numbers are checked against the known values.
"""
import gc
import json
import math
import os
import platform
import random
import sys
import threading
import time

__all__ = ["run", "report", "plot", "main", "CHAIN_STEPS", "QUICK_CHAIN_STEPS"]

CHAIN_STEPS = 30_000
QUICK_CHAIN_STEPS = 3_000

IMPL_ORDER = ("rgrad", "micrograd", "torch")
OTHERS = ("micrograd", "torch")
INSTALL = {"micrograd": "pip install micrograd==0.1.0", "torch": "pip install torch"}
WORKLOADS = ("chain build", "chain backward", "seed", "demo step")

# Rounds per (workload, implementation): timed rounds, calls per round.
# Sized so that the full run stays well under a minute with micrograd and
# torch installed (micrograd's eager demo step alone takes about a second).
ROUNDS = {
    "full": {
        ("chain build", "rgrad"): (30, 1), ("chain build", "micrograd"): (7, 1),
        ("chain build", "torch"): (5, 1),
        ("chain backward", "rgrad"): (30, 1), ("chain backward", "micrograd"): (7, 1),
        ("chain backward", "torch"): (5, 1),
        ("seed", "rgrad"): (25, 200), ("seed", "micrograd"): (25, 200),
        ("seed", "torch"): (15, 50),
        ("demo step", "rgrad"): (15, 1), ("demo step", "rgrad-replay"): (50, 5),
        ("demo step", "micrograd"): (3, 1), ("demo step", "torch"): (3, 1),
    },
    "quick": {
        ("chain build", "rgrad"): (5, 1), ("chain build", "micrograd"): (3, 1),
        ("chain build", "torch"): (3, 1),
        ("chain backward", "rgrad"): (5, 1), ("chain backward", "micrograd"): (3, 1),
        ("chain backward", "torch"): (3, 1),
        ("seed", "rgrad"): (5, 50), ("seed", "micrograd"): (5, 50),
        ("seed", "torch"): (3, 10),
        ("demo step", "rgrad"): (3, 1), ("demo step", "rgrad-replay"): (10, 2),
        ("demo step", "micrograd"): (1, 1), ("demo step", "torch"): (1, 1),
    },
}

# micrograd's backward sorts the graph recursively: the chain is two calls
# deep per step, so it runs in a thread with a big C stack.
BIG_STACK = 512 * 1024 * 1024
RECURSION_LIMIT = 200_000

SEED_EXPECTED = {"g": 24.70408163265306, "a.grad": 138.83381924198252,
                 "b.grad": 645.5772594752186}
# micrograd 0.1.0's step 0 on rgrad.data.make_moons(100, noise=0.1, seed=1337)
DEMO_LOSS = 0.9093643844649194
DEMO_ACCURACY = 0.5
DEMO_CHECKSUM = 7.510907886666312      # sum of the 337 parameters after step 0


# ---- the implementations ------------------------------------------------------

class Impl:
    """What the workloads need from an engine: `leaf(x)` makes a leaf that
    takes a grad, `data(v)`/`grad(v)` read a node as a float, `mlp(nin, nouts)`
    builds micrograd's MLP with micrograd's weight draws, `zero_grad(model)`,
    `sgd(model, lr)`, and `tidy()` (untimed, before each round)."""

    def __init__(self, name, version, leaf, data, grad, mlp, zero_grad, sgd,
                 tidy=None):
        self.name = name
        self.version = version
        self.leaf = leaf
        self.data = data
        self.grad = grad
        self.mlp = mlp
        self.zero_grad = zero_grad
        self.sgd = sgd
        self.tidy = tidy or (lambda: None)


def _version(dist, module):
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


def _load_micrograd():
    import micrograd
    from micrograd.engine import Value
    from micrograd.nn import MLP
    return Impl("micrograd", _version("micrograd", micrograd), Value,
                lambda v: v.data, lambda v: v.grad, MLP, lambda m: m.zero_grad(),
                _micrograd_sgd)


def _load_torch():
    import torch

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
                lambda nin, nouts: _ScalarMLP(nin, nouts, leaf), zero_grad, sgd)


class _ScalarMLP:
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


def load_impls():
    """({name: Impl} for what is installed, {name: install hint} for what
    is not). rgrad itself must import."""
    impls, missing = {"rgrad": _load_rgrad()}, {}
    for name, load in (("micrograd", _load_micrograd), ("torch", _load_torch)):
        try:
            impls[name] = load()
        except ImportError:
            missing[name] = INSTALL[name]
    return impls, missing


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


def checksum(impl, model):
    return sum(impl.data(p) for p in model.parameters())


# ---- timing -------------------------------------------------------------------

def time_rounds(impl, run, prepare=None, rounds=5, number=1, warmup=1, keep=False):
    """Run `warmup` untimed rounds then `rounds` timed ones. Before each round,
    untimed: the last round's result is dropped, state = prepare() (if given),
    gc.collect(), impl.tidy(). A round times `number` calls of run(state) and
    counts their mean. Returns (times in seconds, results): results holds the
    last call's result of every round (warm-up included) with keep, else of
    the last round only."""
    times, outs = [], []
    out = None
    for r in range(warmup + rounds):
        out = state = None
        if prepare is not None:
            state = prepare()
        gc.collect()
        impl.tidy()
        start = time.perf_counter()
        for _ in range(number):
            out = run(state)
        elapsed = time.perf_counter() - start
        if r >= warmup:
            times.append(elapsed / number)
        if keep:
            outs.append(out)
    return times, (outs if keep else [out])


def with_big_stack(fn):
    """fn() in a thread with a 512 MB stack and a raised recursion limit,
    both restored afterwards; re-raises fn's exception."""
    result, error = [], []

    def target():
        try:
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            error.append(exc)

    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, RECURSION_LIMIT))
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


def _close(got, want, rel):
    return math.isfinite(got) and abs(got - want) <= rel * abs(want)


class _Checks:
    def __init__(self):
        self.failures = []

    def __call__(self, label, got, want, rel=1e-12):
        if not _close(got, want, rel):
            self.failures.append(f"{label}: got {got!r}, expected {want!r}")

    def finite(self, label, got):
        if not math.isfinite(got):
            self.failures.append(f"{label}: got {got!r}, expected a finite number")


def _bench_chain_build(impl, n, rounds, number, check):
    x = chain_leaves(impl, n)
    times, outs = time_rounds(impl, lambda _: chain(impl, x), rounds=rounds,
                              number=number)
    check(f"{impl.name} chain value", impl.data(outs[-1]), chain_expected(n)[0])
    return times


def _bench_chain_backward(impl, n, rounds, number, check):
    held = {}

    def prepare():
        held.clear()                    # drop the last graph before building
        x = chain_leaves(impl, n)
        held["x"], held["acc"] = x, chain(impl, x)

    def go():
        return time_rounds(impl, lambda _: held["acc"].backward(), prepare,
                           rounds=rounds, number=number)

    times, _ = with_big_stack(go) if impl.name == "micrograd" else go()
    want_acc, want_g0, want_glast = chain_expected(n)
    check(f"{impl.name} chain grad of x[0]", impl.grad(held["x"][0]), want_g0, 1e-9)
    check(f"{impl.name} chain grad of x[-1]", impl.grad(held["x"][-1]), want_glast)
    held.clear()
    return times


def _bench_seed(impl, rounds, number, check):
    times, outs = time_rounds(impl, lambda _: seed(impl), rounds=rounds,
                              number=number)
    a, b, g = outs[-1]
    check(f"{impl.name} seed g", impl.data(g), SEED_EXPECTED["g"])
    # each call makes fresh leaves, so the grads are those of one backward
    check(f"{impl.name} seed a.grad", impl.grad(a), SEED_EXPECTED["a.grad"], 1e-9)
    check(f"{impl.name} seed b.grad", impl.grad(b), SEED_EXPECTED["b.grad"], 1e-9)
    return times


def _bench_demo_eager(impl, X, y, rounds, number, check):
    models = []

    def prepare():
        models.clear()
        models.append(demo_model(impl))    # the same seeded model every round
        return models[0]

    times, outs = time_rounds(impl, lambda m: demo_step(impl, m, X, y), prepare,
                              rounds=rounds, number=1, keep=True)
    for k, (loss, acc) in enumerate(outs):
        check(f"{impl.name} demo step loss (round {k})", loss, DEMO_LOSS)
        check(f"{impl.name} demo step accuracy (round {k})", acc, DEMO_ACCURACY)
    check(f"{impl.name} demo step parameter sum", checksum(impl, models[0]),
          DEMO_CHECKSUM)
    return times


def _bench_demo_replay(impl, X, y, rounds, number, check):
    from .optim import SGD
    model = demo_model(impl)
    scores, total = demo_loss(impl, model, X, y)
    opt = SGD(model.parameters(), lr=1.0)
    first = []

    def step(_):
        total.forward()
        if not first:            # the first step starts from the seeded model
            first.append((total.data, accuracy(impl, y, scores)))
        opt.zero_grad()
        total.backward()
        opt.step()
        if len(first) == 1:
            first.append(checksum(impl, model))

    times, _ = time_rounds(impl, step, rounds=rounds, number=number)
    (loss, acc), params = first
    check("rgrad-replay demo step loss", loss, DEMO_LOSS)
    check("rgrad-replay demo step accuracy", acc, DEMO_ACCURACY)
    check("rgrad-replay demo step parameter sum", params, DEMO_CHECKSUM)
    check.finite("rgrad-replay loss after the timed steps", total.data)
    return times


def run(quick=False, impls=None, missing=None, progress=None):
    """Run every workload; returns the results as a dict (what --json
    writes). `progress`, if given, is called with a short text before each
    measurement."""
    if impls is None:
        impls, missing = load_impls()
    missing = dict(missing or {})
    chain_n = QUICK_CHAIN_STEPS if quick else CHAIN_STEPS
    sizes = ROUNDS["quick" if quick else "full"]
    check = _Checks()
    X, y = moons()
    names = [n for n in IMPL_ORDER if n in impls]
    results = []

    def measure(workload, label, fn, *args, steps=None):
        rounds, number = sizes[(workload, label)]
        if progress:
            progress(f"{workload}: {label}")
        times = fn(*args, rounds, number, check)
        median = _median(times)
        results.append({
            "workload": workload, "impl": label, "median_s": median,
            "per_step_s": median / steps if steps else None, "steps": steps,
            "rounds": rounds, "calls_per_round": number, "times_s": times})

    gc.collect()
    gc.freeze()       # what is alive now (torch, ...) stays out of every collection
    try:
        for name in names:
            measure("chain build", name, _bench_chain_build, impls[name], chain_n,
                    steps=chain_n)
        for name in names:
            measure("chain backward", name, _bench_chain_backward, impls[name],
                    chain_n, steps=chain_n)
        for name in names:
            measure("seed", name, _bench_seed, impls[name])
        for name in names:
            measure("demo step", name, _bench_demo_eager, impls[name], X, y)
            if name == "rgrad":
                measure("demo step", "rgrad-replay", _bench_demo_replay,
                        impls[name], X, y)
    finally:
        gc.unfreeze()
        gc.collect()

    return {
        "machine": machine_info(impls),
        "quick": quick,
        "chain_steps": chain_n,
        "implementations": {n: impls[n].version for n in names},
        "missing": missing,
        "results": results,
        "speedups": speedups(results),
        "agree": not check.failures,
        "disagreements": check.failures,
    }


def _median(xs):
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def speedups(results):
    """{workload: {rgrad label: {other: other's median / rgrad's median}}}:
    rgrad's rows (rgrad-replay included) against the other implementations'
    row of the same workload."""
    out = {}
    for w in WORKLOADS:
        rows = {r["impl"]: r["median_s"] for r in results if r["workload"] == w}
        for label, t in rows.items():
            if not label.startswith("rgrad"):
                continue
            vs = {o: rows[o] / t for o in OTHERS if o in rows and t > 0}
            if vs:
                out.setdefault(w, {})[label] = vs
    return out


# ---- the report -----------------------------------------------------------------

def _cpu_name():
    name = platform.processor()
    if name and name != platform.machine():
        return name
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name or platform.machine() or "unknown CPU"


def machine_info(impls):
    u = platform.uname()
    info = {
        "cpu": _cpu_name(), "system": u.system, "release": u.release,
        "machine": u.machine, "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }
    for name in IMPL_ORDER:
        info[name] = impls[name].version if name in impls else None
    return info


def header(info):
    versions = ", ".join(f"{n} {info[n] or 'not installed'}" for n in IMPL_ORDER)
    return (f"machine: {info['cpu']} ({info['system']} {info['release']} "
            f"{info['machine']}), {info['cpu_count']} CPUs, "
            f"{info['python_implementation']} {info['python']}; {versions}")


def fmt_time(s):
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3f} {unit}"
    return f"{s / 1e-9:.3f} ns"


def report(data):
    """The report as a list of lines."""
    lines = [header(data["machine"])]
    for name, hint in data["missing"].items():
        lines.append(f"{name} is not installed, so its rows are skipped; "
                     f"to compare with it: {hint}")
    mode = "quick" if data["quick"] else "full"
    lines.append(f"{mode} run: chain of {data['chain_steps']:,} steps; median "
                 f"of the timed rounds after a warm-up; gc.collect() before "
                 f"each round")
    head = (f"{'workload':<15} {'implementation':<14} {'median':>11} "
            f"{'per step':>11} {'rounds':>9} {'vs micrograd':>13} {'vs torch':>10}")
    lines += ["", head, "-" * len(head)]
    sp = data["speedups"]
    last = None
    for r in data["results"]:
        if last is not None and r["workload"] != last:
            lines.append("")
        last = r["workload"]
        vs = sp.get(r["workload"], {}).get(r["impl"], {})
        cells = [f"{vs[o]:.1f}x" if o in vs else "-" for o in OTHERS]
        rounds = str(r["rounds"]) + (f"x{r['calls_per_round']}"
                                     if r["calls_per_round"] > 1 else "")
        lines.append(f"{r['workload']:<15} {r['impl']:<14} "
                     f"{fmt_time(r['median_s']):>11} {fmt_time(r['per_step_s']):>11} "
                     f"{rounds:>9} {cells[0]:>13} {cells[1]:>10}")
    lines += ["", "vs X: rgrad's speed-up, X's median time / this rgrad row's "
                  "(rgrad-replay against the others' eager step); rounds NxM: "
                  "N rounds of M calls, timed per call"]
    names = list(data["implementations"])
    who = (f"{names[0]} gives" if len(names) == 1 else
           f"{', '.join(names[:-1])} and {names[-1]} all give")
    if data["agree"]:
        lines.append(
            f"numbers agree: {who} the expected values (chain value "
            f"and grads; seed g=24.7041, a.grad=138.8338, b.grad=645.5773; demo "
            f"step 0 loss {DEMO_LOSS!r}, accuracy {DEMO_ACCURACY:.0%}, parameter "
            f"sum after the step {DEMO_CHECKSUM!r})")
    else:
        lines.append("numbers DISAGREE:")
        lines += [f"  {f}" for f in data["disagreements"]]
    return lines


def plot(data, path):
    """Save a bar chart to `path`: rgrad's speed-ups over the other
    implementations on a log axis, or, with neither installed, the median
    times on a log axis. Needs matplotlib (ImportError otherwise)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    sp = data["speedups"]
    if sp:
        groups = [(w, label) for w in WORKLOADS for label in sp.get(w, {})]
        series = [o for o in OTHERS if any(o in sp[w][lb] for w, lb in groups)]
        values = {o: [sp[w][lb].get(o) for w, lb in groups] for o in series}
        ylabel = "rgrad's speed-up (other's time / rgrad's time), log scale"
        title = "rgrad speed-up by workload"
        labels = [w if lb == "rgrad" else f"{w}\n({lb})" for w, lb in groups]
    else:
        labels = [f"{r['workload']}\n({r['impl']})" for r in data["results"]]
        series = ["rgrad"]
        values = {"rgrad": [r["median_s"] for r in data["results"]]}
        ylabel = "median time, seconds, log scale"
        title = "rgrad median times (no other implementation installed)"
    width = 0.8 / max(1, len(series))
    for k, name in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(labels))]
        pairs = [(x, v) for x, v in zip(xs, values[name]) if v]
        if not pairs:
            continue
        bars = ax.bar([p[0] for p in pairs], [p[1] for p in pairs], width,
                      label=f"vs {name}" if sp else name)
        ax.bar_label(bars, labels=[f"{v:.3g}x" if sp else fmt_time(v)
                                   for _, v in pairs], fontsize=8)
    ax.set_yscale("log")
    if sp:
        ax.axhline(1.0, color="k", linewidth=0.8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.text(0.01, 0.01, header(data["machine"]), fontsize=6)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _, ext = os.path.splitext(str(path))
    fig.savefig(path, format=None if ext else "png")


def main(quick=False, plot_path=None, json_path=None, stream=None):
    """Run, print the report to `stream` (stdout), write the JSON and the
    plot if asked. Returns the exit code: 1 if the numbers disagree or the
    plot cannot be drawn, 0 otherwise."""
    out = sys.stdout if stream is None else stream
    impls, missing = load_impls()
    out.write(f"benchmarking {', '.join(impls)} "
              f"({'quick' if quick else 'full'} run)...\n")
    out.flush()
    err = sys.stderr

    def show(text):
        err.write(f"\r  {text:<40}")
        err.flush()
    progress = show if getattr(err, "isatty", None) and err.isatty() else None
    try:
        data = run(quick, impls, missing, progress)
    except KeyboardInterrupt:
        out.write("\ninterrupted\n")
        return 130
    finally:
        if progress:
            err.write("\r" + " " * 44 + "\r")
    out.write("\n".join(report(data)) + "\n")
    code = 0 if data["agree"] else 1
    if json_path is not None:
        try:
            with open(json_path, "w") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
        except OSError as e:
            sys.stderr.write(f"python -m rgrad bench: cannot write {json_path}: {e}\n")
            code = 1
        else:
            out.write(f"results written to {json_path}\n")
    if plot_path is not None:
        try:
            plot(data, plot_path)
        except ImportError:
            out.write(f"matplotlib is not installed, so {plot_path} was not "
                      "written; to draw it: pip install matplotlib\n")
            return 1
        except (OSError, ValueError) as e:
            sys.stderr.write(f"python -m rgrad bench: cannot write {plot_path}: {e}\n")
            return 1
        out.write(f"chart saved to {plot_path}\n")
    return code
