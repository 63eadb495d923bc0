"""Speed of training loops beyond one eager step:

    demo-step     (this file adds) rgrad-replay: micrograd's demo step on a graph
                  built once, as `loss.forward(); opt.zero_grad();
                  loss.backward(); opt.step()`, compared with micrograd's eager
                  step in the same group
    replay        forward + backward over that graph, per interior node
    backward      (this file adds) rgrad-pyops-alive: the chain's backward while
                  an op defined in Python is alive elsewhere, which sends
                  backward() through the Python-op walk
    python-ops    the lecture's tanh network, tanh written in Python with a
                  _backward closure, trained 20 steps: rgrad against micrograd
                  running the same code

Nothing asserts on time; the asserts check the numbers.
"""
import math
import random

import pytest

from benchlib import (CHAIN_STEPS, DEMO_EXPECTED_LOSS, chain, chain_expected,
                      chain_leaves, fresh, make_impl, moons)


def _replay_setup():
    import rgrad
    from rgrad.demo import loss
    from rgrad.nn import MLP
    from rgrad.optim import SGD
    fresh()
    rgrad.collect()
    random.seed(1337)
    X, y = moons()
    model = MLP(2, [16, 16, 1])
    total, _ = loss(model, X, y)
    assert total.data == pytest.approx(DEMO_EXPECTED_LOSS, rel=1e-12)
    return total, SGD(model.parameters(), lr=1.0)


@pytest.mark.benchmark(group="demo-step")
def test_demo_step_replayed(benchmark):
    total, opt = _replay_setup()
    benchmark.extra_info["impl"] = "rgrad-replay"

    def step():
        total.forward()
        opt.zero_grad()
        total.backward()
        opt.step()

    benchmark.pedantic(step, rounds=300, warmup_rounds=5)
    assert math.isfinite(total.data)


@pytest.mark.benchmark(group="replay")
def test_replay_forward_backward_per_node(benchmark):
    from rgrad._rgrad import ffi, lib
    total, _ = _replay_setup()
    interior = lib.rg_tape(total._s, ffi.NULL, 0)
    benchmark.extra_info.update(impl="rgrad", nodes=interior)

    def forward_backward():
        total.forward()
        total.backward()

    benchmark.pedantic(forward_backward, rounds=300, warmup_rounds=5)
    assert total.data == pytest.approx(DEMO_EXPECTED_LOSS, rel=1e-12)


@pytest.mark.benchmark(group="backward")
def test_backward_with_python_ops_alive(benchmark):
    from rgrad import Value
    impl = make_impl("rgrad", pytest.importorskip)
    benchmark.extra_info.update(impl="rgrad-pyops-alive", steps=CHAIN_STEPS)
    elsewhere = Value(0.5)
    python_op = Value(math.tanh(0.5), (elsewhere,), "tanh")
    python_op._backward = lambda: None
    held = []

    def setup():
        held.clear()
        fresh()
        x = chain_leaves(impl)
        held.extend((x, chain(impl, x)))

    benchmark.pedantic(lambda: held[1].backward(), setup=setup, rounds=50,
                       warmup_rounds=1)
    x, acc = held
    assert x[-1].grad == pytest.approx(chain_expected(len(x))[2], rel=1e-12)
    assert python_op._op == "tanh"


def _lecture_training(V, steps=20):
    """The lecture's MLP with tanh neurons, tanh written the lecture's way."""
    def tanh(v):
        t = (math.exp(2 * v.data) - 1) / (math.exp(2 * v.data) + 1)
        out = V(t, (v,), "tanh")

        def _backward():
            v.grad += (1 - t**2) * out.grad
        out._backward = _backward
        return out

    def neuron(nin):
        return [V(random.uniform(-1, 1)) for _ in range(nin)], V(random.uniform(-1, 1))

    random.seed(42)
    sizes = [3, 4, 4, 1]
    layers = [[neuron(sizes[i]) for _ in range(sizes[i + 1])] for i in range(3)]
    params = [p for layer in layers for w, b in layer for p in w + [b]]
    xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    ys = [1.0, -1.0, -1.0, 1.0]
    for _ in range(steps):
        preds = []
        for x in xs:
            for layer in layers:
                x = [tanh(sum((wi * xi for wi, xi in zip(w, x)), b)) for w, b in layer]
            preds.append(x[0])
        loss = sum((p - y) ** 2 for p, y in zip(preds, ys))
        for p in params:
            p.grad = 0.0
        loss.backward()
        for p in params:
            p.data += -0.1 * p.grad
    return loss.data


_LECTURE_LOSS = {}


@pytest.mark.benchmark(group="python-ops")
@pytest.mark.parametrize("name", ["rgrad", "micrograd"])
def test_lecture_network_with_python_tanh(benchmark, name):
    if name == "rgrad":
        from rgrad import Value
    else:
        Value = pytest.importorskip("micrograd.engine").Value
    benchmark.extra_info["impl"] = name
    fresh()
    loss = benchmark.pedantic(_lecture_training, args=(Value,), rounds=10,
                              warmup_rounds=1)
    _LECTURE_LOSS[name] = loss
    if len(_LECTURE_LOSS) == 2:
        assert _LECTURE_LOSS["rgrad"] == pytest.approx(_LECTURE_LOSS["micrograd"], rel=1e-9)
