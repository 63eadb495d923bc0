"""A Hessian-vector product against one gradient, on a function of 1,000
inputs built once (f below): `grad` is rgrad.grad(f, xs) as numbers (one
pass back over f's graph); `hvp` builds f's gradient as a graph
(create_graph) and runs one weighted pass back over it, which is what
rgrad.hvp does after building f. Same rounds for both; bench/ratios.py
shows them side by side. Nothing asserts on time."""
import math

import pytest

import rgrad
from benchlib import WARMUP, fresh

N = 1_000


def f(xs):
    """A chain of couplings: sum of tanh(x_i * x_{i+1}) + x_i**2 * sigmoid(x_{i+1})
    + exp(-x_i**2 / 2)."""
    total = 0
    for a, b in zip(xs, xs[1:] + xs[:1]):
        total = total + (a * b).tanh() + a ** 2 * b.sigmoid() + (-(a * a) * 0.5).exp()
    return total


@pytest.fixture(scope="module")
def problem():
    xs = rgrad.values([math.sin(k) for k in range(N)])
    y = f(xs)
    v = [math.cos(k) for k in range(N)]
    return xs, y, v


def hvp(xs, y, v):
    g = rgrad.grad(y, xs, create_graph=True)
    return rgrad.grad(g, xs, grad_outputs=v)


@pytest.mark.parametrize("what", ["grad", "hvp"])
def test_hvp_against_one_gradient(benchmark, what, problem):
    xs, y, v = problem
    got = hvp(xs, y, v)                       # checked against rgrad.hvp once
    want = rgrad.hvp(f, [x.data for x in xs], v)
    assert all(math.isclose(a.data, float(b), rel_tol=1e-12, abs_tol=1e-12)
               for a, b in zip(got, want))
    benchmark.group = f"hvp {N:,} inputs"
    benchmark.extra_info.update(impl=f"rgrad-{what}", inputs=N)
    fresh()
    run = (lambda: rgrad.grad(y, xs)) if what == "grad" else (lambda: hvp(xs, y, v))
    benchmark.pedantic(run, rounds=20, iterations=1, warmup_rounds=WARMUP)
