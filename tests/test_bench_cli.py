"""`python -m rgrad bench`: the table, the like-for-like rule (the same
warm-up and rounds for every implementation of a workload, micrograd with and
without its gc), the numbers check, --plot, --json, bad options, and what
happens without micrograd, torch, jax, casadi or matplotlib. Nothing here
asserts on how long anything took."""
import gc
import importlib.util
import json
import re
import statistics
import subprocess
import sys
import threading
import time
import weakref

import pytest

from rgrad import bench_workloads, benchmarks

PEERS = ["micrograd", "torch", "jax", "casadi"]          # optional packages
SCALAR = [("rgrad", None), ("micrograd", "micrograd"), ("micrograd-nogc", "micrograd"),
          ("torch", "torch")]
REPLAYED = [("rgrad-replay", None), ("rgrad-batch", None), ("torch-tensors", "torch"), ("jax-jit", "jax"),
            ("casadi-vm", "casadi")]
TIME = r"\d+\.\d{3} (?:s|ms|us|ns)"
RATIO = r"\d+(?:\.\d+)?x"
ROW = re.compile(
    rf"^((?:chain build|chain backward) [\d,]+|seed|demo step replayed|demo second step|"
    rf"demo loop|"
    rf"demo step) +"
    rf"(\S+) +({TIME}) +({TIME}|-) +(\d+(?:x\d+)?) +({RATIO}|-) +({RATIO}|-)$", re.M)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# runs the CLI with some modules made unimportable, as if not installed
_BLOCKED = ("import sys\n"
            "for name in {blocked!r}: sys.modules[name] = None\n"
            "from rgrad.__main__ import main\n"
            "sys.exit(main({argv!r}))\n")


def _installed(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


HAVE = {name: _installed(name) for name in PEERS}
HAVE_MATPLOTLIB = _installed("matplotlib")


def _run(args, cwd, blocked=None, timeout=600):
    if blocked is None:
        cmd = [sys.executable, "-m", "rgrad"] + list(args)
    else:
        cmd = [sys.executable, "-c", _BLOCKED.format(blocked=list(blocked),
                                                     argv=list(args))]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)


def _rows(stdout):
    return [m.groups() for m in ROW.finditer(stdout)]


