"""Threads sharing rgrad's one arena: each builds, replays and differentiates
its own graphs and trains its own model while the others do the same, make
garbage, and collect. Every number a thread sees must be exactly (==) what
the same work gives when run alone, one job after another, in one thread.

Threads start together at a Barrier and are joined with a timeout; nothing
here depends on how long anything takes."""
import math
import random
import sys
import threading
import time

import pytest

from reference import Cube, id_topo
import rgrad
from rgrad import Value
from rgrad.nn import MLP
from rgrad.optim import SGD

THREADS = 6
JOIN_TIMEOUT = 120.0


@pytest.fixture(autouse=True)
def frequent_thread_switches():
    """Switch threads every few microseconds (not every 5 ms), so that their
    calls interleave finely."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


def floats(xs):
    """A list of floats from get_data / get_grad (numpy array or list)."""
    return [float(x) for x in xs]


def job(seed, steps, python_ops=False, collector=False):
    """One thread's work, deterministic in seed: every number it saw."""
    rng = random.Random(seed)
    seen = []

    # a model of its own; MLP draws from the shared `random`, so the weights
    # are then set from this job's own generator
    model = MLP(3, [8, 8, 1])
    for p in model.parameters():
        p.data = rng.uniform(-1.0, 1.0)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.5)

    # a graph built once and replayed with new leaf data, step after step
    a, b, c = rgrad.values([rng.uniform(-1, 1) for _ in range(3)])
    g = ((a * b).tanh() + c.exp() / (1 + a ** 2) - b.sigmoid() * c).relu() \
        + (a - c) ** 2 + (2.0 - b).softplus() + (c * c + 1).log() + 3.0 / (2.5 + b)
    if python_ops:
        g = g + Cube.apply(a - b) * 0.1

    for step in range(steps):
        # training step: build, backward, update, then replay at the new weights
        x = [Value(rng.uniform(-2, 2)) for _ in range(3)]
        target = rng.uniform(-1, 1)
        out = model(x)
        loss = (out - target) ** 2 + sum((p * p for p in model.parameters()), Value(0.0)) * 1e-3
        if python_ops:
            loss = loss + Cube.apply(out.tanh()) * 0.01
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen.append(loss.data)
        seen.extend(x_.grad for x_ in x)
        loss.forward()                  # the same loss at the updated weights
        seen.append(loss.data)

        # replay the fixed graph at new leaves, through the bulk functions
        rgrad.set_data([a, b, c], [rng.uniform(-1, 1) for _ in range(3)])
        g.forward()
        g.backward()                    # grads of a, b, c accumulate
        seen.append(g.data)
        seen.extend(floats(rgrad.get_grad([a, b, c])))

        # garbage: many Values made and dropped, so that collections happen
        junk = rgrad.values([rng.uniform(-1, 1) for _ in range(rng.randrange(200, 3000))])
        s = junk[0]
        for v in junk[1:200]:
            s = s * 0.5 + v.tanh()
        s.backward()
        seen.append(junk[1].grad)
        del junk, s, x, out, loss
        if collector and step % 5 == 0:
            rgrad.collect()

    seen.extend(floats(rgrad.get_data(model.parameters())))
    return seen


def run_threads(target, args_per_thread):
    """Run target(*args) in one thread per args, started together; their
    results, re-raising any thread's exception."""
    n = len(args_per_thread)
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def run(k):
        try:
            barrier.wait(timeout=JOIN_TIMEOUT)
            results[k] = target(*args_per_thread[k])
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    if errors:
        raise errors[0]
    return results


# While Function.apply (or a lecture-style op) is between setting
# out._backward and returning out, only the closure's cell holds the output;
# a collection in another thread must still see it as in use (the frame that
# made it is running). test_a_function_output_survives_... pins that.


@pytest.mark.parametrize("python_ops", [
    False, True], ids=["builtin_ops", "with_python_ops"])
def test_threads_training_replaying_and_collecting_see_exactly_what_one_thread_sees(python_ops):
    steps = 50
    jobs = [(1000 + k, steps, python_ops, k == 0) for k in range(THREADS)]
    before = rgrad.stats()["collections"]
    threaded = run_threads(job, jobs)
    during = rgrad.stats()["collections"] - before
    sequential = [job(*args) for args in jobs]
    for k in range(THREADS):
        assert len(threaded[k]) == len(sequential[k])
        assert threaded[k] == sequential[k], f"thread {k} saw different numbers"
    assert all(math.isfinite(x) for r in sequential for x in r)
    assert during > 0            # collections did run while the threads did


