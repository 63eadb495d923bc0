"""Memory over a long run: micrograd's demo training loop for many steps,
eager (a new graph every step) and replayed (one graph), printing the process's
resident memory and rgrad's arena as it goes.

    python bench/long_run.py [--steps 10000] [--every 1000] [--mode eager|replay|both]

Flat memory means the RSS stops growing after the first steps: the last
column is the growth since step --every, which should stay near zero.
Linux only (it reads /proc/self/statm).
"""
import argparse
import gc
import os
import random
import sys
import time


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(mode, steps, every):
    import rgrad
    from rgrad.data import make_moons
    from rgrad.demo import loss
    from rgrad.nn import MLP
    from rgrad.optim import SGD

    random.seed(1337)
    X, labels = make_moons(100, noise=0.1, seed=1337)
    y = [2 * label - 1 for label in labels]
    model = MLP(2, [16, 16, 1])
    opt = SGD(model.parameters(), lr=1.0)
    total = loss(model, X, y)[0] if mode == "replay" else None
    print(f"\n{mode}: {steps:,} steps of micrograd's demo (moons 100, MLP 2-16-16-1)")
    print(f"{'step':>8} {'loss':>10} {'RSS MiB':>9} {'arena nodes':>12} "
          f"{'capacity':>10} {'handles':>8} {'growth MiB':>11}")
    base = None
    start = time.perf_counter()
    for k in range(1, steps + 1):
        opt.lr = 1.0 - 0.9 * (k - 1) / steps
        if mode == "replay":
            total.forward()
        else:
            total = loss(model, X, y)[0]
        opt.zero_grad()
        total.backward()
        opt.step()
        if k % every == 0 or k == steps:
            gc.collect()
            s, rss = rgrad.stats(), rss_mib()
            if base is None:
                base = rss
            print(f"{k:>8,} {total.data:>10.6f} {rss:>9.1f} {s['nodes']:>12,} "
                  f"{s['capacity']:>10,} {s['handles']:>8,} {rss - base:>11.1f}")
    elapsed = time.perf_counter() - start
    print(f"{elapsed / steps * 1e3:.3f} ms per step; RSS growth after step {every:,}: "
          f"{rss - base:.1f} MiB")
    return rss - base


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=1_000)
    ap.add_argument("--mode", choices=("eager", "replay", "both"), default="both")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.every < 1:
        ap.error("--steps and --every must be >= 1")
    modes = ("eager", "replay") if args.mode == "both" else (args.mode,)
    for mode in modes:
        run(mode, args.steps, min(args.every, args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
