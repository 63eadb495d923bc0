"""`python -m rgrad demo`: training report, progress, replay vs eager, plots,
and bad options."""
import io
import os
import re
import subprocess
import sys

import pytest

from rgrad.data import make_moons
from rgrad.demo import Progress, text_boundary, train

# runs the CLI with matplotlib made unimportable, as if it were not installed
_NO_MATPLOTLIB = ("import sys; sys.modules['matplotlib'] = None; "
                  "from rgrad.__main__ import main; sys.exit(main(sys.argv[1:]))")
_DONE = re.compile(r"^done: loss (\S+), accuracy (\S+)%, (\S+) ms per step", re.M)


def _run(*args, code=None, timeout=120):
    cmd = [sys.executable] + (["-c", code] if code else ["-m", "rgrad"]) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          cwd=os.path.dirname(os.path.abspath(__file__)))


def _final(stdout):
    m = _DONE.search(stdout)
    assert m, stdout
    return float(m.group(1)), float(m.group(2)), float(m.group(3))


def test_demo_reports_progress_lines_then_loss_accuracy_and_time_per_step():
    out = _run("demo", "--steps", "3")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # not a terminal: the first step, every tenth and the last
    assert [ln.split()[1] for ln in lines if ln.startswith("step")] == ["1/3", "3/3"]
    assert re.match(r"step 3/3  loss \d+\.\d{6}  accuracy +\d+\.\d%$", lines[-2])
    loss, acc, ms = _final(out.stdout)
    assert loss > 0 and 0 <= acc <= 100 and ms > 0
    assert "\r" not in out.stdout          # not a terminal: no redrawing
    assert "decision boundary" not in out.stdout   # no --plot, no picture


def test_demo_defaults_reach_95_percent_accuracy_printing_every_10_steps():
    out = _run("demo")
    assert out.returncode == 0, out.stderr
    steps = [ln.split()[1] for ln in out.stdout.splitlines() if ln.startswith("step")]
    assert steps == ["1/100"] + [f"{k}/100" for k in range(10, 101, 10)]
    _, acc, _ = _final(out.stdout)
    assert acc >= 95.0
    assert "(100 steps, batch)" in out.stdout       # the default: the fastest


def test_replay_and_eager_training_give_the_same_loss_at_every_step():
    _, eager = train(steps=15, samples=40, log=None)
    _, replay = train(steps=15, samples=40, log=None, replay=True)
    assert len(eager) == len(replay) == 15
    assert replay == eager          # equal to the bit: replay is what rebuilding computes


def test_batch_training_follows_eager_to_the_last_bits():
    # one sample's graph over all samples: the same ops, the gradients summed
    # in another order, so each step's loss agrees to rounding, not to the bit
    _, eager = train(steps=15, samples=40, log=None)
    _, batch = train(steps=15, samples=40, log=None, batch=True)
    assert len(batch) == 15
    for (lb, ab), (le, ae) in zip(batch, eager):
        assert lb == pytest.approx(le, rel=1e-12) and ab == ae


def test_cli_replay_and_eager_report_the_same_final_loss():
    common = ("demo", "--steps", "5", "--samples", "30", "--seed", "7")
    replay, eager = _run(*common, "--replay"), _run(*common, "--eager")
    batch = _run(*common, "--batch")
    assert replay.returncode == eager.returncode == batch.returncode == 0
    assert "replay)" in replay.stdout and "eager)" in eager.stdout
    assert "batch)" in batch.stdout
    assert _final(replay.stdout)[:2] == _final(eager.stdout)[:2]
    assert _final(batch.stdout)[:2] == _final(eager.stdout)[:2]    # as printed, to 6 places


def test_train_calls_on_step_with_step_loss_and_accuracy():
    seen = []
    _, history = train(steps=3, samples=20, log=None, replay=True,
                       on_step=lambda k, loss, acc: seen.append((k, loss, acc)))
    assert seen == [(k, loss, acc) for k, (loss, acc) in enumerate(history)]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_redraws_one_line_and_ends_it_at_the_last_step():
    term = _Terminal()
    bar = Progress(4, term, interval=0.0)
    for k in range(4):
        bar.update(k, 1.0 / (k + 1), 0.5)
    text = term.getvalue()
    assert text.count("\r") == 4 and text.count("\n") == 1 and text.endswith("\n")
    assert "step 4/4 [" + "#" * 30 + "]  loss 0.250000  accuracy  50.0%" in text


