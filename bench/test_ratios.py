"""bench/ratios.py: the table it prints from pytest-benchmark's JSON (not a
benchmark: it runs on made-up medians, so it also runs in the
--benchmark-disable check, where no JSON is written)."""
import re

import ratios


def _bench(group, impl, median, rounds=5, iterations=1, **extra):
    return {"group": group, "name": f"test_x[{impl}]",
            "stats": {"median": median, "rounds": rounds, "iterations": iterations},
            "extra_info": {"impl": impl, **extra}}


DATA = {"benchmarks": [
    _bench("chain build 30,000", "micrograd", 3.0, steps=30_000),
    _bench("chain build 30,000", "rgrad", 0.1, steps=30_000),
    _bench("chain build 30,000", "micrograd-nogc", 0.5, steps=30_000),
    _bench("chain build 3,000", "rgrad", 0.01, steps=3_000),
    _bench("demo step", "micrograd", 2.0), _bench("demo step", "micrograd-nogc", 0.5),
    _bench("demo step replayed", "jax-jit", 0.001, rounds=30, iterations=10),
    _bench("replay per node", "rgrad", 0.002, nodes=1000),
    _bench("memory", "rgrad", 1.0, steps=100, rss_per_node=80.0),
    _bench("memory", "micrograd", 9.0, steps=100, rss_per_node=640.0),
]}


def _row(lines, group, impl):
    [line] = [ln for ln in lines if re.match(rf"{re.escape(group)} +{impl} ", ln)]
    return line.split()


def test_every_row_has_both_micrograd_ratios_and_replayed_is_set_against_eager():
    lines = ratios.report(DATA)
    assert _row(lines, "chain build 30,000", "rgrad")[-2:] == ["30.0x", "5.00x"]
    assert _row(lines, "chain build 30,000", "micrograd")[-2:] == ["1.00x", "0.17x"]
    # no micrograd in the 3,000 group: nothing to divide by
    assert _row(lines, "chain build 3,000", "rgrad")[-2:] == ["-", "-"]
    # the replayed step against micrograd's eager demo step, per call
    assert _row(lines, "demo step replayed", "jax-jit")[-3:] == ["30x10", "2000x", "500x"]
    # time per node where extra_info records the nodes: 2 ms / 1000
    assert _row(lines, "replay per node", "rgrad")[4:8] == ["2.000", "ms", "2.000", "us"]


def test_groups_come_chain_by_length_then_the_rest_and_memory_only_as_bytes():
    lines = ratios.report(DATA)
    groups = []
    for ln in lines:
        m = re.match(r"(chain build [\d,]+|demo step replayed|demo step|replay per node"
                     r"|memory) ", ln)
        if m and m.group(1) not in groups:
            groups.append(m.group(1))
    assert groups == ["chain build 3,000", "chain build 30,000", "demo step",
                      "demo step replayed", "replay per node"]
    [rss] = [ln for ln in lines if ln.startswith("RSS growth per node")]
    assert rss.split()[-1] == "8.0x"
