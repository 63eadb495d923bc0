"""Memory per node: rgrad's arena against micrograd's Python objects.

The numbers come from bench/memprobe.py run in a fresh interpreter (RSS and
tracemalloc growth for a MEM_STEPS-step chain kept alive; see there), and are
stored in the benchmark's extra_info, where bench/ratios.py reads them. They
are also printed (visible with -s). The timed part is that one probe run (one
round, for each engine alike); bench/ratios.py does not show its time, since
the chain build groups time the same build in process.
"""
import json
import os
import subprocess
import sys
import tempfile

import pytest

from benchlib import MEM_STEPS, chain_expected, make_impl

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "memprobe.py")

KEYS = ("nodes_per_step", "node_bytes", "arena_bytes_per_node", "rss_per_node",
        "rss_per_step", "tracemalloc_per_node", "tracemalloc_per_step")


def probe(name, steps):
    proc = subprocess.run([sys.executable, PROBE, name, str(steps)],
                          capture_output=True, text=True, timeout=600,
                          cwd=tempfile.gettempdir())
    assert proc.returncode == 0, f"memprobe.py {name} failed:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.benchmark(group="memory")
@pytest.mark.parametrize("name", ["rgrad", "micrograd"])
def test_memory_per_node(benchmark, name):
    make_impl(name, pytest.importorskip)
    mem = benchmark.pedantic(probe, args=(name, MEM_STEPS), rounds=1)
    want = chain_expected(MEM_STEPS)[0]
    assert mem["check_data"] == pytest.approx(want, rel=1e-12)
    if name == "rgrad":
        # after a collection the arena holds exactly the live chain
        assert mem["arena"]["nodes"] == mem["nodes"]
        assert mem["node_bytes"] > 0
    benchmark.extra_info.update(impl=name, steps=MEM_STEPS,
                                **{k: mem[k] for k in KEYS if k in mem})
    print(f"\n{name}: " + ", ".join(f"{k}={mem[k]:.1f}" if isinstance(mem[k], float)
                                    else f"{k}={mem[k]}" for k in KEYS if k in mem))
