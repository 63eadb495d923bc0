"""Speed of the replayed demo step against its like-for-like peers, and of
replay per node.

    demo step replayed  one step of micrograd's demo prepared once and rerun
                        (rgrad/bench_peers.py): rgrad-replay, torch-tensors,
                        jax-jit, casadi-vm, each where installed. bench/ratios.py
                        sets them against micrograd's EAGER step (group
                        "demo step"), as micrograd has no replayed one.
    replay per node     forward + backward over rgrad's demo graph, per interior node

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


def test_replay_forward_backward_per_node(benchmark):
    import rgrad
    from rgrad._rgrad import ffi, lib
    peer = FACTORIES["rgrad-replay"](*moons())
    total = peer.total
    assert total.data == pytest.approx(DEMO_LOSS, rel=1e-12)
    fresh()
    rgrad.collect()
    interior = lib.rg_tape(total._s, ffi.NULL, 0)
    benchmark.group = "replay per node"
    benchmark.extra_info.update(impl="rgrad", nodes=interior)

    def forward_backward():
        total.forward()
        total.backward()

    n, calls = rounds("demo step replayed")
    benchmark.pedantic(forward_backward, rounds=n, iterations=calls,
                       warmup_rounds=WARMUP)
    assert total.data == pytest.approx(DEMO_LOSS, rel=1e-12)
