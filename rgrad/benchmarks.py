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
of calls (ROUNDS), and they take turns, round by round (take_turns): this
machine's speed drifts from minute to minute, and a workload whose
implementations ran one after another would set a fast minute against a
slow one. Before each round, untimed: the round's input is prepared with the
collector off, then gc.collect(); after it, its result is checked and
dropped, so nothing of one implementation's round is alive while another's
is timed. The objects alive when the run starts (torch, jax, ...) are
frozen out of the collector (gc.freeze), so that what a collection costs does
not depend on which peers are imported. Every implementation's numbers are
checked against micrograd's known values, in every round, so that no row
times a wrong computation.
"""
import gc
import itertools
import json
import math
import sys
import time

from . import bench_workloads as W
from .bench_peers import PEER_ORDER, load_peers
from .bench_report import group_label, machine_info, plot, report

__all__ = ["run", "report", "plot", "main", "Rounds", "take_turns", "speedups",
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

class Rounds:
    """One implementation's rounds of one workload, run one at a time by
    next_round(), so that a workload's implementations take turns round by
    round (take_turns). Before each round, untimed: state = prepare() (if
    given, with the collector off; else None), gc.collect(), impl.tidy(). A
    round times `number` calls of run(state) and returns their mean, in
    seconds; with impl.gc_off the collector is disabled for the timed calls
    only. The last call's result goes to seen(result), untimed (the checks),
    and is then dropped with the state, so that nothing one round made is
    alive while another implementation's round is timed. `wrap`, if given,
    runs each round: wrap(round) (micrograd's recursive backward runs in a
    thread with a big stack)."""

    def __init__(self, impl, run, prepare=None, number=1, seen=None, wrap=None):
        self.impl, self.run, self.prepare, self.number = impl, run, prepare, number
        self.seen, self.wrap = seen, wrap

    def next_round(self):
        return self.wrap(self._round) if self.wrap else self._round()

    def _round(self):
        state = _without_gc(self.prepare) if self.prepare is not None else None
        gc.collect()
        self.impl.tidy()
        was_on = gc.isenabled()
        if getattr(self.impl, "gc_off", False):
            gc.disable()
        out = None
        try:
            start = time.perf_counter()
            for _ in range(self.number):
                out = self.run(state)
            elapsed = time.perf_counter() - start
        finally:
            if was_on:
                gc.enable()
        del state
        if self.seen is not None:
            self.seen(out)
        return elapsed / self.number


def take_turns(rounds_by_label, rounds, warmup=WARMUP):
    """Runs `warmup` untimed rounds, then `rounds` timed ones, of each
    Rounds in rounds_by_label ({label: Rounds}), taking turns: round r of
    every implementation before round r + 1 of any, starting each round one
    implementation further along, so that a machine whose speed drifts
    during a workload slows all of its implementations alike. Returns
    {label: [timed round's seconds, ...]}."""
    labels = list(rounds_by_label)
    times = {label: [] for label in labels}
    for r in range(warmup + rounds):
        k = r % len(labels) if labels else 0
        for label in labels[k:] + labels[:k]:
            t = rounds_by_label[label].next_round()
            if r >= warmup:
                times[label].append(t)
    return times


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


# ---- one implementation's rounds of each workload -----------------------------------

def _chain_build(impl, n, number, check):
    want = W.chain_expected(n)[0]

    def seen(acc):
        check(f"{impl.name} chain {n} value", impl.data(acc), want)
    return Rounds(impl, lambda x: W.chain(impl, x), lambda: W.chain_leaves(impl, n),
                  number, seen)


def _chain_backward(impl, n, number, check):
    _, want_g0, want_glast = W.chain_expected(n)

    def prepare():
        x = W.chain_leaves(impl, n)
        return x, W.chain(impl, x)

    def backward(state):
        state[1].backward()
        return state[0]

    def seen(x):
        check(f"{impl.name} chain {n} grad of x[0]", impl.grad(x[0]), want_g0, 1e-9)
        check(f"{impl.name} chain {n} grad of x[-1]", impl.grad(x[-1]), want_glast)

    def big_stack(round_):
        return W.with_big_stack(round_, W.chain_depth(n))
    return Rounds(impl, backward, prepare, number, seen,
                  big_stack if impl.name.startswith("micrograd") else None)


def _seed(impl, number, check):
    want = W.SEED_EXPECTED

    def seen(out):
        a, b, g = out
        check(f"{impl.name} seed g", impl.data(g), want["g"])
        # each call makes fresh leaves, so the grads are those of one backward
        check(f"{impl.name} seed a.grad", impl.grad(a), want["a.grad"], 1e-9)
        check(f"{impl.name} seed b.grad", impl.grad(b), want["b.grad"], 1e-9)
    return Rounds(impl, lambda _: W.seed(impl), number=number, seen=seen)


def _demo_eager(impl, X, y, check, name):
    """An eager demo group from a freshly seeded model each round, one call
    a round (as ROUNDS says): "demo step" times step 0, "demo second step"
    step 1 after an untimed step 0, "demo loop" LOOP_STEPS steps of
    micrograd's notebook loop (W.demo_loop).
    Every round's loss, accuracy and parameter sum after it are checked."""
    want = W.DEMO_EXPECTED[name]
    steps = W.demo_loop if name == "demo loop" else W.demo_step
    counter = itertools.count()

    def prepare():
        model = W.demo_model(impl)            # the same seeded model every round
        if name == "demo second step":
            W.demo_step(impl, model, X, y)
        return model

    def seen(out):
        (loss, acc), model = out
        k = next(counter)
        check(f"{impl.name} {name} loss (round {k})", loss, want[0])
        check(f"{impl.name} {name} accuracy (round {k})", acc, want[1])
        check(f"{impl.name} {name} parameter sum (round {k})", W.checksum(impl, model), want[2])
    return Rounds(impl, lambda m: (steps(impl, m, X, y), m), prepare, 1, seen)


class _Peer:
    """A replayed-step peer in the shape Rounds wants. Its tidy(), run untimed
    just before each round, is one step of the peer: what a round times is
    then the warm step a training loop repeats, not the first step after
    another peer's round, which replaced the caches' contents and, between
    rgrad's two peers, the arena's one tape (in the first run that took
    turns, rgrad-batch 38 us a step and jax.jit 102, against 23 and 65 in
    pytest-benchmark's runs of one peer after another)."""

    def __init__(self, name, step):
        self.name = name
        self.gc_off = False
        self.tidy = step


def _replayed(name, factory, X, y, number, check):
    peer = factory(X, y)            # untimed: build the graph, compile, ...
    peer.step()                     # step 0, from micrograd's seeded weights
    check(f"{name} demo step loss", peer.loss(), W.DEMO_LOSS, 1e-9)
    check(f"{name} demo step parameter sum", peer.param_sum(), W.DEMO_CHECKSUM, 1e-9)

    def seen(_):
        check.finite(f"{name} loss after the timed steps", peer.loss())
    return Rounds(_Peer(name, peer.step), lambda _: peer.step(), number=number, seen=seen)


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

    def measure(workload, key, make, labels, steps=None):
        """One workload: make(label, number) gives each label's Rounds
        (untimed: a replayed peer builds its graph there); they take turns."""
        if not labels:
            return
        rounds, number = table[key]
        if progress:
            progress(f"{workload} {steps or ''}")
        times = take_turns({label: make(label, number) for label in labels}, rounds)
        for label in labels:
            median = _median(times[label])
            results.append({
                "workload": workload, "impl": label, "median_s": median,
                "per_step_s": median / steps if steps else None, "steps": steps,
                "warmup": WARMUP, "rounds": rounds, "calls_per_round": number,
                "times_s": times[label]})

    gc.collect()
    gc.freeze()       # what is alive now (torch, ...) stays out of every collection
    try:
        for n in sizes:
            measure("chain build", f"chain {n}",
                    lambda name, k: _chain_build(impls[name], n, k, check), names, steps=n)
            measure("chain backward", f"chain {n}",
                    lambda name, k: _chain_backward(impls[name], n, k, check), names, steps=n)
        measure("seed", "seed", lambda name, k: _seed(impls[name], k, check), names)
        for workload in ("demo step", "demo second step", "demo loop"):
            measure(workload, workload,
                    lambda name, k: _demo_eager(impls[name], X, y, check, workload), names,
                    steps=W.LOOP_STEPS if workload == "demo loop" else None)
        measure("demo step replayed", "demo step replayed",
                lambda name, k: _replayed(name, peers[name][1], X, y, k, check),
                [p for p in PEER_ORDER if p in peers])
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
