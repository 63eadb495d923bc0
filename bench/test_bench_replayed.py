"""Speed of the replayed demo step against its like-for-like peers, and of
replay per node.

    demo step replayed  one step of micrograd's demo prepared once and rerun
                        (rgrad/bench_peers.py): rgrad-replay, torch-tensors,
                        jax-jit, casadi-vm, each where installed. bench/ratios.py
                        sets them against micrograd's EAGER step (group
                        "demo step"), as micrograd has no replayed one.
    replay per node     forward + backward over rgrad's demo graph and over the
                        30,000-step chain, per interior node

Each peer's step 0 must give micrograd's loss and parameter sum to 1e-9
before it is timed. Nothing asserts on time.
"""
import math

import pytest

from benchlib import (DEMO_CHECKSUM, DEMO_LOSS, NEEDS, WARMUP, fresh, moons,
                      rounds)
from rgrad.bench_peers import FACTORIES, PEER_ORDER


@pytest.mark.parametrize("name", PEER_ORDER)
def test_demo_step_replayed(benchmark, name):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    benchmark.group = "demo step replayed"
    benchmark.extra_info.update(impl=name, samples=100)
    X, y = moons()
    peer = FACTORIES[name](X, y)       # untimed: build the graph, compile, ...
    peer.step()                        # step 0, from micrograd's seeded weights
    assert peer.loss() == pytest.approx(DEMO_LOSS, rel=1e-9)
    assert peer.param_sum() == pytest.approx(DEMO_CHECKSUM, rel=1e-9)
    fresh()
    n, calls = rounds("demo step replayed")
    benchmark.pedantic(peer.step, rounds=n, iterations=calls, warmup_rounds=WARMUP)
    assert math.isfinite(peer.loss())


@pytest.mark.parametrize("graph", ["demo", "chain"])
def test_replay_forward_backward_per_node(benchmark, graph):
    """forward() + backward() of a graph built once, per interior node: the
    demo's graph (mostly neurons' sums: csrc/tape.c's dots) or the 30,000-step
    chain acc * 0.999 + x (one run)."""
    import rgrad
    from rgrad import bench_workloads as W
    from rgrad._rgrad import ffi, lib
    if graph == "demo":
        total = FACTORIES["rgrad-replay"](*moons()).total
        assert total.data == pytest.approx(DEMO_LOSS, rel=1e-12)
    else:
        impl = W._load_rgrad()
        total = W.chain(impl, W.chain_leaves(impl, 30_000))
        assert total.data == pytest.approx(W.chain_expected(30_000)[0], rel=1e-12)
    expected = total.data
    fresh()
    rgrad.collect()
    interior = lib.rg_tape(total._s, ffi.NULL, 0)
    benchmark.group = "replay per node"
    benchmark.extra_info.update(impl=f"rgrad-{graph}", nodes=interior)

    def forward_backward():
        total.forward()
        total.backward()

    n, calls = rounds("demo step replayed")
    benchmark.pedantic(forward_backward, rounds=n, iterations=calls,
                       warmup_rounds=WARMUP)
    assert total.data == expected
