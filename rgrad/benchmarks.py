"""`python -m rgrad bench`: the runner. It times the workloads of
rgrad/bench_workloads.py (the chain at 3,000, 30,000 and 300,000 steps, build
and backward; the worked example; micrograd's demo step, eager, its first and
its second, and ten steps of its notebook's loop) on rgrad,
micrograd (default gc and gc disabled around the timed region), and PyTorch
scalar tensors, then the replayed demo step of rgrad/bench_peers.py beside
PyTorch tensors, jax.jit and CasADi, each where installed. The table is
drawn by rgrad/bench_report.py.

The same rule for every implementation: in a workload, each gets one
untimed warm-up round and the same number of timed rounds of the same number
of calls (ROUNDS). Before each round, untimed: the last round's result is
dropped, the round's input is prepared with the collector off, then
gc.collect(). The objects alive when the run starts (torch, jax, ...) are
frozen out of the collector (gc.freeze), so that what a collection costs does
not depend on which peers are imported. Every implementation's numbers are
checked against micrograd's known values, so that no row times a wrong
computation.
"""
import gc
import json
import math
import sys
import time

from . import bench_workloads as W
from .bench_peers import PEER_ORDER, load_peers
from .bench_report import group_label, machine_info, plot, report

__all__ = ["run", "report", "plot", "main", "time_rounds", "speedups",
           "CHAIN_SIZES", "QUICK_CHAIN_SIZES", "ROUNDS", "WARMUP"]

CHAIN_SIZES = (3_000, 30_000, 300_000)
QUICK_CHAIN_SIZES = (3_000, 30_000)
WARMUP = 1
BASES = ("micrograd", "micrograd-nogc")
# the replayed step is set against micrograd's eager step: micrograd has no other
BASELINE_GROUP = {"demo step replayed": "demo step"}

# (timed rounds, calls per round) for every implementation of a workload.
# The pytest-benchmark suite (bench/) uses the "full" numbers.
ROUNDS = {
    "full": {"chain 3000": (15, 1), "chain 30000": (7, 1), "chain 300000": (3, 1),
             "seed": (15, 100), "demo step": (5, 1), "demo second step": (5, 1),
             "demo loop": (3, 1), "demo step replayed": (30, 10)},
    "quick": {"chain 3000": (5, 1), "chain 30000": (3, 1), "seed": (5, 20),
              "demo step": (2, 1), "demo second step": (2, 1), "demo loop": (1, 1),
              "demo step replayed": (10, 5)},
}


# ---- timing ---------------------------------------------------------------------

def time_rounds(impl, run, prepare=None, rounds=5, number=1, warmup=WARMUP,
                keep=False):
    """Run `warmup` untimed rounds then `rounds` timed ones. Before each round,
    untimed: the last round's result is dropped, state = prepare() (if given,
    with the collector off), gc.collect(), impl.tidy(). A round times `number`
    calls of run(state) and counts their mean; with impl.gc_off the collector
    is disabled for the timed calls only. Returns (times in seconds, results):
    results holds the last call's result of every round (warm-up included)
    with keep, else of the last round only."""
    gc_off = getattr(impl, "gc_off", False)
    times, outs = [], []
    out = None
    for r in range(warmup + rounds):
        out = state = None
        if prepare is not None:
            state = _without_gc(prepare)
        gc.collect()
        impl.tidy()
        was_on = gc.isenabled()
        if gc_off:
            gc.disable()
        try:
            start = time.perf_counter()
            for _ in range(number):
                out = run(state)
            elapsed = time.perf_counter() - start
        finally:
            if was_on:
                gc.enable()
        if r >= warmup:
            times.append(elapsed / number)
        if keep:
            outs.append(out)
    return times, (outs if keep else [out])


def _without_gc(fn):
    was_on = gc.isenabled()
    gc.disable()
    try:
        return fn()
    finally:
        if was_on:
            gc.enable()


# ---- the checks -----------------------------------------------------------------

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


# ---- one measurement per workload -------------------------------------------------