def bulk_job(seed, rounds):
    """values / set_data / get_data / get_grad on this thread's own Values,
    checked against what it wrote; returns the number of checks made."""
    rng = random.Random(seed)
    checks = 0
    for r in range(rounds):
        n = rng.randrange(1, 400)
        xs = [rng.uniform(-1e3, 1e3) for _ in range(n)]
        vs = rgrad.values(xs)
        assert floats(rgrad.get_data(vs)) == xs
        ys = [rng.uniform(-1, 1) for _ in range(n)]
        rgrad.set_data(vs, ys)
        assert floats(rgrad.get_data(vs)) == ys
        assert [v.data for v in vs] == ys
        total = sum(vs[: min(n, 50)], Value(0.0))     # grads of 1 into the first 50
        total.backward()
        assert floats(rgrad.get_grad(vs)) == [1.0] * min(n, 50) + [0.0] * (n - min(n, 50))
        if r % 7 == 0:
            import numpy as np
            zs = np.array([rng.uniform(-1, 1) for _ in range(n)])
            rgrad.set_data(vs, zs)
            assert (rgrad.get_data(vs) == zs).all()
        garbage = rgrad.values(range(rng.randrange(100, 2000)))
        del garbage, total
        checks += 1
        if seed % THREADS == 0 and r % 3 == 0:
            rgrad.collect()
    return checks


def test_bulk_values_set_data_get_data_are_race_free_under_threads():
    pytest.importorskip("numpy")
    rounds = 150
    results = run_threads(bulk_job, [(k, rounds) for k in range(THREADS)])
    assert results == [rounds] * THREADS


def test_a_thread_collecting_in_a_loop_does_not_disturb_threads_reading_their_values():
    """One thread only collects; the others hold Values made in bulk and read
    them back after every garbage burst."""
    stop = threading.Event()

    def collector():
        while not stop.is_set():
            rgrad.collect()
            time.sleep(1e-4)    # pacing only: let the holders run between collections
        return 0

    def holder(seed):
        rng = random.Random(seed)
        xs = [rng.uniform(-1, 1) for _ in range(500)]
        vs = rgrad.values(xs)
        y = sum((v * v for v in vs), Value(0.0))
        for _ in range(60):
            junk = [Value(rng.random()) * 2 for _ in range(300)]
            del junk
            assert floats(rgrad.get_data(vs)) == xs
        y.backward()
        return floats(rgrad.get_grad(vs)) == [2 * x for x in xs]

    def run(kind, seed):
        try:
            return collector() if kind == "collect" else holder(seed)
        finally:
            if kind != "collect":
                done.append(seed)
                if len(done) == THREADS - 1:
                    stop.set()

    done = []
    results = run_threads(run, [("collect", 0)] + [("hold", k) for k in range(1, THREADS)])
    assert results == [0] + [True] * (THREADS - 1)


def test_a_function_output_survives_a_collection_in_another_thread():
    stop = threading.Event()

    def collector():
        while not stop.is_set():
            rgrad.collect()
        return True

    def maker():
        try:
            x = Value(0.5)
            for _ in range(400):            # before the fix: failed within ~100
                y = Cube.apply(x) * 1.0     # raises if the Cube node was freed
                assert y.data == 0.125
            return True
        finally:
            stop.set()

    assert run_threads(lambda f: f(), [(collector,), (maker,)]) == [True, True]


def test_threads_reading_prev_while_others_collect_see_each_node_as_one_object():
    """Threads walk their own graphs over _prev (the lecture's drawing walk)
    while another thread collects in a loop: a walk finds the leaves as the
    objects that made them, and a second walk, while the first one's objects
    are held, finds the very same objects (constants' leaves included)."""
    errors, stop = [], threading.Event()

    def collector():
        while not stop.is_set():
            rgrad.collect()
            time.sleep(0.001)

    def walker(seed):
        rng = random.Random(seed)
        try:
            for _ in range(60):
                xs = [Value(rng.uniform(-1, 1)) for _ in range(8)]
                y = xs[0]
                for x in xs[1:]:
                    y = (y * x + 0.5).relu() if rng.random() < 0.5 else y + x * 2.0
                walks = []
                for _ in range(2):          # the first walk's objects held
                    order = id_topo(y)
                    leaves = [v for v in order if not v._prev]
                    assert all(any(v is x for v in leaves) for x in xs)
                    walks.append(order)
                assert {id(v) for v in walks[0]} == {id(v) for v in walks[1]}
                assert len(walks[0]) == len(walks[1])
        except Exception as e:      # reported below, with the thread's seed
            errors.append((seed, repr(e)))

    threads = [threading.Thread(target=walker, args=(s,)) for s in range(4)]
    c = threading.Thread(target=collector)
    c.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    c.join()
    assert not errors


