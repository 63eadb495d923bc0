"""Memory per node of a large chain kept alive, measured in a fresh interpreter.

    python bench/memprobe.py rgrad|micrograd STEPS

Builds x = STEPS leaf Values and the chain `acc = acc * 0.999 + x[i]`, keeps x
and acc alive, and prints one JSON object:

  phase 1, resident set size (RSS, from /proc/self/statm) before and after the
  build, with tracemalloc off (its own bookkeeping would inflate RSS);
  phase 2, after dropping everything, tracemalloc's traced-memory growth over
  a second identical build (Python-heap allocations only: rgrad's C arena is
  malloc'd by C and invisible to tracemalloc, which is why RSS is reported too).

Nodes per step: rgrad makes 3 (leaf x[i], acc*0.999 with the constant folded
into the node, + x[i]); micrograd makes 4 Values (leaf, Value(0.999), *, +).
A fresh process is used so that arena capacity or freed pymalloc arenas left
over from other benchmarks do not hide the growth.
"""
import gc
import json
import os
import sys
import tracemalloc


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(impl, steps):
    if impl == "rgrad":
        import rgrad
        from rgrad import Value
        nodes_per_step = 3

        def settle():
            gc.collect()
            rgrad.collect()
    elif impl == "micrograd":
        from micrograd.engine import Value
        nodes_per_step = 4

        def settle():
            gc.collect()
    else:
        raise SystemExit(f"unknown implementation {impl!r}")
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * steps))

    def build():
        # cyclic GC off while building: everything built stays reachable, so it
        # would free nothing, only rescan micrograd's growing heap (slow)
        gc.disable()
        try:
            x = [Value(float(i % 7)) for i in range(steps)]
            acc = Value(0.0)
            for xi in x:
                acc = acc * 0.999 + xi
        finally:
            gc.enable()
        return x, acc

    nodes = nodes_per_step * steps + 1      # + the starting acc leaf
    out = {"impl": impl, "steps": steps, "nodes": nodes,
           "nodes_per_step": nodes_per_step}

    # phase 1: RSS
    settle()
    rss0 = rss_bytes()
    x, acc = build()
    settle()
    rss1 = rss_bytes()
    out["rss_bytes"] = rss1 - rss0
    out["rss_per_node"] = (rss1 - rss0) / nodes
    out["rss_per_step"] = (rss1 - rss0) / steps
    out["check_data"] = acc.data
    if impl == "rgrad":
        s = rgrad.stats()
        out["arena"] = s
        out["node_bytes"] = s["node_bytes"]
        # nodes array + one mark byte per slot of capacity, over nodes held
        out["arena_bytes_per_node"] = s["capacity"] * (s["node_bytes"] + 1) / max(s["nodes"], 1)

    # phase 2: tracemalloc (Python heap only)
    del x, acc
    settle()
    tracemalloc.start()
    t0, _ = tracemalloc.get_traced_memory()
    x, acc = build()
    settle()
    t1, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out["tracemalloc_bytes"] = t1 - t0
    out["tracemalloc_per_node"] = (t1 - t0) / nodes
    out["tracemalloc_per_step"] = (t1 - t0) / steps
    out["tracemalloc_peak_bytes"] = peak - t0
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
