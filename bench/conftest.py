"""Fixtures for the rgrad benchmarks, and the ratios table at the end of a run.

    pytest bench --benchmark-json bench.json -q     # the full run (minutes)
    python bench/ratios.py --json bench.json        # the table again
    pytest bench --benchmark-disable -q             # each benchmark once, as a check

With --benchmark-disable only the 3,000-step chain runs (the longer chains are
skipped: the same code, and a check should be quick). With --benchmark-json
the ratios table is also printed at the end of the run.
"""
import gc

import pytest

import benchlib


@pytest.fixture(params=benchlib.IMPL_ORDER)
def impl(request):
    """One scalar engine: rgrad always; micrograd (gc on and gc off) and
    torch if installed."""
    return benchlib.make_impl(request.param, pytest.importorskip)


@pytest.fixture(params=benchlib.CHAIN_SIZES, ids=lambda n: f"{n}")
def steps(request):
    """The chain's length. A check run (--benchmark-disable) runs only the
    shortest."""
    n = request.param
    if (request.config.getoption("benchmark_disable", False)
            and n not in benchlib.CHECK_CHAIN_SIZES):
        pytest.skip(f"--benchmark-disable runs only the {benchlib.CHECK_CHAIN_SIZES[0]:,}"
                    "-step chain")
    return n


@pytest.fixture(autouse=True)
def frozen_heap():
    """What is alive before a benchmark (pytest, torch, jax, ...) is frozen
    out of the cyclic collector while it runs, as `python -m rgrad bench`
    does, so that a collection's cost does not depend on the other tests."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()
    gc.collect()


_REPORT = {}


def pytest_benchmark_update_json(config, benchmarks, output_json):
    _REPORT["json"] = output_json


def pytest_terminal_summary(terminalreporter):
    data = _REPORT.get("json")
    if not data:
        return
    import ratios
    terminalreporter.write_sep("-", "rgrad: ratios against micrograd (bench/ratios.py)")
    for line in ratios.report(data):
        terminalreporter.write_line(line)
