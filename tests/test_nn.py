"""rgrad.nn against micrograd.nn, the demo loop and make_moons (the CLI: test_cli.py)."""
import gc
import random

import pytest

import rgrad.nn as rnn
from rgrad import Value
from rgrad.data import make_moons
from rgrad.demo import train

mnn = pytest.importorskip("micrograd.nn")
from micrograd.engine import Value as MGValue  # noqa: E402


def _pair(seed, nin, nouts):
    random.seed(seed)
    m = mnn.MLP(nin, nouts)
    random.seed(seed)
    r = rnn.MLP(nin, nouts)
    return m, r


def test_mlp_draws_the_same_weights_as_micrograd():
    m, r = _pair(7, 3, [4, 4, 1])
    assert [p.data for p in r.parameters()] == [p.data for p in m.parameters()]


def test_modules_have_micrograds_repr_and_parameter_counts():
    m, r = _pair(1, 2, [16, 16, 1])
    assert repr(r) == repr(m)
    assert len(r.parameters()) == len(m.parameters()) == 337
    assert repr(r.layers[0].neurons[0]) == "ReLUNeuron(2)"
    assert isinstance(r, rnn.Module)


def test_layer_of_one_neuron_returns_a_value_and_neuron_takes_numbers():
    random.seed(0)
    layer = rnn.Layer(2, 1, nonlin=False)
    out = layer([1.0, Value(2.0)])
    assert isinstance(out, Value)
    n = layer.neurons[0]
    assert out.data == n.b.data + n.w[0].data * 1.0 + n.w[1].data * 2.0


def test_mlp_forward_and_backward_match_micrograd():
    m, r = _pair(3, 3, [5, 4, 1])
    x = [0.5, -1.25, 2.0]
    ym, yr = m([MGValue(v) for v in x]), r([Value(v) for v in x])
    ym.backward()
    yr.backward()
    assert yr.data == ym.data
    assert [p.grad for p in r.parameters()] == pytest.approx(
        [p.grad for p in m.parameters()], rel=1e-12, abs=1e-15)


def test_zero_grad_zeroes_parameters_only():
    random.seed(0)
    model = rnn.MLP(2, [3, 1])
    x = Value(1.0)
    y = model([x, x])
    y.backward()
    model.zero_grad()
    assert all(p.grad == 0.0 for p in model.parameters())
    assert {type(p.grad) for p in model.parameters()} == {int}     # micrograd's 0
    assert x.grad != 0.0 and y.grad == 1.0


def test_zero_grad_sets_each_parameter_that_is_not_a_plain_value_itself():
    """zero_grad sets all grads in one C call only when every parameter is a
    plain Value; otherwise each `p.grad = 0` runs, as micrograd's loop does."""
    seen = []

    class Traced(Value):
        @property
        def grad(self):
            return Value.grad.fget(self)

        @grad.setter
        def grad(self, g):
            seen.append(g)
            Value.grad.fset(self, g)

    class Model(rnn.Module):
        def __init__(self, params):
            self.params = params

        def parameters(self):
            return self.params

    a, b = Value(1.0), Traced(2.0)
    (a * b).backward()
    Model([a, b]).zero_grad()
    assert (a.grad, b.grad, seen) == (0, 0, [0])
    c = Value(3.0)
    (c * c).backward()
    Model(p for p in [c]).zero_grad()                 # a generator, read once
    assert c.grad == 0 and type(c.grad) is int


