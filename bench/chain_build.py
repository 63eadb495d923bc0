"""The chain build alone, for an instruction count that does not depend on
the machine's load (`valgrind --tool=callgrind`):

    python bench/chain_build.py STEPS ROUNDS

builds `acc = acc * 0.999 + x[i]` over STEPS leaves ROUNDS times and prints the
best time a step. Instructions a step: run it under callgrind with ROUNDS 1
and 4 and divide the difference of the two totals by 3 * STEPS.
"""
import gc
import sys
import time

import rgrad
from rgrad import Value

N = int(sys.argv[1]) if len(sys.argv) > 1 else 30000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 15
xs = rgrad.values([0.001 * i for i in range(N)])


def build():
    acc = Value(0.0)
    for xi in xs:
        acc = acc * 0.999 + xi
    return acc


best = 1e9
for r in range(ROUNDS):
    gc.collect()
    t = time.perf_counter()
    acc = build()
    t = time.perf_counter() - t
    best = min(best, t)
    del acc
print(f"chain build {best / N * 1e9:.0f} ns/step")
