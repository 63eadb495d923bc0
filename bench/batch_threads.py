"""Batched replay of the demo MLP's hinge loss over 10,000 rows (forward and
backward) on 1 and on 2 threads, the two timed in turn, six times over, so
that a machine whose speed drifts slows both alike:

    python bench/batch_threads.py [ROWS]

Prints each thread count's median time per forward + backward and the ratio.
(bench/test_bench_batch.py times the whole demo step at 10,000 rows inside
pytest-benchmark, one thread count after the other.)"""
import random
import sys
import time

import rgrad
from rgrad import Value
from rgrad.data import make_moons
from rgrad.nn import MLP

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000

random.seed(1337)
model = MLP(2, [16, 16, 1])
x, t = rgrad.values([0.0, 0.0]), Value(0.0)
loss1 = (1 - t * model(x)).relu()
X, labels = make_moons(ROWS, noise=0.1, seed=1337)
rows = [[a, b, 2 * lab - 1] for (a, b), lab in zip(X, labels)]
try:                            # converted once, not in every forward
    import numpy
    rows = numpy.asarray(rows, dtype=float)
except ImportError:
    pass
batches = {n: rgrad.Batch([loss1], inputs=[*x, t], threads=n) for n in (1, 2)}
times = {1: [], 2: []}
for _ in range(6):
    for n, batch in batches.items():
        start = time.perf_counter()
        for _ in range(10):
            batch.forward(rows)
            batch.backward(scale=1 / ROWS)
        times[n].append((time.perf_counter() - start) / 10)
one, two = (sorted(times[n])[len(times[n]) // 2] for n in (1, 2))
print(f"{ROWS:,} rows, forward + backward: 1 thread {one * 1e3:.2f} ms, "
      f"2 threads {two * 1e3:.2f} ms: {one / two:.2f}x")
