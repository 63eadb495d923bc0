"""rgrad.gradcheck: passes for rgrad's own ops, catches and names a wrong
backward, honours eps, atol, rtol and raise_exception, leaves the caller's
Values alone, and reaches the verdict torch.autograd.gradcheck reaches."""
import math

import pytest

import rgrad
from rgrad import Value
from rgrad.gradcheck import GradcheckError, gradcheck


# ---- every op passes -----------------------------------------------------------

# (function of Values, points) for every op in every form; the points stay
# well away from kinks (relu at 0) and poles (division by 0, log at 0)
OPS = {
    "value_plus_value": (lambda a, b: a + b, [(1.5, -2.25), (-3.0, 0.0)]),
    "value_minus_value": (lambda a, b: a - b, [(1.5, -2.25), (0.7, 0.7)]),
    "value_times_value": (lambda a, b: a * b, [(1.5, -2.25), (0.0, 3.0)]),
    "value_over_value": (lambda a, b: a / b, [(1.5, -2.25), (-7.0, 0.5)]),
    "value_plus_const": (lambda a: a + 2.5, [(-1.0,), (3.25,)]),
    "value_minus_const": (lambda a: a - 2.5, [(-1.0,), (3.25,)]),
    "value_times_const": (lambda a: a * -1.75, [(-1.0,), (3.25,)]),
    "value_over_const": (lambda a: a / 3.0, [(-1.0,), (3.25,)]),
    "const_plus_value": (lambda a: 2.5 + a, [(-1.0,)]),
    "const_minus_value": (lambda a: 2.5 - a, [(-1.0,)]),
    "const_times_value": (lambda a: -1.75 * a, [(3.25,)]),
    "const_over_value": (lambda a: 3.0 / a, [(-1.0,), (0.5,)]),
    "negation": (lambda a: -a, [(-1.0,), (3.25,)]),
    "square": (lambda a: a**2, [(-1.5,), (0.0,)]),
    "cube": (lambda a: a**3, [(-1.5,), (2.0,)]),
    "reciprocal": (lambda a: a**-1, [(-1.5,), (3.25,)]),
    "square_root": (lambda a: a**0.5, [(0.7,), (4.0,)]),
    "fractional_power": (lambda a: a**-1.5, [(0.9,), (2.5,)]),
    "relu": (lambda a: a.relu(), [(-1.0,), (2.5,)]),
    "tanh": (lambda a: a.tanh(), [(-1.2,), (0.0,), (0.8,)]),
    "exp": (lambda a: a.exp(), [(-2.0,), (1.5,)]),
    "log": (lambda a: a.log(), [(0.3,), (5.0,)]),
    "sigmoid": (lambda a: a.sigmoid(), [(-2.0,), (0.0,), (3.0,)]),
    "softplus": (lambda a: a.softplus(), [(-2.0,), (0.0,), (3.0,)]),
    "value_pow_value": (lambda a, b: a**b, [(1.5, 2.5), (0.8, -1.3)]),
    "const_pow_value": (lambda a: 2.5**a, [(-1.0,), (1.7,)]),
    "composed": (lambda a, b, c: ((a * b).tanh() + (c**2 + 1).log() - b / c).sigmoid()
                 * (a - c).exp(), [(0.3, -1.2, 0.9)]),
    "input_used_twice": (lambda a, b: a * a + a / b, [(1.3, 2.0)]),
    "input_ignored": (lambda a, b: a * 3.0, [(1.3, 2.0)]),
}


@pytest.mark.parametrize("name,point", [(n, p) for n, (_, ps) in OPS.items() for p in ps])
def test_gradcheck_passes_every_op_at_smooth_points(name, point):
    fn = OPS[name][0]
    assert gradcheck(fn, point) is True


def test_gradcheck_passes_an_mlp_loss_as_a_function_of_its_inputs():
    import random
    from rgrad.nn import MLP
    random.seed(3)
    model = MLP(3, [4, 4, 1])
    fn = lambda a, b, c: (model([a, b, c]) - 0.5) ** 2  # noqa: E731
    assert gradcheck(fn, [0.3, -0.7, 1.1]) is True


# ---- a wrong backward fails, and is named ---------------------------------------

def _mul_function(factor_a, factor_b):
    """a * b as an rgrad.Function whose gradients are scaled by the factors
    (1, 1 is the true derivative)."""
    class Mul(rgrad.Function):
        @staticmethod
        def forward(a, b):
            return a * b

        @staticmethod
        def backward(grad, out, a, b):
            return (factor_a * b * grad, factor_b * a * grad)
    return Mul


def test_gradcheck_passes_a_correct_function():
    Mul = _mul_function(1.0, 1.0)
    assert gradcheck(lambda a, b: Mul.apply(a, b).tanh(), [0.6, -1.4]) is True