def test_a_long_call_lets_other_threads_run_while_it_works():
    """Calls whose work grows with a batch, a graph or a parameter list
    release the GIL (csrc/gil.h); calls on one node keep it. A thread woken
    just before a long batched forward reads the forward's output buffer: it
    can see the last row not yet written only if it ran while C worked. (If
    the call kept the GIL, the thread could run only after it returned, and
    would always find the row written.)"""
    np = pytest.importorskip("numpy")
    from rgrad._rgrad import ffi, lib
    x = Value(0.0)
    y = x
    for k in range(40):
        y = (y * 0.5 + k).relu()
    batch = rgrad.Batch([y], inputs=[x], threads=1)
    n = 2_000_000
    rows = np.linspace(-1.0, 1.0, n).reshape(n, 1)
    seen = []
    for _ in range(3):              # a busy machine may wake the thread late
        out = np.full((n, 1), np.nan)
        go = threading.Event()

        def look():
            go.wait()
            seen.append(math.isnan(out[-1, 0]))

        t = threading.Thread(target=look)
        t.start()
        go.set()
        rc = lib.rg_batch_forward(batch._b, ffi.from_buffer("double[]", rows), n,
                                  ffi.from_buffer("double[]", out), 1)
        t.join(JOIN_TIMEOUT)
        assert rc == lib.RG_OK and not math.isnan(out[-1, 0])
        if seen[-1]:
            break
    assert seen[-1], "the other thread ran only after the call returned"


def test_a_call_waiting_for_the_arena_lets_other_threads_run():
    """A call that keeps the GIL (a getter) and finds the arena held by
    another thread's long call waits for it without the GIL (csrc/gil.h,
    lock_slow). A third thread, which never calls rgrad, watches the long
    call's output buffer: it sees the call unfinished again and again after
    the getter started waiting. (If the getter waited with the GIL, the
    watcher could run only once the long call was over.)"""
    np = pytest.importorskip("numpy")
    from rgrad._rgrad import ffi, lib
    a = Value(2.0)
    n = 20_000_000
    hs = np.full(n, a._s, dtype=np.int32)      # one handle, read n times
    seen = []
    for _ in range(3):              # a busy machine may wake the threads late
        out = np.full(n, np.nan)
        go, waiting, done = threading.Event(), threading.Event(), threading.Event()

        def getter():
            go.wait()
            time.sleep(0.005)       # the long call holds the arena by now
            waiting.set()
            a.data                  # waits for the arena
            done.set()

        def watcher():
            waiting.wait()
            count = 0
            while not done.is_set() and math.isnan(out[-1]):
                count += 1
                time.sleep(0.0005)
            seen.append(count)

        threads = [threading.Thread(target=getter), threading.Thread(target=watcher)]
        for t in threads:
            t.start()
        go.set()
        rc = lib.rg_get_many(ffi.from_buffer("int32_t[]", hs), n, lib.RG_DATA,
                             ffi.from_buffer("double[]", out))
        for t in threads:
            t.join(JOIN_TIMEOUT)
        assert rc == lib.RG_OK and out[-1] == 2.0
        if seen[-1] >= 5:
            break
    assert seen[-1] >= 5, seen


def test_short_calls_keep_the_gil():
    """Only calls with enough work release the GIL (csrc/gil.h,
    RG_RELEASE_AT). A thread that lets it go for a moment, over and over,
    keeps other threads from running: each release counts as a switch, so a
    waiting thread never asks for the GIL, and it is rarely awake in time to
    take it. Counted by rg_gil_releases: operators with their results
    dropped (and the young collections they cause), a small MLP's calls,
    leaves, zero_grad and an optimizer's step release it never; a large
    layer and many leaves do."""
    from rgrad._rgrad import lib
    from rgrad.nn import Layer
    rgrad.collect()                 # no compaction falls due below
    m = MLP(2, [16, 16, 1])
    opt = SGD(m.parameters(), lr=0.1)
    big, x = Layer(200, 100), [Value(0.1) for _ in range(200)]
    xs = [0.0] * 20000
    a, b = Value(2.0), Value(3.0)
    before = lib.rg_gil_releases()
    for _ in range(5000):           # about 20 young collections
        a * b
    for k in range(50):
        m(rgrad.values([0.5, k / 50]))
    m.zero_grad()
    opt.step()
    rgrad.get_data(m.parameters())
    assert lib.rg_gil_releases() == before
    y = big(x)                      # 20,000 multiply-adds
    assert lib.rg_gil_releases() == before + 1
    del y
    rgrad.values(xs)                # (and the collection its new slots may need)
    assert lib.rg_gil_releases() >= before + 2
