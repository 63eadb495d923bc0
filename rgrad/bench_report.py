"""`python -m rgrad bench`: the table and the chart drawn from a run's results
(rgrad/benchmarks.py makes them), and the machine header."""
import os
import platform

from .bench_workloads import DEMO_EXPECTED, LOOP_STEPS, SEED_EXPECTED

__all__ = ["group_label", "machine_info", "header", "fmt_time", "fmt_ratio",
           "report", "plot", "ENGINES"]

# the packages a run can time, as the header names them, and their rows
ENGINES = {"rgrad": ("rgrad", "rgrad-replay", "rgrad-batch"), "micrograd": ("micrograd", "micrograd-nogc"),
           "torch": ("torch", "torch-tensors"), "jax": ("jax-jit",),
           "casadi": ("casadi-vm",)}
RATIO_HEADS = {"micrograd": "vs micrograd", "micrograd-nogc": "vs micrograd gc-off"}


def group_label(row):
    """The table's group of a result: chain rows by workload and size (the
    demo loop's steps give its time per step, not a group of their own)."""
    if row.get("steps") and row["workload"].startswith("chain"):
        return f"{row['workload']} {row['steps']:,}"
    return row["workload"]


def _cpu_name():
    name = platform.processor()
    if name and name != platform.machine():
        return name
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name or platform.machine() or "unknown CPU"


def machine_info(versions):
    """The machine, Python, and each package's version (None: not installed),
    from {row name: version}."""
    u = platform.uname()
    info = {
        "cpu": _cpu_name(), "system": u.system, "release": u.release,
        "machine": u.machine, "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }
    for package, rows in ENGINES.items():
        info[package] = next((versions[r] for r in rows if r in versions), None)
    return info


def header(info):
    versions = ", ".join(f"{n} {info.get(n) or 'not installed'}" for n in ENGINES)
    return (f"machine: {info['cpu']} ({info['system']} {info['release']} "
            f"{info['machine']}), {info['cpu_count']} CPUs, "
            f"{info['python_implementation']} {info['python']}; {versions}")


def fmt_time(s):
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3f} {unit}"
    return f"{s / 1e-9:.3f} ns"


def fmt_ratio(x):
    if x is None:
        return "-"
    return f"{x:.0f}x" if x >= 100 else f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


def report(data):
    """The report as a list of lines."""
    lines = [header(data["machine"])]
    for name, hint in data["missing"].items():
        lines.append(f"{name} is not installed, so its rows are skipped; "
                     f"to compare with it: {hint}")
    mode = "quick" if data["quick"] else "full"
    sizes = ", ".join(f"{n:,}" for n in data["chain_sizes"])
    lines.append(f"{mode} run: chains of {sizes} steps; every implementation of "
                 f"a workload gets {data['warmup_rounds']} warm-up round and the "
                 f"same timed rounds, the implementations taking turns round by "
                 f"round; median of the timed rounds")
    head = (f"{'workload':<25} {'implementation':<15} {'median':>11} "
            f"{'per step':>11} {'rounds':>7} {RATIO_HEADS['micrograd']:>13} "
            f"{RATIO_HEADS['micrograd-nogc']:>20}")
    lines += ["", head, "-" * len(head)]
    sp = data["speedups"]
    last = None
    for r in data["results"]:
        g = group_label(r)
        if last is not None and g != last:
            lines.append("")
        last = g
        vs = sp.get(g, {}).get(r["impl"], {})
        rounds = str(r["rounds"]) + (f"x{r['calls_per_round']}"
                                     if r["calls_per_round"] > 1 else "")
        lines.append(f"{g:<25} {r['impl']:<15} {fmt_time(r['median_s']):>11} "
                     f"{fmt_time(r['per_step_s']):>11} {rounds:>7} "
                     f"{fmt_ratio(vs.get('micrograd')):>13} "
                     f"{fmt_ratio(vs.get('micrograd-nogc')):>20}")
    lines += [
        "",
        "vs micrograd: micrograd's median / this row's (above 1x: this row is "
        "faster); vs micrograd gc-off: the same against micrograd-nogc, "
        "micrograd with Python's cyclic garbage collector disabled around its "
        "timed rounds only",
        "demo step: step 0 of a freshly seeded model; demo second step: step 1, "
        "after an untimed step 0, as each later step of the demo's loop; demo "
        f"loop: {LOOP_STEPS} steps of the loop as micrograd's notebook writes it "
        "(each step's graph held until the next step's loss is made), per step",
        "demo step replayed: the step prepared once and rerun (rgrad's graph "
        "replayed, rgrad.Batch running one sample's graph over the 100 rows, "
        "torch batched tensors, jax.jit, CasADi's SX virtual machine); "
        "its ratios are against micrograd's EAGER demo step, as micrograd has no "
        "replayed one",
        "rounds RxN: R timed rounds of N calls, timed per call; before each "
        "round, untimed: fresh input, gc.collect()",
    ]
    names = list(data["implementations"])
    who = (f"{names[0]} gives" if len(names) == 1 else
           f"{', '.join(names[:-1])} and {names[-1]} all give")
    if data["agree"]:
        seed = SEED_EXPECTED
        demo = "; ".join(
            f"{what} loss {loss!r}, accuracy {acc:.0%}, parameter sum after it {psum!r}"
            for what, (loss, acc, psum) in zip(
                ("demo step 0", "step 1", f"the loop's step {LOOP_STEPS - 1}"),
                (DEMO_EXPECTED[g] for g in ("demo step", "demo second step", "demo loop"))))
        lines.append(
            f"numbers agree: {who} micrograd's values (chain value and grads; "
            f"seed g={seed['g']:.4f}, a.grad={seed['a.grad']:.4f}, "
            f"b.grad={seed['b.grad']:.4f}; {demo})")
    else:
        lines.append("numbers DISAGREE:")
        lines += [f"  {f}" for f in data["disagreements"]]
    return lines


def plot(data, path):
    """Save a bar chart to `path`: rgrad's speed-ups (rgrad and rgrad-replay
    rows) over micrograd with and without its gc, on a log axis, or, without
    micrograd, rgrad's median times. Needs matplotlib (ImportError otherwise)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    sp = data["speedups"]
    rows = [r for r in data["results"] if r["impl"].startswith("rgrad")]
    labels = [group_label(r).replace(" replayed", "\nreplayed") for r in rows]
    if sp:
        series = list(RATIO_HEADS)
        values = {b: [sp.get(group_label(r), {}).get(r["impl"], {}).get(b)
                      for r in rows] for b in series}
        ylabel = "rgrad's speed-up (micrograd's time / rgrad's), log scale"
        title = "rgrad against micrograd, with and without micrograd's gc"
    else:
        series = ["rgrad"]
        values = {"rgrad": [r["median_s"] for r in rows]}
        ylabel = "median time, seconds, log scale"
        title = "rgrad median times (micrograd not installed)"
    width = 0.8 / len(series)
    for k, name in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(labels))]
        pairs = [(x, v) for x, v in zip(xs, values[name]) if v]
        if not pairs:
            continue
        bars = ax.bar([p[0] for p in pairs], [p[1] for p in pairs], width,
                      label=RATIO_HEADS.get(name, name))
        ax.bar_label(bars, labels=[fmt_ratio(v) if sp else fmt_time(v)
                                   for _, v in pairs], fontsize=7)
    ax.set_yscale("log")
    if sp:
        ax.axhline(1.0, color="k", linewidth=0.8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.text(0.01, 0.01, header(data["machine"]), fontsize=6)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _, ext = os.path.splitext(str(path))
    fig.savefig(path, format=None if ext else "png")
