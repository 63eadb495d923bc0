"""rgrad against PyTorch in float64: every op, composed expressions (the
README's seed example among them) and an MLP's forward and backward, compared
in data and in gradients. Skips where torch is not installed."""
import random

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import rgrad.nn as rnn  # noqa: E402
from rgrad import Value  # noqa: E402
from reference import seed_example  # noqa: E402

REL, ABS = 1e-12, 1e-14   # per op: the same formula, at most an ulp or two apart
REL_DEEP = 1e-9           # composed graphs and MLPs: sums in other orders


def leaf(x):
    return torch.tensor(float(x), dtype=torch.float64, requires_grad=True)


def softplus(v):
    return v.softplus() if isinstance(v, Value) else F.softplus(v)


def run_both(fn, xs):
    """fn on rgrad leaves and on torch leaves holding xs; backward from the
    result. ((rgrad data, rgrad grads), (torch data, torch grads))."""
    rs = [Value(x) for x in xs]
    r = fn(*rs)
    r.backward()
    ts = [leaf(x) for x in xs]
    t = fn(*ts)
    t.backward()
    # a leaf the result does not depend on has grad None in torch, 0 in rgrad
    t_grads = [0.0 if v.grad is None else v.grad.item() for v in ts]
    return (r.data, [v.grad for v in rs]), (t.item(), t_grads)


def assert_match(fn, xs, rel=REL, abs=ABS):
    (rd, rg), (td, tg) = run_both(fn, xs)
    assert rd == pytest.approx(td, rel=rel, abs=abs), "data"
    assert rg == pytest.approx(tg, rel=rel, abs=abs), "grads"


# ---- every op ------------------------------------------------------------------------

# name: (fn over rgrad Values or torch tensors, points in its domain)
OPS = {
    "value_plus_value": (lambda a, b: a + b, [(1.5, -2.25), (-3.0, 0.0), (1e5, 1e-5)]),
    "value_minus_value": (lambda a, b: a - b, [(1.5, -2.25), (0.7, 0.7), (-1e-3, 4.0)]),
    "value_times_value": (lambda a, b: a * b, [(1.5, -2.25), (0.0, 3.0), (-7.0, -0.125)]),
    "value_over_value": (lambda a, b: a / b, [(1.5, -2.25), (0.0, 3.0), (-7.0, 1e-3)]),
    "value_plus_const": (lambda a: a + 2.5, [(-1.0,), (0.0,), (3.25,)]),
    "value_plus_int": (lambda a: a + 3, [(-1.0,), (0.5,)]),
    "value_minus_const": (lambda a: a - 2.5, [(-1.0,), (3.25,)]),
    "value_times_const": (lambda a: a * -1.75, [(-1.0,), (3.25,)]),
    "value_over_const": (lambda a: a / 3.0, [(-1.0,), (3.25,)]),
    "const_plus_value": (lambda a: 2.5 + a, [(-1.0,), (3.25,)]),
    "const_minus_value": (lambda a: 2.5 - a, [(-1.0,), (3.25,)]),
    "const_times_value": (lambda a: -1.75 * a, [(-1.0,), (3.25,)]),
    "const_over_value": (lambda a: 3.0 / a, [(-1.0,), (3.25,), (1e-3,)]),
    "int_over_value": (lambda a: 2 / a, [(-0.5,), (7.0,)]),
    "negation": (lambda a: -a, [(-1.0,), (0.0,), (3.25,)]),
    "square": (lambda a: a**2, [(-1.5,), (0.0,), (3.25,)]),
    "cube": (lambda a: a**3, [(-1.5,), (0.0,), (3.25,)]),
    "reciprocal": (lambda a: a**-1, [(-1.5,), (3.25,)]),
    "inverse_square": (lambda a: a**-2, [(-1.5,), (3.25,)]),
    "zeroth_power": (lambda a: a**0, [(-1.5,), (3.25,)]),
    "first_power": (lambda a: a**1, [(-1.5,), (0.0,)]),
    "square_root": (lambda a: a**0.5, [(0.25,), (3.25,)]),
    "power_one_and_a_half": (lambda a: a**1.5, [(0.0,), (0.25,), (3.25,)]),
    "inverse_square_root": (lambda a: a**-0.5, [(0.25,), (3.25,)]),
    "float_integer_power_of_negative_base": (lambda a: a**3.0, [(-1.5,), (2.0,)]),
    "relu": (lambda a: a.relu(), [(-1.5,), (0.0,), (-0.0,), (3.25,)]),
    "tanh": (lambda a: a.tanh(), [(-1.5,), (0.0,), (0.3,), (8.0,)]),
    "exp": (lambda a: a.exp(), [(-1.5,), (0.0,), (3.25,)]),
    "log": (lambda a: a.log(), [(1e-3,), (1.0,), (3.25,)]),
    "sigmoid": (lambda a: a.sigmoid(), [(-30.0,), (-1.5,), (0.0,), (3.25,)]),
    "softplus": (softplus, [(-10.0,), (-1.5,), (0.0,), (3.25,), (15.0,)]),
    "value_power_value": (lambda a, b: a**b, [(1.5, -2.25), (0.25, 0.5), (3.0, 2.0), (0.0, 2.0)]),
    "const_power_value": (lambda a: 2.0**a, [(-1.5,), (0.0,), (3.25,)]),
    "fractional_const_power_value": (lambda a: 0.3**a, [(-1.5,), (2.0,)]),
}
OP_CASES = [pytest.param(name, xs, id=f"{name}-{'_'.join(map(str, xs))}")
            for name, (_, points) in OPS.items() for xs in points]


