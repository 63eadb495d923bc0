"""Batched replay of a large batch: the demo step (rgrad/bench_peers.py's
rgrad-batch) over 10,000 rows of two moons, on 1 and on 2 threads, in one
run. The two must give the same bits (checked before timing); bench/ratios.py
shows the group's times side by side. Nothing asserts on time."""
import pytest

from benchlib import WARMUP, fresh
from rgrad.bench_peers import FACTORIES
from rgrad.data import make_moons

ROWS = 10_000


def _data():
    X, labels = make_moons(ROWS, noise=0.1, seed=1337)
    return X, [2 * t - 1 for t in labels]


@pytest.fixture(scope="module")
def same_bits():
    """The first step's loss and parameters on 1 and on 2 threads."""
    got = []
    for threads in (1, 2):
        peer = FACTORIES["rgrad-batch"](*_data(), threads=threads)
        peer.step()
        got.append((peer.loss(), [p.data for p in peer.model.parameters()]))
    return got


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_10000_rows(benchmark, threads, same_bits):
    assert same_bits[0] == same_bits[1]
    benchmark.group = f"batch {ROWS:,} rows"
    benchmark.extra_info.update(impl=f"rgrad-batch-{threads}t", rows=ROWS)
    peer = FACTORIES["rgrad-batch"](*_data(), threads=threads)
    fresh()
    benchmark.pedantic(peer.step, rounds=10, iterations=1, warmup_rounds=WARMUP)
