"""Speed of what runs through Python-defined ops:

    chain backward 30,000   (this file adds) rgrad-pyops-alive: the chain's
                            backward while an op defined in Python is alive
                            elsewhere (a graph of built-in ops must still take
                            the C walk)
    python ops              the lecture's tanh network, tanh written in Python
                            with a _backward closure, trained 20 steps: rgrad
                            against micrograd (gc on and off) running the same code

Same warm-up and rounds for every implementation of a group. Nothing asserts
on time; the asserts check the numbers.
"""
import math
import random

import pytest

from benchlib import (WARMUP, chain, chain_expected, chain_leaves, fresh,
                      make_impl, rounds, timed, untimed)

PYOPS_STEPS = 30_000
PYTHON_OPS_ROUNDS = 10


def test_backward_with_python_ops_alive(benchmark):
    from rgrad import Value
    impl = make_impl("rgrad", pytest.importorskip)
    benchmark.group = f"chain backward {PYOPS_STEPS:,}"
    benchmark.extra_info.update(impl="rgrad-pyops-alive", steps=PYOPS_STEPS)
    elsewhere = Value(0.5)
    python_op = Value(math.tanh(0.5), (elsewhere,), "tanh")
    python_op._backward = lambda: None
    held = []

    def prepare():
        held.clear()
        x = chain_leaves(impl, PYOPS_STEPS)
        held.extend((x, chain(impl, x)))

    n, _ = rounds(f"chain {PYOPS_STEPS}")
    benchmark.pedantic(lambda: held[1].backward(), setup=untimed(prepare), rounds=n,
                       warmup_rounds=WARMUP)
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


@pytest.mark.parametrize("name", ["rgrad", "micrograd", "micrograd-nogc"])
def test_lecture_network_with_python_tanh(benchmark, name):
    impl = make_impl(name, pytest.importorskip)
    if name == "rgrad":
        from rgrad import Value
    else:
        from micrograd.engine import Value
    benchmark.group = "python ops"
    benchmark.extra_info["impl"] = name
    fresh()
    loss = benchmark.pedantic(timed(impl, _lecture_training), args=(Value,),
                              rounds=PYTHON_OPS_ROUNDS, warmup_rounds=WARMUP)
    _LECTURE_LOSS[name] = loss
    for other, other_loss in _LECTURE_LOSS.items():
        assert loss == pytest.approx(other_loss, rel=1e-9), other
