"""What micrograd cannot do: graphs of any depth, flat memory in a training
loop, and threads building graphs at once."""
import gc
import os
import threading

import pytest

import rgrad
from rgrad import Value


def test_million_op_chain_backpropagates_without_recursion_limit():
    n = 1_000_000
    x = Value(1.0)
    y = x
    for _ in range(n):
        y = y + x
    y.backward()
    assert y.data == n + 1
    assert x.grad == n + 1


def test_deep_chain_of_every_op_kind_matches_a_closed_form():
    # y = ((x * 2 - 1) / 2 + 0.5) is x again, so the chain's derivative is 1
    x = Value(0.3)
    y = x
    for _ in range(100_000):
        y = (y * 2 - 1) / 2 + 0.5
    y.backward()
    assert y.data == pytest.approx(0.3, rel=1e-9)
    assert x.grad == pytest.approx(1.0, rel=1e-12)


def _rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        pytest.skip("no /proc/self/statm to read the resident set size from")


def _under_asan():
    """Whether AddressSanitizer runs in this process (.ci/sanitize). Its
    quarantine keeps freed memory resident (up to 256 MB by default), so the
    resident set then shows how much the whole test run has freed, not what
    rgrad keeps."""
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def _training_step(params, n_ops=20_000):
    loss = params[0] * 0
    for i in range(n_ops):
        loss = loss + params[i % len(params)] * 0.5
    for p in params:
        p.grad = 0
    loss.backward()
    for p in params:
        p.data -= 1e-6 * p.grad
    return loss.data


def test_memory_stays_flat_in_a_loop_that_drops_its_graph_each_step():
    params = [Value(0.01 * i) for i in range(50)]
    for _ in range(10):                 # warm up: arena and handle table grow
        _training_step(params)
    rss0, cap0 = _rss_bytes(), rgrad.stats()["capacity"]
    collections0 = rgrad.stats()["collections"]
    for _ in range(150):                # 6 million nodes made and dropped
        _training_step(params)
    s = rgrad.stats()
    assert s["collections"] > collections0       # it reclaimed by itself
    assert s["capacity"] <= max(cap0, 4 * 40_000 + 2**17)
    if not _under_asan():                        # (the plain run checks it)
        assert _rss_bytes() - rss0 < 32 * 2**20  # a leak would be ~240 MB


def test_collection_keeps_values_that_are_still_held():
    keep = []
    x = Value(2.0)
    for i in range(300_000):              # several collections happen here
        y = x * 1.0 + i
        if i % 10_000 == 0:
            keep.append((i, y))
    gc.collect()                          # other tests' cyclic garbage
    rgrad.collect()
    for i, y in keep:
        assert y.data == 2.0 + i
        y.backward()
    assert x.grad == len(keep)
    assert rgrad.stats()["nodes"] < 100     # everything else was reclaimed


def test_values_form_no_reference_cycles():
    gc.collect()
    rgrad.collect()
    gc.disable()
    try:
        before = len(gc.get_objects())
        a = Value(1.0)
        for _ in range(1000):
            a = (a * 1.0001 + 1).relu()
        a.backward()
        del a
        assert gc.collect() == 0      # nothing for the cycle collector to free
        rgrad.collect()               # dead Values leave the registry here
        assert len(gc.get_objects()) <= before + 10
    finally:
        gc.enable()


def _work(seed, n=30_000):
    """A graph per call, with results that depend on every op."""
    x = Value(1.0 + seed / 10)
    w = Value(0.5 - seed / 100)
    acc = x * 0
    for i in range(n):
        acc = acc * 0.999 + (x * w if i % 3 else (w - x).relu() / 3.0)
    acc.backward()
    return acc.data, x.grad, w.grad


def test_threads_building_their_own_graphs_get_exact_results():
    seeds = list(range(6))
    expected = {s: _work(s) for s in seeds}
    results = {}
    errors = []

    def run(s):
        try:
            for _ in range(3):
                r = _work(s)
                if r != expected[s]:
                    errors.append((s, r, expected[s]))
            results[s] = r
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == expected
