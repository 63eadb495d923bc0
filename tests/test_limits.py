"""Limits and faults: the node budget, and anomaly mode."""
import math
import os
import subprocess
import sys

import pytest

import rgrad
from rgrad import Value


@pytest.fixture
def budget():
    """Runs a test under a node budget, lifted afterwards."""
    def set_budget(n):
        rgrad.collect()
        rgrad.set_max_nodes(rgrad.stats()["nodes"] + n)
    yield set_budget
    rgrad.set_max_nodes(None)


def test_node_budget_raises_memory_error_naming_the_fix(budget):
    budget(1000)
    keep = []
    with pytest.raises(MemoryError, match="set_max_nodes") as info:
        for _ in range(2000):
            keep.append(Value(1.0) * 2)
    assert "RGRAD_MAX_NODES" in str(info.value)
    assert 400 <= len(keep) <= 1000


def test_engine_is_usable_after_the_budget_is_hit(budget):
    budget(500)
    keep = []
    with pytest.raises(MemoryError):
        while True:
            keep.append(Value(2.0) * 3)
    before = [v.data for v in keep]
    del keep[len(keep) // 2:]          # drop half: room again, no reset call
    y = keep[0] * keep[1] + 1
    y.backward()
    assert (y.data, before[0]) == (37.0, 6.0)
    for _ in range(5000):              # graphs that are dropped fit forever
        (Value(1.0) + 2).backward()


def test_budget_hit_inside_a_fused_layer_makes_no_partial_nodes(budget):
    import rgrad.nn as nn
    model = nn.MLP(4, [64, 64, 1])
    budget(300)
    with pytest.raises(MemoryError):
        model([1.0, 2.0, 3.0, 4.0])
    rgrad.set_max_nodes(None)
    out = model([1.0, 2.0, 3.0, 4.0])
    out.backward()
    assert math.isfinite(out.data)


def test_set_max_nodes_rejects_bad_values():
    for bad in (0, -5, 1.5, "10", True):
        with pytest.raises(ValueError):
            rgrad.set_max_nodes(bad)


def test_rgrad_max_nodes_environment_variable_sets_the_budget():
    code = ("import rgrad\nfrom rgrad import Value\n"
            "print(rgrad.stats()['max_nodes'])\n"
            "keep = []\n"
            "try:\n"
            "    while True: keep.append(Value(1.0))\n"
            "except MemoryError: print(len(keep))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "RGRAD_MAX_NODES": "5000"}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["5000", "5000"]
    bad = subprocess.run([sys.executable, "-c", "import rgrad"], capture_output=True,
                         text=True, env={**os.environ, "RGRAD_MAX_NODES": "lots"}, timeout=60)
    assert bad.returncode != 0 and "RGRAD_MAX_NODES" in bad.stderr


# ---- anomaly mode ----------------------------------------------------------------


def test_anomaly_mode_names_the_op_whose_forward_is_not_finite():
    a = Value(1e308)
    with rgrad.detect_anomaly():
        with pytest.raises(FloatingPointError, match=r"forward of '\*' gave inf.*1e\+308"):
            a * 10
        with pytest.raises(FloatingPointError, match=r"forward of '\+' gave inf"):
            Value(1e308) + Value(1e308)
        # -a is a * -1, as micrograd builds it
        with pytest.raises(FloatingPointError, match=r"forward of '\*' gave -inf"):
            Value(math.inf) - Value(math.inf)   # its first op, -inf, already is
    assert (a * 10).data == math.inf        # outside it, inf propagates


def test_anomaly_mode_names_the_op_whose_backward_gives_a_bad_gradient():
    x = Value(0.0)
    y = (x ** 0.5) * 3                      # d/dx sqrt(x) at 0 is infinite
    with rgrad.detect_anomaly():
        with pytest.raises(FloatingPointError, match=r"backward of '\*\*0.5'.*inf"):
            y.backward()
    y.backward()                            # outside it: inf, as in Python floats
    assert x.grad == math.inf


def test_anomaly_mode_checks_replay_and_fused_layers():
    import rgrad.nn as nn
    a = Value(1.0)
    y = a.log() * 2
    a.data = math.inf
    with rgrad.detect_anomaly():
        with pytest.raises(FloatingPointError, match="log"):
            y.forward()
        layer = nn.Layer(2, 3)
        with pytest.raises(FloatingPointError):
            layer([math.inf, 1.0])
    a.data = 1.0
    y.forward()
    assert y.data == 0.0


def test_anomaly_mode_is_per_thread_and_nests():
    import threading
    seen = []
    with rgrad.detect_anomaly():
        with rgrad.detect_anomaly():
            pass
        t = threading.Thread(target=lambda: seen.append((Value(1e308) * 10).data))
        t.start()
        t.join()
        with pytest.raises(FloatingPointError):
            Value(1e308) * 10               # still on after the inner block
    assert seen == [math.inf]


def _in_anomaly_mode():
    """Whether anomaly mode is on in the calling thread (it raises on inf)."""
    try:
        Value(1e308) * 10
    except FloatingPointError:
        return True
    return False


def _on_thread(fn):
    """Runs fn on a new thread, returns what it returned."""
    import threading
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_leaving_anomaly_mode_on_another_thread_ends_it_on_the_entering_thread():
    import threading
    entered, exited = threading.Event(), threading.Event()
    cms, seen = [], {}

    def opener():
        cm = rgrad.detect_anomaly()
        cm.__enter__()
        cms.append(cm)
        seen["inside"] = _in_anomaly_mode()
        entered.set()
        exited.wait(10)
        seen["after"] = _in_anomaly_mode()

    t = threading.Thread(target=opener)
    t.start()
    assert entered.wait(10)
    cms[0].__exit__(None, None, None)           # closed here, on the main thread
    seen["closer"] = _in_anomaly_mode()
    exited.set()
    t.join()
    assert seen == {"inside": True, "after": False, "closer": False}
    with rgrad.detect_anomaly():                # the closing thread's own mode works
        assert _in_anomaly_mode()
    assert not _in_anomaly_mode()


def test_a_block_closed_elsewhere_leaves_the_openers_outer_block_on():
    outer = rgrad.detect_anomaly()
    inner = rgrad.detect_anomaly()
    outer.__enter__()
    inner.__enter__()
    try:
        _on_thread(lambda: inner.__exit__(None, None, None))
        assert _in_anomaly_mode()               # the outer block is still open
        with rgrad.detect_anomaly():            # and this thread nests as before
            pass
        assert _in_anomaly_mode()
    finally:
        outer.__exit__(None, None, None)
    assert not _in_anomaly_mode()
    assert not _on_thread(_in_anomaly_mode)


def test_a_thread_that_ends_inside_a_block_closed_elsewhere_leaves_others_alone():
    cms = []

    def opener():
        cm = rgrad.detect_anomaly()
        cm.__enter__()
        cms.append(cm)
    _on_thread(opener)
    cms[0].__exit__(None, None, None)
    assert not _in_anomaly_mode()
    assert not _on_thread(_in_anomaly_mode)
    with rgrad.detect_anomaly():                # the closing thread is unharmed
        assert _in_anomaly_mode()


def test_an_exit_without_an_enter_is_refused_and_changes_nothing():
    from rgrad._rgrad import lib
    token = lib.rg_anomaly_enter()
    assert lib.rg_anomaly_exit(token) == 0
    assert lib.rg_anomaly_exit(token) == lib.RG_EHANDLE   # one exit too many
    for bad in (0, -1, 2 ** 62):
        assert lib.rg_anomaly_exit(bad) == lib.RG_EHANDLE
    assert not _in_anomaly_mode()
    with rgrad.detect_anomaly():                  # and the next block counts as one
        assert _in_anomaly_mode()
    assert not _in_anomaly_mode()


def test_anomaly_mode_covers_graphs_with_python_ops():
    x = Value(-1.0)
    out = Value(0.0, (x,), 'weird')

    def _backward():
        x.grad += math.nan * out.grad
    out._backward = _backward
    y = out * 2 + x * math.inf
    with rgrad.detect_anomaly():
        with pytest.raises(FloatingPointError, match="backward of '\\*'"):
            y.backward()
