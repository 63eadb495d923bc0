"""Fixtures for the rgrad benchmarks, and the ratios table at the end of a run.

Run from outside the source tree (its unbuilt rgrad/ would shadow the
installed package):

    cd /tmp && pytest /work/main/bench --benchmark-json /tmp/bench.json -q
    python /work/main/bench/ratios.py --json /tmp/bench.json

With --benchmark-json the ratios table is also printed at the end of the run.
`pytest /work/main/bench --benchmark-disable` runs every benchmark once, as a
check.
"""
import pytest

import benchlib


@pytest.fixture(params=benchlib.IMPLS)
def impl(request):
    """One implementation: rgrad always; micrograd and torch if installed."""
    return benchlib.make_impl(request.param, pytest.importorskip)


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
