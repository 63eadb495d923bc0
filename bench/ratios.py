"""Ratios against micrograd, from one pytest-benchmark run's JSON.

    pytest bench --benchmark-json bench.json -q
    python bench/ratios.py [--json bench.json]

For each group: every implementation's median time, its rounds, and two
speed-ups, micrograd's median over its own ("vs micrograd", the collector on
as micrograd comes) and micrograd-nogc's median over its own ("vs micrograd
gc-off", the collector disabled around micrograd's timed call). The
"demo step replayed" rows are set against micrograd's eager "demo step", as
micrograd has no replayed step. Where a benchmark records extra_info["steps"]
(chain steps) or ["nodes"] (graph nodes), the time per step or node is shown
too. The memory group lists the bytes per node and per step recorded by
bench/test_bench_memory.py. The same table is printed at the end of a pytest
run given --benchmark-json.
"""
import argparse
import json
import re
import sys

from rgrad.bench_report import RATIO_HEADS, fmt_ratio
from rgrad.benchmarks import BASELINE_GROUP, BASES

GROUP_ORDER = ["seed", "demo step", "demo second step", "demo loop", "demo step replayed",
               "batch 10,000 rows", "replay per node", "hvp 1,000 inputs", "python ops"]
IMPL_ORDER = ["rgrad", "rgrad-pyops-alive", "micrograd", "micrograd-nogc", "torch",
              "rgrad-replay", "rgrad-batch", "torch-tensors", "jax-jit", "casadi-vm",
              "rgrad-batch-1t", "rgrad-batch-2t", "rgrad-grad", "rgrad-hvp", "rgrad-demo",
              "rgrad-chain"]
NOT_TIMED = {"memory"}       # its time is a probe process's; only its bytes count


def impl_of(bench):
    impl = (bench.get("extra_info") or {}).get("impl")
    if impl:
        return impl
    m = re.search(r"\[([^\]]+)\]$", bench["name"])
    return m.group(1) if m else bench["name"]


def fmt_time(s):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3f} {unit}"
    return f"{s / 1e-9:.3f} ns"


def _order(items):
    return sorted(items, key=lambda kv: (IMPL_ORDER.index(kv[0]) if kv[0] in IMPL_ORDER
                                         else len(IMPL_ORDER), kv[0]))


def _group_key(g):
    """Chains first, by length, build before backward; then GROUP_ORDER."""
    m = re.match(r"chain (build|backward) ([\d,]+)$", g)
    if m:
        return (0, int(m.group(2).replace(",", "")), m.group(1) == "backward", g)
    return (1, GROUP_ORDER.index(g) if g in GROUP_ORDER else len(GROUP_ORDER), 0, g)


def report(data):
    """The table as a list of lines, from pytest-benchmark's JSON (a dict)."""
    groups = {}
    for bench in data.get("benchmarks", []):
        groups.setdefault(bench.get("group") or "(none)", {})[impl_of(bench)] = bench
    names = sorted((g for g in groups if g not in NOT_TIMED), key=_group_key)
    lines = []
    mi = data.get("machine_info") or {}
    if mi:
        lines.append(f"{mi.get('python_implementation', '')} {mi.get('python_version', '')}, "
                     f"{(mi.get('cpu') or {}).get('brand_raw', mi.get('processor', ''))}, "
                     f"{data.get('datetime', '')}")
    head = (f"{'group':<25} {'impl':<18} {'median':>11} {'per step':>11} {'rounds':>7} "
            f"{RATIO_HEADS['micrograd']:>13} {RATIO_HEADS['micrograd-nogc']:>20}")
    lines += [head, "-" * len(head)]
    for g in names:
        benches = groups[g]
        bases = {b: groups.get(BASELINE_GROUP.get(g, g), {}).get(b) for b in BASES}
        for impl, bench in _order(benches.items()):
            st, extra = bench["stats"], bench.get("extra_info") or {}
            median = st["median"]
            steps = extra.get("steps") or extra.get("nodes")
            per_step = fmt_time(median / steps) if steps else "-"
            ratios = [fmt_ratio(base["stats"]["median"] / median
                                if base and median > 0 else None)
                      for base in bases.values()]
            iters = st.get("iterations", 1)
            rounds = f"{st['rounds']}" + (f"x{iters}" if iters > 1 else "")
            lines.append(f"{g:<25} {impl:<18} {fmt_time(median):>11} {per_step:>11} "
                         f"{rounds:>7} {ratios[0]:>13} {ratios[1]:>20}")
        lines.append("")
    lines += ["vs micrograd: micrograd's median / this row's (above 1x: this row is "
              "faster); vs micrograd gc-off: against micrograd with its collector off "
              "around the timed call; demo step replayed: against micrograd's EAGER "
              "demo step; rounds RxN: R rounds of N calls, timed per call", ""]
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
        if key.endswith(("_per_node", "_per_step")) and ex.get("micrograd") and ex.get("rgrad"):
            ratio = f"{ex['micrograd'] / ex['rgrad']:9.1f}x"
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