@pytest.mark.parametrize("name,xs", OP_CASES)
def test_op_data_and_gradients_match_torch(name, xs):
    assert_match(OPS[name][0], xs)


@pytest.mark.parametrize("name,xs", OP_CASES)
def test_op_gradient_on_a_reused_operand_matches_torch(name, xs):
    # the op's output feeds two later nodes, and its first input is used again
    # afterwards: contributions into one node from several parents must add up
    fn = OPS[name][0]

    def build(*vs):
        y = fn(*vs)
        return y * y + y * vs[0] - vs[0]
    assert_match(build, xs, rel=REL_DEEP)


# ---- composed expressions -----------------------------------------------------------

def test_seed_example_matches_torch():
    assert_match(seed_example, [-4.0, 2.0], rel=REL_DEEP)


def test_seed_example_gives_the_tutorials_numbers_in_torch_and_rgrad():
    # micrograd's README prints 24.7041, 138.8338 and 645.5773: check torch
    # gives them (the reference is right) and rgrad agrees with torch
    (rd, (ra, rb)), (td, (ta, tb)) = run_both(seed_example, [-4.0, 2.0])
    assert (f"{td:.4f}", f"{ta:.4f}", f"{tb:.4f}") == ("24.7041", "138.8338", "645.5773")
    assert (f"{rd:.4f}", f"{ra:.4f}", f"{rb:.4f}") == ("24.7041", "138.8338", "645.5773")


def every_op(a, b, c):
    """One expression through every op, with shared subexpressions."""
    s = a * b + c                      # used four times below
    u = s.tanh() * a.exp() - (b**2 + 1).log()
    u += (c - a).relu() ** 1.5
    u -= 2.0 / (s.sigmoid() + 0.5)
    u *= softplus(b - s) + 3
    u /= 1.5 - (-c) / 4
    w = (u + s) ** 2 + (a**2 + 0.1) ** (c / 3) + 1.7 ** s
    return w / (1 + s * s) - s


@pytest.mark.parametrize("xs", [(0.5, -1.25, 2.0), (-0.75, 0.4, 1.1), (1.3, 2.2, -0.6)])
def test_expression_through_every_op_matches_torch(xs):
    assert_match(every_op, xs, rel=REL_DEEP)