def _demo_loop(V, MLP, steps=100, samples=100, after_step=lambda: None):
    """micrograd's demo loop, written as its notebook writes it; per step, the
    loss and accuracy before the update and the parameters after it.
    after_step() runs once each step's graph is dropped."""
    random.seed(1337)
    X, labels = make_moons(samples, noise=0.1, seed=1337)
    y = [2 * label - 1 for label in labels]
    model = MLP(2, [16, 16, 1])

    def step(k):
        inputs = [list(map(V, row)) for row in X]
        scores = list(map(model, inputs))
        losses = [(1 + -yi * si).relu() for yi, si in zip(y, scores)]
        data_loss = sum(losses) * (1.0 / len(losses))
        reg_loss = 1e-4 * sum((p * p for p in model.parameters()))
        total = data_loss + reg_loss
        acc = sum((yi > 0) == (si.data > 0) for yi, si in zip(y, scores)) / len(y)
        model.zero_grad()
        total.backward()
        lr = 1.0 - 0.9 * k / steps
        for p in model.parameters():
            p.data -= lr * p.grad
        return total.data, acc, [p.data for p in model.parameters()]

    history = []
    for k in range(steps):
        history.append(step(k))
        after_step()
    return history


@pytest.fixture(scope="module")
def micrograds_demo():
    """micrograd's whole demo: 100 steps on 100 samples, a minute or two.
    Its graphs are cyclic garbage; automatic collection would trace them again
    and again as they pile up, so it is off, and each step's graph is collected
    once, after the step, from the youngest generation (which, with the
    collector off, holds just what was made since)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _demo_loop(MGValue, mnn.MLP, after_step=lambda: gc.collect(0))
    finally:
        if was_enabled:
            gc.enable()


# The step-0 loss is micrograd's to the bit (the forward arithmetic is the same).
# Gradients differ in the last bits (each engine sums a node's contributions in
# its own topological order), so later losses and parameters agree to LOSS_REL
# and PARAM_REL relative (measured: 1e-15 and 1e-13 over the whole demo).
LOSS_REL, PARAM_REL = 1e-13, 1e-11


def _assert_trains_as_micrograd(history, mg):
    """history: (loss, accuracy) per step, as train() reports them."""
    assert len(history) == len(mg) == 100
    assert history[0][0] == mg[0][0]
    for k, ((rl, ra), (ml, ma, _)) in enumerate(zip(history, mg)):
        assert rl == pytest.approx(ml, rel=LOSS_REL), k
        assert ra == ma, k


@pytest.mark.slow
def test_demo_loop_matches_micrograd_at_every_step(micrograds_demo):
    history = _demo_loop(Value, rnn.MLP)
    _assert_trains_as_micrograd([(loss, acc) for loss, acc, _ in history], micrograds_demo)
    for k, ((_, _, rp), (_, _, mp)) in enumerate(zip(history, micrograds_demo)):
        assert rp == pytest.approx(mp, rel=PARAM_REL, abs=1e-15), k


@pytest.mark.slow
@pytest.mark.parametrize("replay", [False, True], ids=["eager", "replay"])
def test_rgrads_own_demo_trains_as_micrograds_loop_does(micrograds_demo, replay):
    model, history = train(log=None, replay=replay)
    _assert_trains_as_micrograd(history, micrograds_demo)
    assert [p.data for p in model.parameters()] == pytest.approx(
        micrograds_demo[-1][2], rel=PARAM_REL, abs=1e-15)


def test_demo_reaches_95_percent_accuracy():
    _, history = train(log=None)
    assert history[-1][1] >= 0.95


def test_make_moons_is_seeded_balanced_and_two_dimensional():
    X, y = make_moons(101, noise=0.1, seed=5)
    assert (X, y) == make_moons(101, noise=0.1, seed=5)
    assert X != make_moons(101, noise=0.1, seed=6)[0]
    assert len(X) == 101 and all(len(p) == 2 for p in X)
    assert sorted(set(y)) == [0, 1] and y.count(0) == 50
    X0, y0 = make_moons(10, noise=0.0, seed=0)
    for (a, b), label in zip(X0, y0):   # noiseless points lie on their moon
        cx, cy = (0.0, 0.0) if label == 0 else (1.0, 0.5)
        assert (a - cx) ** 2 + (b - cy) ** 2 == pytest.approx(1.0)


def test_make_moons_rejects_bad_arguments():
    with pytest.raises(ValueError):
        make_moons(1)
    with pytest.raises(ValueError):
        make_moons(10, noise=-1)
