"""One workload of `python -m rgrad bench`, run ROUNDS times after its setup,
for instruction counts that do not depend on the machine's load:

    PYTHONHASHSEED=0 valgrind --tool=callgrind python bench/instructions.py WORKLOAD ROUNDS

WORKLOAD is one of:
  chain-backward   backward() of a 10,000-step chain (20,000 nodes)
  chain-replay     forward() then backward() of that chain
  demo-step        one eager step of micrograd's demo (rgrad.bench_workloads.demo_step)
  demo-replay      forward() then backward() of the demo step's graph (65,077
                   interior nodes: rgrad.bench_peers' rgrad-replay, untimed)
  demo-batch       one batched demo step over the 100 rows (rgrad.bench_peers'
                   rgrad-batch, one thread); run it with OPENBLAS_NUM_THREADS=1,
                   or numpy's BLAS threads add instructions of their own

Instructions per round: run it with ROUNDS 1 and 21 (3 for demo-step) and
divide the difference of the two totals by the difference of the rounds.
(The chain build alone is bench/chain_build.py.) PYTHONHASHSEED=0 keeps
Python's own dict lookups, at start-up and exit, the same from run to run.
"""
import sys

from rgrad import bench_workloads as W

WORKLOAD, ROUNDS = sys.argv[1], int(sys.argv[2])
impl = W._load_rgrad()

if WORKLOAD in ("chain-backward", "chain-replay"):
    acc = W.chain(impl, W.chain_leaves(impl, 10_000))
    for _ in range(ROUNDS):
        if WORKLOAD == "chain-replay":
            acc.forward()
        acc.backward()
elif WORKLOAD == "demo-step":
    X, y = W.moons()
    model = W.demo_model(impl)
    for _ in range(ROUNDS):
        W.demo_step(impl, model, X, y)
elif WORKLOAD == "demo-replay":
    from rgrad.bench_peers import FACTORIES
    total = FACTORIES["rgrad-replay"](*W.moons()).total
    for _ in range(ROUNDS):
        total.forward()
        total.backward()
elif WORKLOAD == "demo-batch":
    from rgrad.bench_peers import FACTORIES
    peer = FACTORIES["rgrad-batch"](*W.moons())
    for _ in range(ROUNDS):
        peer.step()
else:
    sys.exit(f"unknown workload {WORKLOAD!r}: chain-backward, chain-replay, demo-step, "
             "demo-replay or demo-batch")