def _bench_chain_build(impl, n, rounds, number, check):
    x = W.chain_leaves(impl, n)
    times, outs = time_rounds(impl, lambda _: W.chain(impl, x), rounds=rounds,
                              number=number)
    check(f"{impl.name} chain {n} value", impl.data(outs[-1]), W.chain_expected(n)[0])
    return times


def _bench_chain_backward(impl, n, rounds, number, check):
    held = {}

    def prepare():
        held.clear()                    # drop the last graph before building
        x = W.chain_leaves(impl, n)
        held["x"], held["acc"] = x, W.chain(impl, x)

    def go():
        return time_rounds(impl, lambda _: held["acc"].backward(), prepare,
                           rounds=rounds, number=number)

    times, _ = (W.with_big_stack(go, W.chain_depth(n))
                if impl.name.startswith("micrograd") else go())
    _, want_g0, want_glast = W.chain_expected(n)
    check(f"{impl.name} chain {n} grad of x[0]", impl.grad(held["x"][0]), want_g0, 1e-9)
    check(f"{impl.name} chain {n} grad of x[-1]", impl.grad(held["x"][-1]), want_glast)
    held.clear()
    return times


def _bench_seed(impl, rounds, number, check):
    times, outs = time_rounds(impl, lambda _: W.seed(impl), rounds=rounds,
                              number=number)
    a, b, g = outs[-1]
    want = W.SEED_EXPECTED
    check(f"{impl.name} seed g", impl.data(g), want["g"])
    # each call makes fresh leaves, so the grads are those of one backward
    check(f"{impl.name} seed a.grad", impl.grad(a), want["a.grad"], 1e-9)
    check(f"{impl.name} seed b.grad", impl.grad(b), want["b.grad"], 1e-9)
    return times


def _bench_demo_eager(impl, X, y, rounds, number, check, name="demo step"):
    """An eager demo group from a freshly seeded model each round: "demo
    step" times step 0, "demo second step" step 1 after an untimed step 0,
    "demo loop" LOOP_STEPS steps of micrograd's notebook loop (W.demo_loop)."""
    models = []
    want = W.DEMO_EXPECTED[name]
    if name == "demo loop":
        def run(m):
            return W.demo_loop(impl, m, X, y)
    else:
        def run(m):
            return W.demo_step(impl, m, X, y)

    def prepare():
        models.clear()
        models.append(W.demo_model(impl))    # the same seeded model every round
        if name == "demo second step":
            W.demo_step(impl, models[0], X, y)
        return models[0]

    times, outs = time_rounds(impl, run, prepare, rounds=rounds, number=1, keep=True)
    for k, (loss, acc) in enumerate(outs):
        check(f"{impl.name} {name} loss (round {k})", loss, want[0])
        check(f"{impl.name} {name} accuracy (round {k})", acc, want[1])
    check(f"{impl.name} {name} parameter sum", W.checksum(impl, models[0]), want[2])
    return times


def _bench_demo_second(impl, X, y, rounds, number, check):
    return _bench_demo_eager(impl, X, y, rounds, number, check, name="demo second step")


def _bench_demo_loop(impl, X, y, rounds, number, check):
    return _bench_demo_eager(impl, X, y, rounds, number, check, name="demo loop")


class _Peer:
    """A replayed-step peer in the shape time_rounds wants."""

    def __init__(self, name):
        self.name = name
        self.gc_off = False

    def tidy(self):
        pass


def _bench_replayed(name, factory, X, y, rounds, number, check):
    peer = factory(X, y)            # untimed: build the graph, compile, ...
    peer.step()                     # step 0, from micrograd's seeded weights
    check(f"{name} demo step loss", peer.loss(), W.DEMO_LOSS, 1e-9)
    check(f"{name} demo step parameter sum", peer.param_sum(), W.DEMO_CHECKSUM, 1e-9)
    times, _ = time_rounds(_Peer(name), lambda _: peer.step(), rounds=rounds,
                           number=number)
    check.finite(f"{name} loss after the timed steps", peer.loss())
    return times


# ---- the run ----------------------------------------------------------------------

