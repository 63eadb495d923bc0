"""Speed: rgrad against micrograd 0.1.0 (and PyTorch scalar tensors), grouped
so that pytest-benchmark's table compares them workload by workload.

    build      the 30,000-step chain acc = acc * 0.999 + x[i] (leaves made untimed)
    backward   backward() over a freshly built 30,000-step chain each round
    seed       micrograd's README example, build + backward
    demo-step  one step of micrograd's demo: loss on 100 moons, zero_grad,
               backward, SGD update (a freshly seeded MLP(2, [16, 16, 1]) each round)

Every round gets its setup untimed (fresh graph or model, then gc.collect()).
Nothing here asserts on time; the asserts check that each implementation
computed the right numbers.
"""
import pytest

from benchlib import (CHAIN_STEPS, DEMO_EXPECTED_ACCURACY, DEMO_EXPECTED_LOSS,
                      SEED_EXPECTED, chain, chain_expected, chain_leaves,
                      demo_model, demo_step, fresh, moons, params_checksum,
                      run_with_big_stack, seed)


def _label(benchmark, impl, **extra):
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


def _warmup(impl):
    return 0 if impl.name == "micrograd" else 1   # micrograd's rounds are costly


def _check_chain(impl, x, acc, grads):
    want_acc, want_g0, want_glast = chain_expected(len(x))
    assert impl.data(acc) == pytest.approx(want_acc, rel=1e-12)
    if grads:
        assert impl.grad(x[0]) == pytest.approx(want_g0, rel=1e-9)
        assert impl.grad(x[-1]) == pytest.approx(want_glast, rel=1e-12)


@pytest.mark.benchmark(group="build")
def test_build(benchmark, impl):
    _label(benchmark, impl, steps=CHAIN_STEPS)
    x = chain_leaves(impl)
    held = []

    def setup():
        held.clear()          # drop the previous round's graph before collecting
        fresh()

    def build():
        held.append(chain(impl, x))

    benchmark.pedantic(build, setup=setup, rounds=impl.rounds["build"],
                       warmup_rounds=_warmup(impl))
    _check_chain(impl, x, held[-1], grads=False)


@pytest.mark.benchmark(group="backward")
def test_backward(benchmark, impl):
    _label(benchmark, impl, steps=CHAIN_STEPS)
    held = []

    def setup():
        held.clear()
        fresh()
        x = chain_leaves(impl)
        held.extend((x, chain(impl, x)))

    def backward():
        held[1].backward()

    def run():
        benchmark.pedantic(backward, setup=setup, rounds=impl.rounds["backward"],
                           warmup_rounds=_warmup(impl))

    if impl.name == "micrograd":
        run_with_big_stack(run)    # recursive topological sort, ~60,000 deep
    else:
        run()
    x, acc = held
    _check_chain(impl, x, acc, grads=True)


@pytest.mark.benchmark(group="seed")
def test_seed(benchmark, impl):
    _label(benchmark, impl)
    a, b, g = benchmark(seed, impl)
    assert impl.data(g) == pytest.approx(SEED_EXPECTED["g"], rel=1e-12)
    assert impl.grad(a) == pytest.approx(SEED_EXPECTED["a.grad"], rel=1e-12)
    assert impl.grad(b) == pytest.approx(SEED_EXPECTED["b.grad"], rel=1e-12)


# sum of all 337 parameters' data after step 0, as micrograd 0.1.0 computes it
DEMO_EXPECTED_CHECKSUM = 7.510907886666312


@pytest.mark.benchmark(group="demo-step")
def test_demo_step(benchmark, impl):
    _label(benchmark, impl, samples=100)
    X, y = moons()
    model = []
    results = []

    def setup():
        model.clear()
        fresh()
        model.append(demo_model(impl))

    def step():
        results.append(demo_step(impl, model[0], X, y))

    benchmark.pedantic(step, setup=setup, rounds=impl.rounds["demo-step"],
                       warmup_rounds=_warmup(impl))
    loss, accuracy = results[-1]
    benchmark.extra_info.update(loss=loss, accuracy=accuracy)
    # every round starts from the same seeded model, so all agree
    for loss, accuracy in results:
        assert loss == pytest.approx(DEMO_EXPECTED_LOSS, rel=1e-12)
        assert accuracy == DEMO_EXPECTED_ACCURACY
    assert params_checksum(impl, model[0]) == pytest.approx(DEMO_EXPECTED_CHECKSUM, rel=1e-12)
