"""Ratios against micrograd, from one pytest-benchmark run's JSON.

    cd /tmp && pytest /work/main/bench --benchmark-json bench.json -q
    python /work/main/bench/ratios.py [--json bench.json]

For each group: every implementation's median time, its time as a multiple of
micrograd's median in the same run, and micrograd's median over its own (the
speed-up). Where a benchmark records extra_info["steps"] (chain steps) or
["nodes"] (graph nodes), the time per step or node is shown too. The memory group lists the
bytes per node and per step recorded by bench/test_bench_memory.py.
The same table is printed at the end of a pytest run given --benchmark-json.
"""
import argparse
import json
import re
import sys

GROUP_ORDER = ["build", "backward", "seed", "demo-step", "replay", "python-ops", "memory"]
IMPL_ORDER = ["rgrad", "micrograd", "torch"]
BASE = "micrograd"


def impl_of(bench):
    impl = (bench.get("extra_info") or {}).get("impl")
    if impl:
        return impl
    m = re.search(r"\[([^\]]+)\]$", bench["name"]) or re.search(r"_([a-z]+)$", bench["name"])
    return m.group(1) if m else bench["name"]


def fmt_time(s):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if s >= scale:
            return f"{s / scale:8.3f} {unit}"
    return f"{s / 1e-9:8.3f} ns"


def fmt_ratio(x):
    return f"{x:10.4g}x" if x is not None else f"{'-':>11}"


def _order(items):
    return sorted(items, key=lambda kv: (IMPL_ORDER.index(kv[0]) if kv[0] in IMPL_ORDER
                                         else len(IMPL_ORDER), kv[0]))


def report(data):
    """The table as a list of lines, from pytest-benchmark's JSON (a dict)."""
    groups = {}
    for bench in data.get("benchmarks", []):
        groups.setdefault(bench.get("group") or "(none)", {})[impl_of(bench)] = bench
    names = sorted(groups, key=lambda g: (GROUP_ORDER.index(g) if g in GROUP_ORDER
                                          else len(GROUP_ORDER), g))
    lines = []
    mi = data.get("machine_info") or {}
    if mi:
        lines.append(f"{mi.get('python_implementation', '')} {mi.get('python_version', '')}, "
                     f"{(mi.get('cpu') or {}).get('brand_raw', mi.get('processor', ''))}, "
                     f"{data.get('datetime', '')}")
    head = (f"{'group':<10} {'impl':<18} {'median':>11} {'per step':>11} {'rounds':>6} "
            f"{'time/micro':>11} {'speed-up':>11}")
    lines += [head, "-" * len(head)]
    for g in names:
        benches = groups[g]
        base = benches.get(BASE)
        base_median = base["stats"]["median"] if base else None
        for impl, bench in _order(benches.items()):
            st, extra = bench["stats"], bench.get("extra_info") or {}
            median = st["median"]
            steps = extra.get("steps") or extra.get("nodes")
            per_step = fmt_time(median / steps) if steps else f"{'-':>11}"
            rel = median / base_median if base_median else None
            speed = base_median / median if base_median and median > 0 else None
            lines.append(f"{g:<10} {impl:<18} {fmt_time(median):>11} {per_step:>11} "
                         f"{st['rounds']:>6} {fmt_ratio(rel)} {fmt_ratio(speed)}")
        lines.append("")
    if "memory" in groups:
        lines += memory_report(groups["memory"])
    return lines


MEMORY_ROWS = [
    ("nodes_per_step", "nodes (Values) per chain step", "{:.0f}"),
    ("node_bytes", "arena bytes per node (sizeof)", "{:.0f}"),
    ("arena_bytes_per_node", "arena capacity bytes per node held", "{:.1f}"),
    ("rss_per_node", "RSS growth per node", "{:.1f}"),
    ("rss_per_step", "RSS growth per chain step", "{:.1f}"),
    ("tracemalloc_per_node", "tracemalloc growth per node", "{:.1f}"),
    ("tracemalloc_per_step", "tracemalloc growth per chain step", "{:.1f}"),
]


def memory_report(benches):
    impls = [name for name, _ in _order(benches.items())]
    steps = {(benches[i].get("extra_info") or {}).get("steps") for i in impls}
    lines = [f"memory, bytes (chain of {', '.join(str(s) for s in steps)} steps kept alive, "
             f"fresh process; ratio = micrograd / rgrad)"]
    head = f"{'':<36}" + "".join(f"{i:>12}" for i in impls) + f"{'ratio':>10}"
    lines += [head, "-" * len(head)]
    for key, label, fmt in MEMORY_ROWS:
        vals = [(benches[i].get("extra_info") or {}).get(key) for i in impls]
        if all(v is None for v in vals):
            continue
        cells = "".join(f"{fmt.format(v) if v is not None else '-':>12}" for v in vals)
        ex = {i: (benches[i].get("extra_info") or {}).get(key) for i in impls}
        ratio = ""
        if key.endswith(("_per_node", "_per_step")) and ex.get(BASE) and ex.get("rgrad"):
            ratio = f"{ex[BASE] / ex['rgrad']:9.1f}x"
        lines.append(f"{label:<36}{cells}{ratio:>10}")
    lines.append("(rgrad: tracemalloc sees only the Python handles, not the C arena; "
                 "RSS includes both)")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default="bench.json",
                    help="pytest-benchmark JSON (--benchmark-json); default ./bench.json")
    ap.add_argument("json_pos", nargs="?", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    path = args.json_pos or args.json
    with open(path) as f:
        data = json.load(f)
    print("\n".join(report(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
