"""Allocation failure, on purpose: run by test_faults.py as a script.

In a fresh process (so that the arena, the handle table and every other table
of the C core start small and must grow), a forked child first counts the
allocations a workload makes; then, for each N, a forked child makes the Nth
allocation fail (rg_fault_after, a testing-only entry point) and checks that
- the workload either raises MemoryError or, where the C core can do without
  that memory (a compaction skipped, a shrink not done), finishes with the
  right numbers;
- Values made before the fault keep their data and grads;
- the engine is usable after it: the same workload, run again, gives the
  numbers micrograd gives.
Prints one JSON line per N; a child that finds a problem exits non-zero."""
import json
import math
import os
import random
import sys
import traceback

import micrograd.engine as mge
import micrograd.nn as mgn
from reference import Cube          # tests/ is sys.path[0]: run as a script

import rgrad
import rgrad.nn as rnn
from rgrad import Value
from rgrad._rgrad import lib

SEED, SAMPLES = 11, 3


def _data():
    random.seed(SEED)
    xs = [[random.uniform(-1, 1) for _ in range(3)] for _ in range(SAMPLES)]
    random.seed(SEED)          # the weights are drawn from here on
    return xs


def reference():
    """micrograd's loss and grads for the workload's model and data."""
    xs = _data()
    model = mgn.MLP(3, [6, 6, 1])
    inputs = [[mge.Value(v) for v in x] for x in xs]
    loss = sum(((model(x) - 0.25) ** 2 for x in inputs), mge.Value(0.0))
    x0 = inputs[0][0]
    loss = loss + x0 ** 3 * 0.1          # Cube (tests/reference.py), as micrograd writes it
    loss.backward()
    return [loss.data, x0.grad] + [p.grad for p in model.parameters()]


def workload(large=True):
    """Makes every table of the C core grow: the arena and its marks, the handle
    table, the replay tape, rg_layer's and rg_custom's index buffers, anomaly
    mode's notes, compaction's index map and its list of freed ids, and (if
    large) the shrink after a large graph is gone. Returns the loss and grads."""
    xs = _data()
    model = rnn.MLP(3, [6, 6, 1])                       # fused layers
    inputs = [rgrad.values(x) for x in xs]              # bulk leaves
    loss = sum(((model(x) - 0.25) ** 2 for x in inputs), Value(0.0))
    x0 = inputs[0][0]
    labelled = [Value(float(k), label=f"v{k}") for k in range(300)]  # ids Python keeps
    loss = loss + Cube.apply(x0) * 0.1                  # an op defined in Python
    with rgrad.detect_anomaly():
        loss.backward()                                 # walked with Python's help
    loss.forward()                                      # replayed: leaves keep grads
    chain = rgrad.values([0.001 * k for k in range(2000)])
    total = chain[0]
    for v in chain[1:]:
        total = total + v * v                           # a built-in graph
    with rgrad.detect_anomaly():
        total.backward()                                # checked: rg_backward's tape
    total.forward()                                     # replayed from that tape
    want = sum((0.001 * k) ** 2 for k in range(1, 2000))
    if abs(total.data - want) > 1e-9 * want:
        raise AssertionError(f"chain: {total.data} != {want}")
    del labelled, chain, total
    rgrad.collect()                                     # compaction
    if large:   # past 4x the smallest collection threshold (GC_MIN_NODES in C)
        big = rgrad.values(_zeros(600_000))
        del big
        rgrad.collect()                                 # the arena shrinks back
    return [loss.data, x0.grad] + [p.grad for p in model.parameters()]


def _zeros(n):
    try:
        import numpy as np
    except ImportError:
        return [0.0] * n
    return np.zeros(n)


def _close(got, want):
    return len(got) == len(want) and all(
        math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-12) for g, w in zip(got, want))


def child(n, want, kept):
    """Runs the workload with the nth allocation failing (n < 0: none)."""
    values, graph = kept
    lib.rg_fault_after(n)
    outcome = "completed"
    try:
        got = workload()
    except MemoryError as e:
        outcome, got = "MemoryError", str(e)
    made = lib.rg_fault_after(-1)
    if outcome == "completed" and not _close(got, want):
        raise AssertionError(f"wrong numbers after the fault: {got[:3]}... != {want[:3]}...")
    _check_kept(values, graph)
    again = workload(large=False)                       # the engine is usable
    if not _close(again, want):
        raise AssertionError(f"wrong numbers after recovery: {again[:3]}... != {want[:3]}...")
    rgrad.collect()
    _check_kept(values, graph)
    return {"n": n, "outcome": outcome, "allocations": made,
            "message": got if outcome == "MemoryError" else ""}


def _check_kept(values, graph):
    a, b = values
    if (a.data, b.data) != (0.75, -1.5):
        raise AssertionError(f"a live leaf lost its data: {a.data}, {b.data}")
    t = math.tanh(0.75 * -1.5)
    if graph.data != t or a.grad != (1 - t * t) * -1.5 or b.grad != (1 - t * t) * 0.75:
        raise AssertionError("a live graph lost its data or grads")


def fork(fn):
    """fn() in a forked child; its JSON result, or the child's failure."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            out = json.dumps(fn())
        except BaseException:
            out = json.dumps({"error": traceback.format_exc()})
            code = 1
        os.write(w, out.encode())
        os._exit(code)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode()
    if not text:
        return {"error": f"child died: wait status {status}"}
    return json.loads(text)


def main():
    want = reference()
    a, b = rgrad.values([0.75, -1.5])
    graph = (a * b).tanh()
    graph.backward()
    kept = ((a, b), graph)
    count = fork(lambda: child(-1, want, kept))
    print(json.dumps(count), flush=True)
    if "error" in count:
        return 1
    for n in range(count["allocations"]):
        result = fork(lambda: child(n, want, kept))
        result.setdefault("n", n)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
