"""Every op's gradient against central finite differences of the same function
computed in plain Python floats (math), at several points, plus composed
expressions. The points keep a step's width away from kinks and poles."""
import math

import pytest

from rgrad import Value
from reference import seed_example

EPS = 1e-6              # relative step: h = EPS * max(1, |x|)
REL, ABS = 1e-5, 1e-6   # central differences are good to ~h**2 and ~ulp(f) / h


# each op written once, for an rgrad Value or a plain float
def relu(v):
    return v.relu() if isinstance(v, Value) else max(v, 0.0)


def tanh(v):
    return v.tanh() if isinstance(v, Value) else math.tanh(v)


def exp(v):
    return v.exp() if isinstance(v, Value) else math.exp(v)


def log(v):
    return v.log() if isinstance(v, Value) else math.log(v)


def sigmoid(v):
    return v.sigmoid() if isinstance(v, Value) else 1.0 / (1.0 + math.exp(-v))


def softplus(v):
    return v.softplus() if isinstance(v, Value) else math.log1p(math.exp(v))


def central_differences(f, xs):
    grads = []
    for i, x in enumerate(xs):
        h = EPS * max(1.0, abs(x))
        up, down = list(xs), list(xs)
        up[i] += h
        down[i] -= h
        grads.append((f(*up) - f(*down)) / (up[i] - down[i]))
    return grads


def rgrad_gradient(f, xs):
    vs = [Value(x) for x in xs]
    out = f(*vs)
    out.backward()
    return [v.grad for v in vs]


def assert_gradient_matches_finite_differences(f, xs):
    want = central_differences(f, xs)
    got = rgrad_gradient(f, xs)
    assert got == pytest.approx(want, rel=REL, abs=ABS)


OPS = {
    "value_plus_value": (lambda a, b: a + b, [(1.5, -2.25), (-3.0, 0.0)]),
    "value_minus_value": (lambda a, b: a - b, [(1.5, -2.25), (0.7, 0.7)]),
    "value_times_value": (lambda a, b: a * b, [(1.5, -2.25), (0.0, 3.0), (-7.0, -0.125)]),
    "value_over_value": (lambda a, b: a / b, [(1.5, -2.25), (0.0, 3.0), (-7.0, 0.01)]),
    "value_plus_const": (lambda a: a + 2.5, [(-1.0,), (3.25,)]),
    "value_minus_const": (lambda a: a - 2.5, [(-1.0,), (3.25,)]),
    "value_times_const": (lambda a: a * -1.75, [(-1.0,), (3.25,)]),
    "value_over_const": (lambda a: a / 3.0, [(-1.0,), (3.25,)]),
    "const_plus_value": (lambda a: 2.5 + a, [(-1.0,), (3.25,)]),
    "const_minus_value": (lambda a: 2.5 - a, [(-1.0,), (3.25,)]),
    "const_times_value": (lambda a: -1.75 * a, [(-1.0,), (3.25,)]),
    "const_over_value": (lambda a: 3.0 / a, [(-1.0,), (3.25,), (0.05,)]),
    "negation": (lambda a: -a, [(-1.0,), (3.25,)]),
    "square": (lambda a: a**2, [(-1.5,), (0.0,), (3.25,)]),
    "cube": (lambda a: a**3, [(-1.5,), (3.25,)]),
    "reciprocal": (lambda a: a**-1, [(-1.5,), (3.25,)]),
    "inverse_cube": (lambda a: a**-3, [(-1.5,), (0.8,)]),
    "zeroth_power": (lambda a: a**0, [(-1.5,), (3.25,)]),
    "square_root": (lambda a: a**0.5, [(0.25,), (3.25,)]),
    "power_two_and_a_half": (lambda a: a**2.5, [(0.25,), (3.25,)]),
    "inverse_square_root": (lambda a: a**-0.5, [(0.25,), (3.25,)]),
    "relu": (relu, [(-1.5,), (0.7,), (3.25,)]),
    "tanh": (tanh, [(-1.5,), (0.0,), (0.3,), (2.0,)]),
    "exp": (exp, [(-1.5,), (0.0,), (3.25,)]),
    "log": (log, [(0.01,), (1.0,), (3.25,)]),
    "sigmoid": (sigmoid, [(-4.0,), (0.0,), (3.25,)]),
    "softplus": (softplus, [(-4.0,), (0.0,), (3.25,)]),
    "value_power_value": (lambda a, b: a**b, [(1.5, -2.25), (0.25, 0.5), (3.0, 2.0)]),
    "const_power_value": (lambda a: 2.0**a, [(-1.5,), (0.0,), (3.25,)]),
    "fractional_const_power_value": (lambda a: 0.3**a, [(-1.5,), (2.0,)]),
}
OP_CASES = [pytest.param(name, xs, id=f"{name}-{'_'.join(map(str, xs))}")
            for name, (_, points) in OPS.items() for xs in points]


@pytest.mark.parametrize("name,xs", OP_CASES)
def test_op_gradient_matches_central_differences(name, xs):
    assert_gradient_matches_finite_differences(OPS[name][0], xs)


@pytest.mark.parametrize("name,xs", OP_CASES)
def test_op_gradient_through_a_nonlinear_use_matches_central_differences(name, xs):
    # the op inside a product with itself and its input: a wrong local
    # derivative that happens to be right at the top of a graph shows here
    fn = OPS[name][0]
    assert_gradient_matches_finite_differences(
        lambda *vs: fn(*vs) * (fn(*vs) + vs[0] * 0.75), xs)


@pytest.mark.parametrize("xs", [(-4.0, 2.0), (1.5, -0.5), (0.3, 0.9)])
def test_seed_example_gradient_matches_central_differences(xs):
    assert_gradient_matches_finite_differences(
        lambda a, b: seed_example(a, b, relu=relu), xs)


def every_op(a, b, c):
    s = a * b + c
    u = tanh(s) * exp(a) - log(b**2 + 1)
    u += relu(c - a) ** 1.5
    u -= 2.0 / (sigmoid(s) + 0.5)
    u *= softplus(b - s) + 3
    u /= 1.5 - (-c) / 4
    w = (u + s) ** 2 + (a**2 + 0.1) ** (c / 3) + 1.7**s
    return w / (1 + s * s) - s


@pytest.mark.parametrize("xs", [(0.5, -1.25, 2.0), (-0.75, 0.4, 1.1), (1.3, 2.2, -0.6)])
def test_expression_through_every_op_gradient_matches_central_differences(xs):
    assert_gradient_matches_finite_differences(every_op, xs)
