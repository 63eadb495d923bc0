"""A child of a forking process gets a working engine.

os.fork() copies only the thread that calls it. Whatever another thread held
at that moment (the arena's mutex inside a C call, the collector's lock, a pin
taken for a backward over a Python op) must not be inherited as held, or the
child hangs on its first op or can never compact its arena.

Each scenario runs in a fresh interpreter (this file run as a script) under a
timeout, so a hang fails the test instead of hanging the suite. The children
are waited for up to one generous deadline; nothing here depends on how long
an op takes."""
import os
import subprocess
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")

FORKS = 20
CHILD_DEADLINE = 60.0       # for all children of one scenario together
SCENARIO_TIMEOUT = 240.0


def run_scenario(name):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), name],
                          capture_output=True, text=True, timeout=SCENARIO_TIMEOUT)
    assert proc.returncode == 0, f"scenario {name}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_children_forked_while_other_threads_are_in_c_calls_do_not_hang():
    out = run_scenario("busy_threads")
    assert f"{FORKS} children ok" in out


def test_children_forked_while_a_batch_runs_on_the_pool_run_batches_on_two_threads():
    pytest.importorskip("numpy")
    out = run_scenario("batch_pool")
    assert f"{FORKS} children ok" in out


def test_child_of_a_fork_during_another_threads_python_op_backward_can_compact():
    out = run_scenario("pinned_by_other_thread")
    assert "child compacted" in out


def test_child_of_a_fork_inside_its_own_python_op_backward_unpins_when_done():
    out = run_scenario("pinned_by_forking_thread")
    assert "child compacted" in out


# ---- the scenarios, each run in its own interpreter ------------------------


def wait_children(pids):
    """Exit codes of the children, None for one still running at the deadline
    (it is killed)."""
    codes, deadline = {}, time.monotonic() + CHILD_DEADLINE
    while len(codes) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            if pid not in codes:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    for pid in pids:
        if pid not in codes:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            codes[pid] = None
    return [codes[pid] for pid in pids]


def child_checks_an_op():
    """In a child: one graph and its backward, checked against the chain
    rule by hand; exit 0 if right."""
    from rgrad import Value
    x = Value(3.0)
    y = x * x + 2 * x
    y.backward()
    os._exit(0 if (y.data, x.grad) == (15.0, 8.0) else 3)


def fork_and_check(check):
    pid = os.fork()
    if pid == 0:
        try:
            check()
        finally:
            os._exit(4)       # an exception in the child: never return into the caller
    return pid


def fork_while_busy(threads, stop, check, pause):
    """Forks FORKS children, each running check(), while `threads` run (a
    pause before each fork lets them get back into C); then sets stop, joins
    the threads and waits for the children. Prints how many were ok; 0 if
    all were."""
    pids = []
    for _ in range(FORKS):
        time.sleep(pause)
        pids.append(fork_and_check(check))
    stop.set()
    for t in threads:
        t.join()
    codes = wait_children(pids)
    bad = [c for c in codes if c != 0]
    print(f"{FORKS - len(bad)} children ok; exit codes of the others "
          f"(None: hung): {bad}")
    return 0 if not bad else 1


def busy_threads():
    """Threads inside C calls as the main thread forks: one backpropagating a
    long chain over and over (the mutex is held for the whole walk), one
    building and dropping small graphs (making garbage, so collections run)."""
    import rgrad
    from rgrad import Value

    stop = threading.Event()
    started = threading.Barrier(3)

    def backward_loop():
        x = Value(0.5)
        y = x
        for _ in range(200_000):
            y = y * 0.9999 + x
        started.wait()
        while not stop.is_set():
            y.backward()

    def op_loop():
        started.wait()
        while not stop.is_set():
            a = rgrad.values([0.1 * k for k in range(50)])
            s = a[0]
            for v in a[1:]:
                s = s + v * v
            s.backward()

    threads = [threading.Thread(target=f, daemon=True) for f in (backward_loop, op_loop)]
    for t in threads:
        t.start()
    started.wait()
    return fork_while_busy(threads, stop, child_checks_an_op, pause=0.005)


