"""`python -m rgrad bench`: the table, the numbers check, --plot, --json, bad
options, and what happens without micrograd, torch or matplotlib. Nothing
here asserts on how long anything took."""
import importlib.util
import json
import re
import statistics
import subprocess
import sys
import threading

import pytest

from rgrad import benchmarks

WORKLOADS = ["chain build", "chain backward", "seed", "demo step"]
ROW = re.compile(
    r"^(chain build|chain backward|seed|demo step) +(\S+) +"
    r"(\d+\.\d{3} (?:s|ms|us|ns)) +(\d+\.\d{3} (?:s|ms|us|ns)|-) +"
    r"(\d+(?:x\d+)?) +(\d+\.\dx|-) +(\d+\.\dx|-)$", re.M)
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


HAVE = {"micrograd": _installed("micrograd"), "torch": _installed("torch")}
HAVE_MATPLOTLIB = _installed("matplotlib")


def _run(args, cwd, blocked=None, timeout=300):
    if blocked is None:
        cmd = [sys.executable, "-m", "rgrad"] + list(args)
    else:
        cmd = [sys.executable, "-c", _BLOCKED.format(blocked=list(blocked),
                                                     argv=list(args))]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)


def _rows(stdout):
    return [m.groups() for m in ROW.finditer(stdout)]


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
    expected = []
    for w in WORKLOADS:
        expected += [(w, "rgrad")]
        if w == "demo step":
            expected += [(w, "rgrad-replay")]
        expected += [(w, n) for n in ("micrograd", "torch") if HAVE[n]]
    rows = _rows(out.stdout)
    assert [(r[0], r[1]) for r in rows] == expected, out.stdout
    for w, impl, median, per_step, rounds, vs_micro, vs_torch in rows:
        assert (per_step != "-") == w.startswith("chain")
        rgrad_row = impl.startswith("rgrad")
        assert (vs_micro != "-") == (rgrad_row and HAVE["micrograd"])
        assert (vs_torch != "-") == (rgrad_row and HAVE["torch"])
    assert "chain of 3,000 steps" in out.stdout


def test_quick_run_says_the_numbers_agree(quick):
    out, _, _ = quick
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("numbers ")]
    assert len(line) == 1 and line[0].startswith("numbers agree: "), out.stdout
    assert "g=24.7041" in line[0] and "0.9093643844649194" in line[0]
    for name, have in HAVE.items():
        assert (name in line[0]) == have
    assert "DISAGREE" not in out.stdout


def test_json_round_trips_and_matches_the_table(quick):
    out, _, js = quick
    assert f"results written to {js}" in out.stdout
    data = json.loads(js.read_text())
    assert json.loads(json.dumps(data)) == data
    assert data["quick"] is True and data["chain_steps"] == 3000
    assert data["agree"] is True and data["disagreements"] == []
    assert data["machine"]["rgrad"] == "0.1.0"
    table = [(r[0], r[1], r[4]) for r in _rows(out.stdout)]
    assert [(r["workload"], r["impl"],
             f"{r['rounds']}" + (f"x{r['calls_per_round']}" if r["calls_per_round"] > 1 else ""))
            for r in data["results"]] == table
    for r in data["results"]:
        assert len(r["times_s"]) == r["rounds"]
        assert r["median_s"] == pytest.approx(statistics.median(r["times_s"]))
        assert min(r["times_s"]) <= r["median_s"] <= max(r["times_s"])
        if r["steps"]:
            assert r["per_step_s"] == pytest.approx(r["median_s"] / r["steps"])
    medians = {(r["workload"], r["impl"]): r["median_s"] for r in data["results"]}
    for w, by_label in data["speedups"].items():
        for label, vs in by_label.items():
            for other, ratio in vs.items():
                assert ratio == pytest.approx(medians[(w, other)] / medians[(w, label)])
    assert set(data["missing"]) == {n for n, have in HAVE.items() if not have}


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