def run(quick=False, impls=None, missing=None, peers=None, progress=None):
    """Run every workload; returns the results as a dict (what --json
    writes). `progress`, if given, is called with a short text before each
    measurement."""
    if impls is None:
        impls, missing = W.load_impls()
    missing = dict(missing or {})
    if peers is None:
        peers, peers_missing = load_peers()
        missing.update(peers_missing)
    sizes = QUICK_CHAIN_SIZES if quick else CHAIN_SIZES
    table = ROUNDS["quick" if quick else "full"]
    check = _Checks()
    X, y = W.moons()
    names = [n for n in W.IMPL_ORDER if n in impls]
    results = []

    def measure(workload, key, label, fn, *args, steps=None):
        rounds, number = table[key]
        if progress:
            progress(f"{workload} {steps or ''}: {label}")
        times = fn(*args, rounds, number, check)
        median = _median(times)
        results.append({
            "workload": workload, "impl": label, "median_s": median,
            "per_step_s": median / steps if steps else None, "steps": steps,
            "warmup": WARMUP, "rounds": rounds, "calls_per_round": number,
            "times_s": times})

    gc.collect()
    gc.freeze()       # what is alive now (torch, ...) stays out of every collection
    try:
        for n in sizes:
            for name in names:
                measure("chain build", f"chain {n}", name, _bench_chain_build,
                        impls[name], n, steps=n)
            for name in names:
                measure("chain backward", f"chain {n}", name, _bench_chain_backward,
                        impls[name], n, steps=n)
        for name in names:
            measure("seed", "seed", name, _bench_seed, impls[name])
        for name in names:
            measure("demo step", "demo step", name, _bench_demo_eager, impls[name], X, y)
        for name in names:
            measure("demo second step", "demo second step", name, _bench_demo_second,
                    impls[name], X, y)
        for name in names:
            measure("demo loop", "demo loop", name, _bench_demo_loop, impls[name], X, y,
                    steps=W.LOOP_STEPS)
        for name in [p for p in PEER_ORDER if p in peers]:
            measure("demo step replayed", "demo step replayed", name, _bench_replayed,
                    name, peers[name][1], X, y)
    finally:
        gc.unfreeze()
        gc.collect()

    versions = {n: impls[n].version for n in names}
    versions.update({n: peers[n][0] for n in PEER_ORDER if n in peers})
    return {
        "machine": machine_info(versions),
        "quick": quick,
        "chain_sizes": list(sizes),
        "warmup_rounds": WARMUP,
        "implementations": versions,
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
    """{group: {row: {base: base's median / row's median}}} for base in
    micrograd and micrograd-nogc, every row of a group (chain rows are grouped
    by workload and size); the replayed step's rows against micrograd's
    eager demo step."""
    medians = {}
    for r in results:
        medians.setdefault(group_label(r), {})[r["impl"]] = r["median_s"]
    out = {}
    for g, rows in medians.items():
        bases = medians.get(BASELINE_GROUP.get(g, g), {})
        for label, t in rows.items():
            vs = {b: bases[b] / t for b in BASES if b in bases and t > 0}
            if vs:
                out.setdefault(g, {})[label] = vs
    return out


def main(quick=False, plot_path=None, json_path=None, stream=None):
    """Run, print the report to `stream` (stdout), write the JSON and the
    plot if asked. Returns the exit code: 1 if the numbers disagree or the
    plot cannot be drawn, 0 otherwise."""
    out = sys.stdout if stream is None else stream
    impls, missing = W.load_impls()
    peers, peers_missing = load_peers()
    missing.update(peers_missing)
    out.write(f"benchmarking {', '.join(list(impls) + list(peers))} "
              f"({'quick' if quick else 'full'} run)...\n")
    out.flush()
    err = sys.stderr

    def show(text):
        err.write(f"\r  {text:<50}")
        err.flush()
    progress = show if getattr(err, "isatty", None) and err.isatty() else None
    try:
        data = run(quick, impls, missing, peers, progress)
    except KeyboardInterrupt:
        out.write("\ninterrupted\n")
        return 130
    finally:
        if progress:
            err.write("\r" + " " * 54 + "\r")
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