def deep_chain(x, y):
    """A long chain with a node reused at every step."""
    z = x
    for k in range(40):
        z = (z * y + x).tanh() + z * 0.5 - (z - y).relu() / (2 + k)
    return z


def test_long_chain_with_reuse_matches_torch():
    assert_match(deep_chain, [0.3, -0.8], rel=REL_DEEP)


def test_gradients_of_several_leaves_of_a_wide_sum_match_torch():
    xs = [0.1 * k - 1.3 for k in range(25)]

    def wide(*vs):
        total = vs[0]
        for i, v in enumerate(vs[1:], 1):
            total = total + v * vs[i - 1] - (v**2).relu() / (i + 1)
        return total * total
    assert_match(wide, xs, rel=REL_DEEP)


# ---- an MLP ----------------------------------------------------------------------------

def torch_mlp_params(model):
    """model's weights as torch leaves: for each layer, W (nout x nin) and b."""
    params = []
    for layer in model.layers:
        W = torch.tensor([[p.data for p in n.w] for n in layer.neurons],
                         dtype=torch.float64, requires_grad=True)
        b = torch.tensor([n.b.data for n in layer.neurons],
                         dtype=torch.float64, requires_grad=True)
        params.append((W, b))
    return params


def torch_mlp(params, X):
    """Each neuron is relu(b + w . x), but the last layer is linear."""
    h = X
    for k, (W, b) in enumerate(params):
        h = h @ W.T + b
        if k < len(params) - 1:
            h = torch.relu(h)
    return h


def rgrad_forward(model, x, by_neuron):
    """model(x), or the same layer by layer calling each Neuron itself (the
    op-by-op path, where model(x) builds a layer in one C call)."""
    if not by_neuron:
        out = model(x)
        return out if isinstance(out, list) else [out]
    for layer in model.layers:
        x = [n(x) for n in layer.neurons]
    return x


@pytest.mark.parametrize("nin,nouts", [(3, [4, 4, 1]), (2, [5, 3]), (4, [8, 6, 2])])
@pytest.mark.parametrize("by_neuron", [False, True], ids=["model_call", "neuron_by_neuron"])
def test_mlp_loss_and_gradients_match_torch(nin, nouts, by_neuron):
    random.seed(1234 + nin)
    model = rnn.MLP(nin, nouts)
    for n in (n for layer in model.layers for n in layer.neurons):
        n.b.data = random.uniform(-0.5, 0.5)   # nonzero biases, so their use is checked
    X = [[random.uniform(-2, 2) for _ in range(nin)] for _ in range(6)]
    Y = [[random.uniform(-1, 1) for _ in range(nouts[-1])] for _ in range(6)]

    # rgrad: mean squared error over the batch, inputs as Values too
    xs = [[Value(v) for v in row] for row in X]
    loss = Value(0.0)
    for row, ys in zip(xs, Y):
        for out, y in zip(rgrad_forward(model, row, by_neuron), ys):
            loss += (out - y) ** 2
    loss = loss / len(X)
    loss.backward()

    params = torch_mlp_params(model)
    Xt = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    pred = torch_mlp(params, Xt)
    t_loss = ((pred - torch.tensor(Y, dtype=torch.float64)) ** 2).sum() / len(X)
    t_loss.backward()

    assert loss.data == pytest.approx(t_loss.item(), rel=REL_DEEP)
    for layer, (W, b) in zip(model.layers, params):
        # no layer is dead (all its relus off), where grads would agree trivially
        assert W.grad.abs().sum().item() > 0
        r_w = [[p.grad for p in n.w] for n in layer.neurons]
        r_b = [n.b.grad for n in layer.neurons]
        assert r_w == [pytest.approx(row, rel=REL_DEEP, abs=1e-12) for row in W.grad.tolist()]
        assert r_b == pytest.approx(b.grad.tolist(), rel=REL_DEEP, abs=1e-12)
    r_x = [[v.grad for v in row] for row in xs]
    assert r_x == [pytest.approx(row, rel=REL_DEEP, abs=1e-12) for row in Xt.grad.tolist()]