def test_without_micrograd_and_torch_it_says_how_to_install_them_and_runs_rgrad(tmp_path):
    out = _run(["bench", "--quick"], cwd=tmp_path, blocked=["micrograd", "torch"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "pip install micrograd==0.1.0" in out.stdout
    assert "pip install torch" in out.stdout
    assert "micrograd not installed" in out.stdout and "torch not installed" in out.stdout
    rows = _rows(out.stdout)
    assert [(r[0], r[1]) for r in rows] == [
        ("chain build", "rgrad"), ("chain backward", "rgrad"), ("seed", "rgrad"),
        ("demo step", "rgrad"), ("demo step", "rgrad-replay")]
    assert all(r[5] == r[6] == "-" for r in rows)      # nothing to compare with
    assert "numbers agree: rgrad gives the expected values" in out.stdout


def test_without_matplotlib_plot_prints_the_table_then_the_hint_and_exits_1(tmp_path):
    png = tmp_path / "chart.png"
    out = _run(["bench", "--quick", "--plot", str(png)], cwd=tmp_path,
               blocked=["micrograd", "torch", "matplotlib"])
    assert out.returncode == 1
    assert len(_rows(out.stdout)) == 5 and "numbers agree" in out.stdout
    assert "pip install matplotlib" in out.stdout
    assert not png.exists()


# ---- in process: the checks, the report, the big-stack runner -------------------

def _rgrad_only():
    impls = {"rgrad": benchmarks._load_rgrad()}
    return benchmarks.run(quick=True, impls=impls, missing={})


def test_wrong_numbers_are_reported_as_disagreeing(monkeypatch):
    monkeypatch.setitem(benchmarks.SEED_EXPECTED, "g", 25.0)
    monkeypatch.setattr(benchmarks, "DEMO_LOSS", 1.0)
    data = _rgrad_only()
    assert data["agree"] is False
    assert any(d.startswith("rgrad seed g: got 24.70408") for d in data["disagreements"])
    assert any("rgrad-replay demo step loss" in d for d in data["disagreements"])
    lines = benchmarks.report(data)
    assert "numbers DISAGREE:" in lines
    assert not any(ln.startswith("numbers agree") for ln in lines)


def test_main_exits_1_when_the_numbers_disagree(monkeypatch, capsys):
    monkeypatch.setitem(benchmarks.SEED_EXPECTED, "a.grad", 1.0)
    monkeypatch.setattr(benchmarks, "load_impls",
                        lambda: ({"rgrad": benchmarks._load_rgrad()}, {}))
    assert benchmarks.main(quick=True) == 1
    assert "rgrad seed a.grad: got 138.83" in capsys.readouterr().out


def test_speedups_divide_the_other_median_by_rgrads():
    results = [{"workload": "seed", "impl": "rgrad", "median_s": 2.0},
               {"workload": "seed", "impl": "micrograd", "median_s": 10.0},
               {"workload": "demo step", "impl": "rgrad", "median_s": 1.0},
               {"workload": "demo step", "impl": "rgrad-replay", "median_s": 0.5},
               {"workload": "demo step", "impl": "torch", "median_s": 3.0}]
    assert benchmarks.speedups(results) == {
        "seed": {"rgrad": {"micrograd": 5.0}},
        "demo step": {"rgrad": {"torch": 3.0}, "rgrad-replay": {"torch": 6.0}}}


def test_time_rounds_collects_before_each_round_and_skips_the_warm_up(monkeypatch):
    events = []
    monkeypatch.setattr(benchmarks.gc, "collect", lambda: events.append("gc"))

    class Fake:
        def tidy(self):
            events.append("tidy")

    times, outs = benchmarks.time_rounds(
        Fake(), lambda state: events.append("run") or state,
        prepare=lambda: events.append("prepare") or len(events), rounds=2,
        number=3, warmup=1, keep=True)
    assert len(times) == 2 and all(t >= 0 for t in times)
    assert outs == [1, 7, 13]          # what prepare handed each round
    assert events == ["prepare", "gc", "tidy", "run", "run", "run"] * 3


def test_big_stack_runs_deep_recursion_and_restores_the_limits():
    limit, size = sys.getrecursionlimit(), threading.stack_size()

    def deep(n):
        return 0 if n == 0 else 1 + deep(n - 1)

    assert benchmarks.with_big_stack(lambda: deep(50_000)) == 50_000
    assert sys.getrecursionlimit() == limit and threading.stack_size() == size
    with pytest.raises(KeyError):
        benchmarks.with_big_stack(lambda: {}["missing"])
    assert sys.getrecursionlimit() == limit and threading.stack_size() == size
