"""What the benchmark suites share. The workloads, the implementations and the
rounds come from rgrad (rgrad/bench_workloads.py, rgrad/bench_peers.py,
rgrad/benchmarks.py), which `python -m rgrad bench` runs too, so both
measure the same code with the same rule: in a workload, every
implementation gets WARMUP warm-up rounds and the same timed rounds
(`rounds(key)`), its input prepared untimed with the collector off, then
gc.collect(). "micrograd-nogc" is micrograd with the collector disabled around
the timed call only (`timed`).
"""
import gc

from rgrad.bench_workloads import (  # noqa: F401 - re-exported for the suites
    DEMO_CHECKSUM, DEMO_EXPECTED, DEMO_LOSS, IMPL_ORDER, LOADERS, LOOP_STEPS,
    SEED_EXPECTED, chain, chain_depth, chain_expected, chain_leaves, checksum,
    demo_loop, demo_model, demo_step, moons, seed, with_big_stack)
from rgrad.benchmarks import CHAIN_SIZES, QUICK_CHAIN_SIZES, ROUNDS, WARMUP  # noqa: F401

MEM_STEPS = 100_000           # chain length for bench/test_bench_memory.py
CHECK_CHAIN_SIZES = QUICK_CHAIN_SIZES[:1]    # all that --benchmark-disable runs

# the package each implementation needs, for pytest.importorskip
NEEDS = {"micrograd": "micrograd", "micrograd-nogc": "micrograd", "torch": "torch",
         "torch-tensors": "torch", "jax-jit": "jax", "casadi-vm": "casadi"}


def make_impl(name, importorskip):
    """The Impl called `name`; `importorskip` is pytest.importorskip, so that a
    missing micrograd or torch skips only its own benchmarks."""
    if name in NEEDS:
        importorskip(NEEDS[name])
    return LOADERS[name]()


def rounds(key):
    """(timed rounds, calls per round) of a workload, the same for every
    implementation: ROUNDS["full"] of rgrad/benchmarks.py."""
    return ROUNDS["full"][key]


def fresh():
    """Between rounds (untimed): free the previous round's garbage, so that a
    round does not pay the cyclic GC for its predecessor's graph."""
    gc.collect()


def untimed(fn):
    """A pedantic setup: fn() with the collector off (its cost is not
    measured, so no implementation should pay for it), then fresh().
    fn's result is dropped: pedantic reads a setup's result as arguments."""
    def setup():
        was_on = gc.isenabled()
        gc.disable()
        try:
            fn()
        finally:
            if was_on:
                gc.enable()
        fresh()
    return setup


def timed(impl, fn):
    """fn as pedantic should time it: for micrograd-nogc, with the cyclic
    collector disabled during the call (and back on after it)."""
    if not impl.gc_off:
        return fn

    def without_gc(*args, **kwargs):
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()
    return without_gc