def test_gradcheck_raises_for_a_function_whose_backward_is_off_by_a_factor():
    Mul = _mul_function(1.0, 2.0)   # the second input's gradient is doubled
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda a, b: Mul.apply(a, b), [0.6, -1.4])
    assert isinstance(info.value, RuntimeError)
    message = str(info.value)
    assert "input 1 (value -1.4)" in message
    assert "input 0" not in message         # the first input's gradient is right
    assert "analytic gradient 1.2" in message   # 2 * a
    numeric = float(message.split("numeric gradient ")[1].split(",")[0])
    assert numeric == pytest.approx(0.6, rel=1e-6)
    assert "tolerance" in message


def test_gradcheck_names_every_disagreeing_input():
    Mul = _mul_function(3.0, 0.5)
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda a, b: Mul.apply(a, b) + 1.0, [2.0, 5.0])
    message = str(info.value)
    assert "input 0 (value 2.0)" in message and "input 1 (value 5.0)" in message
    assert "2 of 2 inputs" in message


def test_gradcheck_raise_exception_false_returns_false_instead_of_raising():
    Mul = _mul_function(1.0, 1.1)
    fn = lambda a, b: Mul.apply(a, b)  # noqa: E731
    assert gradcheck(fn, [0.6, -1.4], raise_exception=False) is False
    assert gradcheck(lambda a, b: a * b, [0.6, -1.4], raise_exception=False) is True


def test_gradcheck_treats_a_nan_gradient_as_a_disagreement():
    class NanGrad(rgrad.Function):
        @staticmethod
        def forward(a):
            return 2.0 * a

        @staticmethod
        def backward(grad, out, a):
            return (math.nan,)
    assert gradcheck(lambda a: NanGrad.apply(a), [1.0], raise_exception=False) is False


# ---- eps, atol, rtol ------------------------------------------------------------

def test_gradcheck_evaluates_fn_at_x_plus_and_minus_eps_on_each_input_in_turn():
    seen = []

    def fn(a, b):
        seen.append((a.data, b.data))
        return a * b

    assert gradcheck(fn, [1.0, 3.0], eps=0.25, atol=1e-9, rtol=0.0)
    assert seen[0] == (1.0, 3.0)             # the analytic pass, once
    assert sorted(seen[1:]) == sorted([(1.25, 3.0), (0.75, 3.0), (1.0, 3.25), (1.0, 2.75)])


def test_gradcheck_uses_the_given_eps_in_the_central_difference():
    # d/dx x**3 at 1 is 3; the central difference is exactly 3 + eps**2
    cube = lambda a: a**3  # noqa: E731
    assert gradcheck(cube, [1.0], eps=0.1, raise_exception=False) is False   # off by 0.01
    assert gradcheck(cube, [1.0], eps=1e-3) is True
    with pytest.raises(GradcheckError, match=r"eps=0\.1\b"):
        gradcheck(cube, [1.0], eps=0.1)


def _scaled(scale, shift=0.0, slope=100.0):
    """slope * a, whose backward reports scale * slope + shift."""
    class Scaled(rgrad.Function):
        @staticmethod
        def forward(a):
            return slope * a

        @staticmethod
        def backward(grad, out, a):
            return ((scale * slope + shift) * grad,)
    return lambda a: Scaled.apply(a)


def test_gradcheck_atol_bounds_the_absolute_error():
    fn = _scaled(1.0, shift=0.01)           # analytic 100.01, numeric 100
    assert gradcheck(fn, [0.5], atol=0.02, rtol=0.0) is True
    assert gradcheck(fn, [0.5], atol=0.005, rtol=0.0, raise_exception=False) is False


def test_gradcheck_rtol_bounds_the_error_relative_to_the_numeric_gradient():
    fn = _scaled(1.0, shift=1.0)            # analytic 101, numeric 100: 1% off
    assert gradcheck(fn, [0.5], atol=0.0, rtol=0.02) is True
    assert gradcheck(fn, [0.5], atol=0.0, rtol=0.005, raise_exception=False) is False
    # the same absolute error on a gradient of 1 is 100% off
    with pytest.raises(GradcheckError, match="rtol=0.02"):
        gradcheck(_scaled(1.0, shift=1.0, slope=1.0), [0.5], atol=0.0, rtol=0.02)


def test_gradcheck_rejects_a_non_positive_eps_and_negative_tolerances():
    for kwargs in ({"eps": 0.0}, {"eps": -1e-6}, {"atol": -1.0}, {"rtol": -0.1}):
        with pytest.raises(ValueError):
            gradcheck(lambda a: a * 2, [1.0], **kwargs)


# ---- the caller's Values --------------------------------------------------------

