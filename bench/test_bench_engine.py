"""Speed of the scalar engines: rgrad against micrograd 0.1.0 (gc on, and gc
off around its timed call: micrograd-nogc) and PyTorch scalar tensors, one
pytest-benchmark group per workload:

    chain build N      acc = acc * 0.999 + x[i], N = 3,000 / 30,000 / 300,000
                       (leaves made untimed)
    chain backward N   backward() over a freshly built N-step chain each round
    seed               micrograd's README example, build + backward
    demo step          one eager step of micrograd's demo: loss on 100 moons,
                       zero_grad, backward, SGD (a freshly seeded MLP each round)
    demo second step   the step after it (step 0 untimed): what each later step
                       of the demo's loop costs
    demo loop          10 steps of the demo's loop as micrograd's notebook
                       writes it (each step's graph held until the next step's
                       loss is made), timed per step

Every implementation of a group gets the same warm-up and rounds
(benchlib.rounds). Nothing here asserts on time; the asserts check that each
implementation computed micrograd's numbers.
"""
import gc

import pytest

from benchlib import (DEMO_EXPECTED, SEED_EXPECTED, WARMUP, chain, chain_depth,
                      chain_expected, chain_leaves,
                      checksum, demo_loop, demo_model, demo_step, fresh, moons, rounds,
                      seed, LOOP_STEPS,
                      timed, untimed, with_big_stack)


def _label(benchmark, impl, group, **extra):
    benchmark.group = group
    benchmark.extra_info["impl"] = impl.name
    benchmark.extra_info.update(extra)
    fresh()                      # start clean: no garbage from earlier tests
    if impl.name == "rgrad":
        # rgrad's backward walks the arena from the root's slot down to 0, so
        # its cost depends on what else the arena holds: empty it of dead
        # nodes and record what is left
        import rgrad
        rgrad.collect()
        benchmark.extra_info["arena_at_start"] = rgrad.stats()


def _check_chain(impl, x, acc, grads):
    want_acc, want_g0, want_glast = chain_expected(len(x))
    assert impl.data(acc) == pytest.approx(want_acc, rel=1e-12)
    if grads:
        assert impl.grad(x[0]) == pytest.approx(want_g0, rel=1e-9)
        assert impl.grad(x[-1]) == pytest.approx(want_glast, rel=1e-12)


def test_build(benchmark, impl, steps):
    _label(benchmark, impl, f"chain build {steps:,}", steps=steps)
    x = chain_leaves(impl, steps)
    held, collector = [], set()
    n, _ = rounds(f"chain {steps}")

    def build():
        collector.add(gc.isenabled())
        held.append(chain(impl, x))

    # the previous round's graph is dropped before collecting
    benchmark.pedantic(timed(impl, build), setup=untimed(held.clear), rounds=n,
                       warmup_rounds=WARMUP)
    _check_chain(impl, x, held[-1], grads=False)
    # only micrograd-nogc times without the collector (--benchmark-disable-gc
    # would make every row gc-off, and the two micrograd rows the same)
    assert collector == {not impl.gc_off}


def test_backward(benchmark, impl, steps):
    _label(benchmark, impl, f"chain backward {steps:,}", steps=steps)
    held = []
    n, _ = rounds(f"chain {steps}")

    def prepare():
        held.clear()
        x = chain_leaves(impl, steps)
        held.extend((x, chain(impl, x)))

    def backward():
        held[1].backward()

    def run():
        benchmark.pedantic(timed(impl, backward), setup=untimed(prepare), rounds=n,
                           warmup_rounds=WARMUP)

    if impl.name.startswith("micrograd"):
        with_big_stack(run, chain_depth(steps))    # recursive topological sort
    else:
        run()
    x, acc = held
    _check_chain(impl, x, acc, grads=True)


def test_seed(benchmark, impl):
    _label(benchmark, impl, "seed")
    n, calls = rounds("seed")
    a, b, g = benchmark.pedantic(timed(impl, seed), args=(impl,), rounds=n,
                                 iterations=calls, warmup_rounds=WARMUP)
    assert impl.data(g) == pytest.approx(SEED_EXPECTED["g"], rel=1e-12)
    assert impl.grad(a) == pytest.approx(SEED_EXPECTED["a.grad"], rel=1e-12)
    assert impl.grad(b) == pytest.approx(SEED_EXPECTED["b.grad"], rel=1e-12)


@pytest.mark.parametrize("group", ["demo step", "demo second step", "demo loop"],
                         ids=["step 0", "step 1", "loop"])
def test_demo_step(benchmark, impl, group):
    loop = group == "demo loop"
    _label(benchmark, impl, group, samples=100, **({"steps": LOOP_STEPS} if loop else {}))
    X, y = moons()
    model = []
    results = []
    n, _ = rounds(group)

    def prepare():
        model.clear()
        model.append(demo_model(impl))
        if group == "demo second step":
            demo_step(impl, model[0], X, y)

    run = demo_loop if loop else demo_step

    def step():
        results.append(run(impl, model[0], X, y))

    benchmark.pedantic(timed(impl, step), setup=untimed(prepare), rounds=n,
                       warmup_rounds=WARMUP)
    loss, accuracy = results[-1]
    benchmark.extra_info.update(loss=loss, accuracy=accuracy)
    want = DEMO_EXPECTED[group]
    # every round starts from the same seeded model, so all agree
    for loss, accuracy in results:
        assert loss == pytest.approx(want[0], rel=1e-12)
        assert accuracy == want[1]
    assert checksum(impl, model[0]) == pytest.approx(want[2], rel=1e-12)