def _expected_rows(have):
    names = [n for n, need in SCALAR if need is None or have[need]]
    rows = []
    for n in ("3,000", "30,000"):
        rows += [(f"chain build {n}", i) for i in names]
        rows += [(f"chain backward {n}", i) for i in names]
    rows += [("seed", i) for i in names] + [("demo step", i) for i in names]
    rows += [("demo second step", i) for i in names]
    rows += [("demo loop", i) for i in names]
    rows += [("demo step replayed", i) for i, need in REPLAYED if need is None or have[need]]
    return rows


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One `bench --quick` run with --json (and --plot if matplotlib is
    there), shared by the tests that read its output."""
    folder = tmp_path_factory.mktemp("bench")
    png, js = folder / "speedups.png", folder / "results.json"
    args = ["bench", "--quick", "--json", str(js)]
    if HAVE_MATPLOTLIB:
        args += ["--plot", str(png)]
    out = _run(args, cwd=folder)
    return out, png, js


def test_quick_run_prints_machine_header_and_a_row_per_workload_and_engine(quick):
    out, _, _ = quick
    assert out.returncode == 0, out.stdout + out.stderr
    header = [ln for ln in out.stdout.splitlines() if ln.startswith("machine: ")]
    assert len(header) == 1, out.stdout
    assert re.search(r"\d+ CPUs, \w*Python 3\.\d+", header[0])
    assert "rgrad 0.1.0" in header[0]
    for name, have in HAVE.items():
        assert (f"{name} not installed" in header[0]) == (not have)
    rows = _rows(out.stdout)
    assert [(r[0], r[1]) for r in rows] == _expected_rows(HAVE), out.stdout
    for group, impl, median, per_step, rounds, vs_micro, vs_nogc in rows:
        assert (per_step != "-") == group.startswith(("chain", "demo loop"))
        # every row, peers included, has both micrograd ratios when micrograd is there
        assert (vs_micro != "-") == (vs_nogc != "-") == HAVE["micrograd"]
    assert "chains of 3,000, 30,000 steps" in out.stdout
    assert "against micrograd's EAGER demo step" in out.stdout


def test_quick_run_gives_every_implementation_of_a_workload_the_same_rounds(quick):
    out, _, js = quick
    by_group = {}
    for group, impl, _, _, rounds, _, _ in _rows(out.stdout):
        by_group.setdefault(group, set()).add(rounds)
    assert by_group and all(len(r) == 1 for r in by_group.values()), by_group
    data = json.loads(js.read_text())
    assert {r["warmup"] for r in data["results"]} == {benchmarks.WARMUP} == {1}


@pytest.mark.skipif(not HAVE["micrograd"], reason="micrograd is not installed")
def test_quick_run_shows_micrograd_against_itself_with_and_without_gc(quick):
    out, _, _ = quick
    for group, impl, _, _, _, vs_micro, vs_nogc in _rows(out.stdout):
        if impl == "micrograd":
            assert vs_micro == "1.00x"
        if impl == "micrograd-nogc":
            assert vs_nogc == "1.00x"


def test_quick_run_says_the_numbers_agree(quick):
    out, _, _ = quick
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("numbers ")]
    assert len(line) == 1 and line[0].startswith("numbers agree: "), out.stdout
    assert "g=24.7041" in line[0] and "0.9093643844649194" in line[0]
    for name, impl in (("micrograd", "micrograd-nogc"), ("torch", "torch-tensors"),
                       ("jax", "jax-jit"), ("casadi", "casadi-vm")):
        assert (impl in line[0]) == HAVE[name]
    assert "DISAGREE" not in out.stdout


def test_json_round_trips_and_matches_the_table(quick):
    out, _, js = quick
    assert f"results written to {js}" in out.stdout
    data = json.loads(js.read_text())
    assert json.loads(json.dumps(data)) == data
    assert data["quick"] is True and data["chain_sizes"] == [3000, 30000]
    assert data["agree"] is True and data["disagreements"] == []
    assert data["machine"]["rgrad"] == "0.1.0"
    table = [(r[1], r[4]) for r in _rows(out.stdout)]
    assert [(r["impl"],
             f"{r['rounds']}" + (f"x{r['calls_per_round']}" if r["calls_per_round"] > 1 else ""))
            for r in data["results"]] == table
    for r in data["results"]:
        assert len(r["times_s"]) == r["rounds"]
        assert r["median_s"] == pytest.approx(statistics.median(r["times_s"]))
        assert min(r["times_s"]) <= r["median_s"] <= max(r["times_s"])
        if r["steps"]:
            assert r["per_step_s"] == pytest.approx(r["median_s"] / r["steps"])
    assert data["speedups"] == benchmarks.speedups(data["results"])
    absent = {"micrograd": {"micrograd", "micrograd-nogc"},
              "torch": {"torch", "torch-tensors"}, "jax": {"jax-jit"},
              "casadi": {"casadi-vm"}}
    assert set(data["missing"]) == {row for name, rows in absent.items()
                                    if not HAVE[name] for row in rows}


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="matplotlib is not installed")
def test_plot_writes_a_png(quick):
    out, png, _ = quick
    assert f"chart saved to {png}" in out.stdout
    assert png.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.parametrize("args, message", [
    (["bench", "--bogus"], "unrecognized arguments"),
    (["bench", "--plot"], "expected one argument"),
    (["bench", "--json"], "expected one argument"),
    (["bench", "extra"], "unrecognized arguments"),
    (["bench", "--plot", "/no/such/folder/x.png"], "no such directory"),
    (["bench", "--json", "/no/such/folder/x.json"], "no such directory"),
])
def test_bad_options_print_usage_and_exit_2(tmp_path, args, message):
    out = _run(args, cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    assert "usage:" in out.stderr and message in out.stderr
    assert out.stdout == ""


BLOCK_ALL = ["micrograd", "torch", "jax", "casadi"]
RGRAD_ROWS = _expected_rows(dict.fromkeys(PEERS, False))


def test_without_the_peers_it_says_how_to_install_them_and_runs_rgrad(tmp_path):
    out = _run(["bench", "--quick"], cwd=tmp_path, blocked=BLOCK_ALL)
    assert out.returncode == 0, out.stdout + out.stderr
    for hint in ("pip install micrograd==0.1.0", "pip install torch", "pip install jax",
                 "pip install casadi"):
        assert hint in out.stdout
    for name in PEERS:
        assert f"{name} not installed" in out.stdout
    rows = _rows(out.stdout)
    assert [(r[0], r[1]) for r in rows] == RGRAD_ROWS
    assert {r[1] for r in rows} == {"rgrad", "rgrad-replay", "rgrad-batch"}
    assert all(r[5] == r[6] == "-" for r in rows)      # nothing to compare with
    assert ("numbers agree: rgrad, rgrad-replay and rgrad-batch all give micrograd's values"
            in out.stdout)


def test_without_matplotlib_plot_prints_the_table_then_the_hint_and_exits_1(tmp_path):
    png = tmp_path / "chart.png"
    out = _run(["bench", "--quick", "--plot", str(png)], cwd=tmp_path,
               blocked=BLOCK_ALL + ["matplotlib"])
    assert out.returncode == 1
    assert len(_rows(out.stdout)) == len(RGRAD_ROWS) and "numbers agree" in out.stdout
    assert "pip install matplotlib" in out.stdout
    assert not png.exists()


# ---- in process: the checks, the rule, the report, the big-stack runner ----------

def _rgrad_only(peers=None):
    from rgrad.bench_peers import FACTORIES
    impls = {"rgrad": bench_workloads.LOADERS["rgrad"]()}
    if peers is None:
        peers = {"rgrad-replay": ("0.1.0", FACTORIES["rgrad-replay"])}
    return benchmarks.run(quick=True, impls=impls, missing={}, peers=peers)


def test_wrong_numbers_are_reported_as_disagreeing(monkeypatch):
    monkeypatch.setitem(bench_workloads.SEED_EXPECTED, "g", 25.0)
    monkeypatch.setattr(bench_workloads, "DEMO_LOSS", 1.0)
    data = _rgrad_only()
    assert data["agree"] is False
    assert any(d.startswith("rgrad seed g: got 24.70408") for d in data["disagreements"])
    assert any("rgrad-replay demo step loss" in d for d in data["disagreements"])
    lines = benchmarks.report(data)
    assert "numbers DISAGREE:" in lines
    assert not any(ln.startswith("numbers agree") for ln in lines)


def test_a_replayed_peer_computing_another_step_is_reported(monkeypatch):
    from rgrad.bench_peers import FACTORIES

    class OffByOne(FACTORIES["rgrad-replay"]):
        def loss(self):
            return super().loss() + 1e-6          # far beyond the 1e-9 allowed

    data = _rgrad_only(peers={"rgrad-replay": ("0.1.0", OffByOne)})
    assert data["agree"] is False
    assert [d.split(":")[0] for d in data["disagreements"]] == [
        "rgrad-replay demo step loss"]


def test_main_exits_1_when_the_numbers_disagree(monkeypatch, capsys):
    monkeypatch.setitem(bench_workloads.SEED_EXPECTED, "a.grad", 1.0)
    monkeypatch.setattr(bench_workloads, "load_impls",
                        lambda: ({"rgrad": bench_workloads.LOADERS["rgrad"]()}, {}))
    monkeypatch.setattr(benchmarks, "load_peers", lambda: ({}, {}))
    assert benchmarks.main(quick=True) == 1
    assert "rgrad seed a.grad: got 138.83" in capsys.readouterr().out


def test_speedups_set_every_row_against_both_micrograds_replayed_against_eager():
    rows = [("seed", "rgrad", 2.0), ("seed", "micrograd", 10.0),
            ("seed", "micrograd-nogc", 4.0),
            ("demo step", "rgrad", 1.0), ("demo step", "micrograd", 8.0),
            ("demo step", "micrograd-nogc", 2.0),
            ("demo step replayed", "rgrad-replay", 0.5),
            ("demo step replayed", "jax-jit", 0.25)]
    results = [{"workload": w, "impl": i, "median_s": t, "steps": None}
               for w, i, t in rows]
    results.append({"workload": "chain build", "impl": "rgrad", "median_s": 1.0,
                    "steps": 3000})
    assert benchmarks.speedups(results) == {
        "seed": {"rgrad": {"micrograd": 5.0, "micrograd-nogc": 2.0},
                 "micrograd": {"micrograd": 1.0, "micrograd-nogc": 0.4},
                 "micrograd-nogc": {"micrograd": 2.5, "micrograd-nogc": 1.0}},
        "demo step": {"rgrad": {"micrograd": 8.0, "micrograd-nogc": 2.0},
                      "micrograd": {"micrograd": 1.0, "micrograd-nogc": 0.25},
                      "micrograd-nogc": {"micrograd": 4.0, "micrograd-nogc": 1.0}},
        "demo step replayed": {"rgrad-replay": {"micrograd": 16.0, "micrograd-nogc": 4.0},
                               "jax-jit": {"micrograd": 32.0, "micrograd-nogc": 8.0}}}


def test_a_round_prepares_collects_and_tidies_untimed_then_checks_and_drops_what_it_made(
        monkeypatch):
    events = []
    monkeypatch.setattr(benchmarks.gc, "collect", lambda: events.append("gc"))

    class Fake:
        gc_off = False

        def tidy(self):
            events.append("tidy")

    class State:
        pass
    made = []

    def prepare():
        events.append("prepare")
        made.append(weakref.ref(state := State()))
        return state

    def seen(out):
        # the round's state is gone before its result is checked
        events.append(("seen", out, made[-1]() is None))

    rounds = benchmarks.Rounds(Fake(), lambda st: events.append("run") or len(events),
                               prepare, number=3, seen=seen)
    times = [rounds.next_round() for _ in range(2)]
    assert all(t >= 0 for t in times)
    assert events == ["prepare", "gc", "tidy", "run", "run", "run", ("seen", 6, True),
                      "prepare", "gc", "tidy", "run", "run", "run", ("seen", 13, True)]


def test_a_rounds_result_is_gone_once_it_has_been_checked():
    class Fake:
        gc_off = False

        def tidy(self):
            pass

    class Out:
        pass
    outs = []

    def run(_):
        outs.append(weakref.ref(out := Out()))
        return out
    checked = []
    rounds = benchmarks.Rounds(Fake(), run, number=2, seen=lambda out: checked.append(
        isinstance(out, Out)))
    rounds.next_round()
    assert checked == [True]
    assert [ref() for ref in outs] == [None, None]


@pytest.mark.parametrize("gc_off", [False, True])
def test_a_round_turns_the_collector_off_for_the_timed_calls_only(gc_off):
    seen = {"prepare": set(), "run": set(), "seen": set()}

    class Fake:
        def tidy(self):
            pass
    impl = Fake()
    impl.gc_off = gc_off
    assert gc.isenabled()
    rounds = benchmarks.Rounds(impl, lambda _: seen["run"].add(gc.isenabled()),
                               prepare=lambda: seen["prepare"].add(gc.isenabled()),
                               number=2, seen=lambda _: seen["seen"].add(gc.isenabled()))
    rounds.next_round()
    rounds.next_round()
    assert seen == {"prepare": {False}, "run": {not gc_off}, "seen": {True}}
    assert gc.isenabled()


def test_implementations_take_turns_round_by_round_each_round_starting_further_along():
    log = []

    class Logged:
        def __init__(self, label):
            self.label = label

        def next_round(self):
            log.append(self.label)
            return len(log)

    times = benchmarks.take_turns({k: Logged(k) for k in "abc"}, rounds=3, warmup=1)
    assert log == list("abc" "bca" "cab" "abc")
    # the warm-up round is not counted
    assert times == {"a": [6, 8, 10], "b": [4, 9, 11], "c": [5, 7, 12]}


@pytest.mark.skipif(not HAVE["micrograd"], reason="needs micrograd: pip install micrograd==0.1.0")
def test_the_run_has_each_workloads_implementations_take_turns(monkeypatch):
    """run() hands take_turns every implementation of a workload at once
    (the test above shows what take_turns does with them)."""
    turns = []
    real = benchmarks.take_turns

    def logged(rounds_by_label, rounds, **kwargs):
        turns.append(sorted(rounds_by_label))
        return real(rounds_by_label, rounds, **kwargs)
    monkeypatch.setattr(benchmarks, "take_turns", logged)
    monkeypatch.setattr(benchmarks, "QUICK_CHAIN_SIZES", (300,))
    monkeypatch.setitem(benchmarks.ROUNDS, "quick",
                        {k: (1, 1) for k in [*benchmarks.ROUNDS["quick"], "chain 300"]})
    impls = {n: bench_workloads.LOADERS[n]() for n in ("rgrad", "micrograd-nogc")}
    data = benchmarks.run(quick=True, impls=impls, missing={}, peers={})
    assert data["agree"], data["disagreements"]
    # chain build, chain backward, seed, the three eager demos (no replayed peers)
    assert turns == [["micrograd-nogc", "rgrad"]] * 6
    assert len(data["results"]) == 12


def test_each_replayed_round_starts_with_an_untimed_step_of_its_own_peer(monkeypatch):
    """The peers take turns, and a round right after another peer's starts
    cold (caches; for rgrad's two peers, the arena keeps one root's tape and
    the other's round replaced it): one untimed step of its own peer comes
    right before every round's timed steps."""
    from rgrad.bench_peers import FACTORIES
    log = []

    def logged(name):
        class Logged(FACTORIES[name]):
            def step(self):
                log.append(name)
                super().step()
        return Logged

    class Clock:
        @staticmethod
        def perf_counter():
            log.append("clock")
            return time.perf_counter()
    monkeypatch.setattr(benchmarks, "time", Clock)
    names = ("rgrad-replay", "rgrad-batch")
    data = benchmarks.run(quick=True, impls={}, missing={},
                          peers={n: ("0.1.0", logged(n)) for n in names})
    assert data["agree"], data["disagreements"]
    rounds, number = benchmarks.ROUNDS["quick"]["demo step replayed"]
    timed = [log[k + 1:k + 1 + number] for k, e in enumerate(log) if e == "clock"][::2]
    before = [log[k - 1] for k, e in enumerate(log) if e == "clock"][::2]
    assert len(timed) == 2 * (benchmarks.WARMUP + rounds)
    assert before == [steps[0] for steps in timed]           # its own peer's step
    assert all(steps == [steps[0]] * number for steps in timed)
    for n in names:     # step 0 (checked), then a warm step and `number` a round
        assert log.count(n) == 1 + (benchmarks.WARMUP + rounds) * (1 + number)


def test_only_micrograd_nogc_runs_without_the_collector():
    impls, _ = bench_workloads.load_impls()
    assert {n for n, impl in impls.items() if impl.gc_off} == (
        {"micrograd-nogc"} if HAVE["micrograd"] else set())


def test_big_stack_runs_deep_recursion_and_restores_the_limits():
    limit, size = sys.getrecursionlimit(), threading.stack_size()

    def deep(n):
        return 0 if n == 0 else 1 + deep(n - 1)

    assert bench_workloads.with_big_stack(lambda: deep(50_000)) == 50_000
    assert sys.getrecursionlimit() == limit and threading.stack_size() == size
    with pytest.raises(KeyError):
        bench_workloads.with_big_stack(lambda: {}["missing"])
    assert sys.getrecursionlimit() == limit and threading.stack_size() == size