def test_gradcheck_reads_only_the_data_of_value_inputs_and_leaves_them_unchanged():
    a, b = Value(0.4), Value(-1.1)
    a.grad, b.grad = 7.5, -2.0
    keep = a * 1.0                          # a graph already hanging off a
    assert gradcheck(lambda x, y: (x * y).tanh() + x.exp(), [a, b]) is True
    assert (a.data, a.grad, b.data, b.grad) == (0.4, 7.5, -1.1, -2.0)
    assert keep.grad == 0.0
    Mul = _mul_function(2.0, 1.0)
    with pytest.raises(GradcheckError, match=r"input 0 \(value 0\.4\)"):
        gradcheck(lambda x, y: Mul.apply(x, y), [a, b])
    assert (a.data, a.grad, b.data, b.grad) == (0.4, 7.5, -1.1, -2.0)


def test_gradcheck_accepts_a_mix_of_values_and_plain_numbers():
    assert gradcheck(lambda x, y, z: x * y - z, [Value(2.0), 3, 0.5]) is True


def test_gradcheck_leaves_the_grads_of_values_fn_closes_over_unchanged():
    w = Value(1.5)
    w.grad = 0.25
    assert gradcheck(lambda x: (w * x).tanh() + w, [0.3]) is True
    assert (w.data, w.grad) == (1.5, 0.25)


def test_gradcheck_rejects_inputs_that_are_not_numbers():
    with pytest.raises(TypeError, match="input 1"):
        gradcheck(lambda a, b: a + b, [1.0, "2"])


def test_gradcheck_rejects_fn_that_does_not_return_a_value():
    with pytest.raises(TypeError, match="one Value"):
        gradcheck(lambda a: a.data * 2, [1.0])


# ---- errors from fn -------------------------------------------------------------

def _notes(exc):
    return " ".join([str(exc)] + list(getattr(exc, "__notes__", [])))


def test_gradcheck_lets_an_error_at_a_perturbed_point_through_naming_the_input():
    # log is defined at 1e-7 but not at 1e-7 - 1e-6
    with pytest.raises(ValueError) as info:
        gradcheck(lambda a, b: a * b.log(), [2.0, 1e-7])
    notes = _notes(info.value)
    assert "input 1 (value 1e-07)" in notes
    assert "x - eps" in notes


def test_gradcheck_lets_an_error_at_the_given_point_through():
    with pytest.raises(ZeroDivisionError) as info:
        gradcheck(lambda a: 1.0 / a, [0.0])
    assert "[0.0]" in _notes(info.value)


# ---- the same verdict as torch ----------------------------------------------------

def _torch_mul(torch, factor_a, factor_b):
    class Mul(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, grad):
            a, b = ctx.saved_tensors
            return factor_a * b * grad, factor_b * a * grad
    return Mul


@pytest.mark.parametrize("case", [
    "smooth", "powers", "relu_and_sigmoid", "good_function", "wrong_function",
    "slightly_wrong_function", "coarse_eps", "fine_eps", "tight_tolerance"])
def test_gradcheck_agrees_with_torch_gradcheck(case):
    torch = pytest.importorskip("torch")
    body = {
        "smooth": lambda a, b, c: (a * b).tanh() + (c * c + 1).log() - b / c + (a - c).exp(),
        "powers": lambda a, b, c: a**2 * b**3 + c**-1 + (c * c) ** 0.5,
        "relu_and_sigmoid": lambda a, b, c: (a - b).relu() * c.sigmoid() + (2.0 - a) / (b + 3),
    }
    kwargs = {"coarse_eps": {"eps": 0.1}, "tight_tolerance": {"eps": 1e-4, "atol": 1e-12, "rtol": 1e-12}}
    factors = {"good_function": (1.0, 1.0), "wrong_function": (1.0, 3.0),
               "slightly_wrong_function": (1.002, 1.0)}
    point = [0.7, -1.3, 0.9]
    if case in body:
        r_fn = t_fn = body[case]
    elif case in factors:
        R, T = _mul_function(*factors[case]), _torch_mul(torch, *factors[case])
        r_fn = lambda a, b, c: R.apply(a, b) + c  # noqa: E731
        t_fn = lambda a, b, c: T.apply(a, b) + c  # noqa: E731
    else:   # a cube, whose central difference is off by eps**2
        r_fn = t_fn = lambda a, b, c: a**3 + b**3 * c
    options = dict({"eps": 1e-6, "atol": 1e-5, "rtol": 1e-3}, **kwargs.get(case, {}))
    ours = gradcheck(r_fn, point, raise_exception=False, **options)
    tensors = tuple(torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in point)
    theirs = torch.autograd.gradcheck(t_fn, tensors, raise_exception=False, **options)
    assert ours == theirs
    expected = {"wrong_function": False, "slightly_wrong_function": False,
                "coarse_eps": False, "tight_tolerance": False}
    assert ours == expected.get(case, True)   # both ways are exercised