def batch_pool():
    """The batch pool's worker (csrc/pool.c) exists in the parent, and another
    thread runs batches on it as the main thread forks: a child, which has
    no worker and whose pool's state was copied mid-call, runs a batch on
    two threads and gets the parent's bits."""
    import random
    import numpy as np
    import rgrad
    from rgrad import Batch, Value
    from rgrad.nn import MLP

    random.seed(1)
    model = MLP(2, [16, 16, 1])
    x, t = rgrad.values([0.0, 0.0]), Value(0.0)
    loss1 = (1 - t * model(x)).relu()
    rng = np.random.default_rng(0)
    rows = np.column_stack([rng.normal(size=(40_000, 2)), np.sign(rng.normal(size=40_000))])

    def run(batch):
        model.zero_grad()
        out = batch.forward(rows)
        batch.backward(scale=1 / len(rows))
        return out.tobytes(), [p.grad for p in model.parameters()]

    want = run(Batch([loss1], inputs=[*x, t], threads=1))
    stop = threading.Event()
    started = threading.Event()

    def batches():
        # a graph of its own: the main thread's model is the children's
        random.seed(1)
        m = MLP(2, [16, 16, 1])
        xs, ts = rgrad.values([0.0, 0.0]), Value(0.0)
        b = Batch([(1 - ts * m(xs)).relu()], inputs=[*xs, ts], threads=2)
        while not stop.is_set():
            b.forward(rows)
            b.backward()
            started.set()

    def child_runs_a_batch():
        os._exit(0 if run(Batch([loss1], inputs=[*x, t], threads=2)) == want else 3)

    thread = threading.Thread(target=batches, daemon=True)
    thread.start()
    started.wait()
    return fork_while_busy([thread], stop, child_runs_a_batch, pause=0.003)


def child_compacts():
    """In a child: drop a graph and collect; exit 0 if the arena compacted."""
    import rgrad
    from rgrad import Value
    before = rgrad.stats()["collections"]
    v = Value(1.0)
    for _ in range(1000):
        v = v + 1.0
    del v
    rgrad.collect()
    os._exit(0 if rgrad.stats()["collections"] > before else 5)


def python_op(x, inside_backward):
    """x**2 as an op written micrograd's way, calling inside_backward() from
    its _backward closure."""
    from rgrad import Value
    out = Value(x.data ** 2, (x,), "square")

    def _backward():
        inside_backward()
        x.grad += 2 * x.data * out.grad
    out._backward = _backward
    return out


def pinned_by_other_thread():
    """A thread is inside a Python op's closure during backward (the arena is
    pinned for it) as the main thread forks."""
    inside, release = threading.Event(), threading.Event()

    def waits():
        inside.set()
        release.wait()

    def backward_over_python_op():
        from rgrad import Value
        x = Value(3.0)
        python_op(x, waits).backward()

    t = threading.Thread(target=backward_over_python_op, daemon=True)
    t.start()
    inside.wait()
    pid = fork_and_check(child_compacts)
    release.set()
    t.join()
    [code] = wait_children([pid])
    print("child compacted" if code == 0 else f"child exit code {code} (None: hung)")
    return 0 if code == 0 else 1


def pinned_by_forking_thread():
    """The forking thread itself is inside a Python op's closure: the child
    finishes that backward (its pin is its own) and then compacts."""
    from rgrad import Value
    pids = []

    def forks():
        pids.append(os.fork())
        if pids[-1] == 0:
            os.environ["RGRAD_TEST_CHILD"] = "1"

    x = Value(3.0)
    python_op(x, forks).backward()
    if os.environ.get("RGRAD_TEST_CHILD"):
        try:
            ok = x.grad == 6.0
            if ok:
                child_compacts()
        finally:
            os._exit(6)
    [code] = wait_children(pids)
    print("child compacted" if code == 0 else f"child exit code {code} (None: hung)")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(globals()[sys.argv[1]]())