def test_progress_elsewhere_prints_the_first_every_tenth_and_last_step():
    out = io.StringIO()
    bar = Progress(25, out)
    for k in range(25):
        bar.update(k, 0.5, 1.0)
    steps = [ln.split()[1] for ln in out.getvalue().splitlines()]
    assert steps == ["1/25", "10/25", "20/25", "25/25"]
    assert "\r" not in out.getvalue()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses a Linux pty")
def test_demo_on_a_terminal_shows_one_progress_line_redrawn_with_carriage_returns():
    import pty
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "rgrad", "demo", "--steps", "30"],
                            stdout=slave, stderr=subprocess.PIPE,
                            cwd=os.path.dirname(os.path.abspath(__file__)))
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:        # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    assert "\r" in text and "step 30/30 [" in text
    # the bar and the final report: two lines
    assert text.count("\n") == 2 and "ms per step" in text


def test_plot_saves_a_png_of_the_decision_boundary(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "boundary.png"
    out = _run("demo", "--steps", "5", "--samples", "30", "--plot", str(path))
    assert out.returncode == 0, out.stderr
    assert f"decision boundary saved to {path}" in out.stdout
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert b"IHDR" in data[:16] and data.endswith(b"IEND\xaeB`\x82")


def test_plot_without_matplotlib_prints_a_text_picture_and_how_to_get_the_png(tmp_path):
    path = tmp_path / "boundary.png"
    out = _run("demo", "--steps", "30", "--plot", str(path), code=_NO_MATPLOTLIB)
    assert out.returncode == 0, out.stderr
    assert "pip install matplotlib" in out.stdout
    assert not path.exists()
    rows = [ln for ln in out.stdout.splitlines() if ln.startswith("|")]
    assert len(rows) == 20 and all(len(r) == 62 and r.endswith("|") for r in rows)
    picture = "".join(r[1:-1] for r in rows)
    assert set(picture) <= set(" :oxOX")
    assert {":", " ", "o", "x"} <= set(picture)   # both regions, both classes


def test_text_boundary_shades_the_models_side_and_capitalises_its_mistakes():
    model, _ = train(steps=2, samples=30, log=None, replay=True)   # half trained
    X, labels = make_moons(30, noise=0.1, seed=1337)
    says_one = [model(p).data > 0 for p in X]
    wrong = [p for p, s, lab in zip(X, says_one, labels) if s != (lab == 1)]
    assert 0 < len(wrong) < 30
    # a grid fine enough that these 30 points fall in 30 different cells
    pic = text_boundary(model, X, labels, width=300, height=150).splitlines()
    assert len(pic) == 150 + 2 + 1 and all(len(r) == 302 for r in pic[:-1])
    body = "".join(r[1:-1] for r in pic[1:-2])
    assert sum(body.count(m) for m in "oxOX") == 30
    assert body.count("O") + body.count("X") == len(wrong)
    assert body.count("o") + body.count("O") == labels.count(0)
    assert {":", " "} <= set(body) <= set(" :oxOX")


@pytest.mark.parametrize("args", [
    [], ["nonsense"], ["demo", "--bogus"],
    ["demo", "--steps", "0"], ["demo", "--steps", "-3"], ["demo", "--steps", "x"],
    ["demo", "--steps", "2.5"], ["demo", "--samples", "1"], ["demo", "--samples", "many"],
    ["demo", "--seed", "1.5"], ["demo", "--eager", "--replay"],
    ["demo", "--plot", "/no/such/folder/boundary.png"],
])
def test_bad_options_exit_2_with_a_usage_message(args):
    out = _run(*args, timeout=60)
    assert out.returncode == 2
    assert "usage:" in out.stderr and "error:" in out.stderr
    assert out.stdout == ""
