"""The worker threads a batch runs its blocks on (csrc/pool.c): kept between
calls, blocking signals, shared safely by callers on several threads. (Forked
children: tests/test_fork.py, scenario batch_pool.)"""
import signal
import sys
import threading

import pytest

import rgrad
from rgrad import Batch, Value
from rgrad.nn import MLP

np = pytest.importorskip("numpy")

ROWS = 40_000                   # enough rows a thread for three threads to run


def demo_batch(threads):
    import random
    random.seed(1)
    model = MLP(2, [16, 16, 1])
    x, t = rgrad.values([0.0, 0.0]), Value(0.0)
    loss1 = (1 - t * model(x)).relu()
    return model, Batch([loss1], inputs=[*x, t], threads=threads)


def rows(n=ROWS, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(size=(n, 2)),
                            np.where(rng.random(n) > 0.5, 1.0, -1.0)])


def run(model, batch, data):
    model.zero_grad()
    out = batch.forward(data)
    batch.backward(scale=1 / len(data))
    return (out.tobytes(), batch.input_grads().tobytes(),
            [p.grad for p in model.parameters()])


def pool_threads(field="SigBlk"):
    """{thread id: a field of its /proc status} of this process's pool
    workers: SigBlk, its blocked-signal mask, or voluntary_ctxt_switches,
    how many times it has gone to sleep."""
    import os
    found = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() != "rgrad-pool":
                    continue
            with open(f"/proc/self/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        found[int(tid)] = int(line.split()[1], 16 if field == "SigBlk" else 10)
        except FileNotFoundError:
            pass
    return found


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the threads from /proc")


@linux_only
def test_workers_are_kept_between_calls_and_block_signals():
    model, b2 = demo_batch(2)
    _, b3 = demo_batch(3)
    data = rows()
    b3.forward(data)                # two workers now (three threads)
    b2.forward(data)
    workers = pool_threads()
    assert len(workers) >= 2        # (a process may have used more threads before)
    for _ in range(5):
        b2.forward(data)
        b2.backward()
        b3.forward(data)
    assert pool_threads() == workers      # the same threads, none started
    for mask in workers.values():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM, signal.SIGCHLD):
            assert mask & (1 << (sig - 1)), f"a worker takes signal {sig}"
        # a fault in a worker still reaches the process's handlers
        # (faulthandler, a sanitizer's report): a blocked one would not
        for sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL):
            assert not mask & (1 << (sig - 1)), f"a worker blocks signal {sig}"


@linux_only
def test_a_call_wakes_only_the_workers_it_gives_a_job():
    import time
    model, b2 = demo_batch(2)
    _, b3 = demo_batch(3)
    data = rows()
    b3.forward(data)                # two workers at least
    time.sleep(0.05)                # past their polling: asleep
    before = pool_threads("voluntary_ctxt_switches")
    assert len(before) >= 2
    for _ in range(10):
        b2.forward(data)            # one worker's job each time
        time.sleep(0.002)
    after = pool_threads("voluntary_ctxt_switches")
    woken = [tid for tid in before if after.get(tid) != before[tid]]
    assert len(woken) <= 1, "calls woke workers they gave no job"


def test_callers_on_several_threads_get_their_own_bits():
    data = rows(seed=5)
    want = run(*demo_batch(1), data)
    got, errors = [], []

    def caller():
        try:
            model, batch = demo_batch(2)
            for _ in range(15):
                got.append(run(model, batch, data))
        except BaseException as e:       # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    assert not errors, errors
    assert len(got) == 45 and all(g == want for g in got)
