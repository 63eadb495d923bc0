"""A hypothesis state machine that drives rgrad through random sequences of
what a user does (make leaves, apply ops, backward from any node, change
leaves and replay with forward(), update parameters, drop Values, collect)
and keeps, for every rgrad Value it holds, a micrograd twin built by the same
ops. After every step each surviving Value's data and grad must equal its
twin's.

micrograd has no tanh, exp, log, sigmoid, softplus, Value ** Value or
c ** Value: their twins are micrograd Values made the way micrograd's own
extensions are, Value(data, children, op) with a _backward closure.

Replay on the micrograd side: every twin node carries `_recompute`, which
gives its data from its children's, so the twin graph (including the nodes
micrograd makes inside `a - b` and `a / b`) is recomputed in place, in
topological order, and its non-leaf grads zeroed, as rgrad's forward() does.

Domains: every op checks, through predicates registered on its operands'
twins, that the operand stays where both engines are defined and where
micrograd's backward cannot raise (pow bases away from 0 and positive for
fractional exponents, log and Value ** Value bases >= 0.1, exp of |x| <= 20).
A step that would break a predicate, or make data past LIMIT, is skipped.
"""
import gc
import math
import random

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, invariant, precondition,
                                 rule, run_state_machine_as_test)

from reference import Cube, py_tanh
import rgrad
from rgrad import Value

MG = pytest.importorskip("micrograd.engine").Value

LIMIT = 1e6        # no node keeps data past this
HUGE = 1e100       # past this, an infinity and a finite number may match (close)
SETTINGS = settings(max_examples=60, stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.filter_too_much])


class Unsafe(Exception):
    """The step would leave the domain where both engines are defined."""


def close(r, m):
    """Whether rgrad's number r matches micrograd's m. Non-finite values match
    only in kind: NaN with NaN, an infinity with one of the same sign. Past
    HUGE, where summing in another order can overflow on one side only, an
    infinity also matches a finite number of its sign."""
    if math.isnan(r) or math.isnan(m):
        return math.isnan(r) and math.isnan(m)
    if math.isinf(r) or math.isinf(m):
        return (r > 0) == (m > 0) and min(abs(r), abs(m)) > HUGE
    return math.isclose(r, m, rel_tol=1e-9, abs_tol=1e-12)


def _keepable(x):
    return math.isfinite(x) and abs(x) <= LIMIT


def _current(node):
    return node.data


def _guards(node):
    return node.__dict__.setdefault("_guards", [])


def _allowed(node, x):
    return _keepable(x) and all(pred(x) for pred in _guards(node))


# ---- micrograd twins, one primitive node at a time --------------------------------

def _twin(recompute, build, guards=()):
    """A micrograd node: build() makes it; recompute(get) gives its data from
    get(child); guards are (child, predicate) pairs the child must keep."""
    for child, pred in guards:
        if not pred(child.data):
            raise Unsafe
    try:
        x = recompute(_current)
    except (ArithmeticError, ValueError):
        raise Unsafe from None
    if not _keepable(x):
        raise Unsafe
    out = build()
    out._recompute = recompute
    for child, pred in guards:
        _guards(child).append(pred)
    return out


def _val(get, y):
    return get(y) if isinstance(y, MG) else y


def t_add(x, y):                  # micrograd's '+' (y a node or a constant)
    return _twin(lambda get: get(x) + _val(get, y), lambda: x + y)


def t_mul(x, y):                  # micrograd's '*'
    return _twin(lambda get: get(x) * _val(get, y), lambda: x * y)


def _pow_domain(k):
    if k in (1, 2, 3):
        return lambda v: True
    if float(k).is_integer():     # k <= 0: backward takes x ** (k - 1)
        return lambda v: abs(v) >= 0.1
    return lambda v: v >= 0.1     # a fractional exponent


def t_pow(x, k):                  # micrograd's '**k'
    return _twin(lambda get: get(x) ** k, lambda: x ** k, [(x, _pow_domain(k))])


def t_relu(x):
    return _twin(lambda get: 0 if get(x) < 0 else get(x), lambda: x.relu())


def t_custom(op, children, f, derivatives, guards=()):
    """A node made as micrograd's extensions make one: data f(children's data);
    backward adds derivative(out.data, children's data) * out.grad into each."""
    children = tuple(children)

    def build():
        out = MG(f(*[c.data for c in children]), children, op)

        def _backward():
            xs = [c.data for c in children]
            for c, d in zip(children, derivatives):
                c.grad += d(out.data, *xs) * out.grad
        out._backward = _backward
        return out
    return _twin(lambda get: f(*[get(c) for c in children]), build,
                 [(c, pred) for c, pred in guards])


def _sigmoid(x):
    e = math.exp(-abs(x))
    return 1.0 / (1.0 + e) if x >= 0.0 else e / (1.0 + e)


def _bounded(v):
    return abs(v) <= 20.0


def _base(v):
    return 0.1 <= v <= 10.0


def _exponent(v):
    return abs(v) <= 3.0


def t_tanh(x):
    return t_custom("tanh", [x], math.tanh, [lambda z, a: 1.0 - z * z])


def t_exp(x):
    return t_custom("exp", [x], math.exp, [lambda z, a: z], [(x, _bounded)])


def t_log(x):
    return t_custom("log", [x], math.log, [lambda z, a: 1.0 / a], [(x, _base)])


def t_sigmoid(x):
    return t_custom("sigmoid", [x], _sigmoid, [lambda z, a: z * (1.0 - z)])


def t_softplus(x):
    return t_custom("softplus", [x],
                    lambda a: max(a, 0.0) + math.log1p(math.exp(-abs(a))),
                    [lambda z, a: _sigmoid(a)])


def t_powv(x, y):
    return t_custom("**", [x, y], lambda a, b: a ** b,
                    [lambda z, a, b: b * a ** (b - 1.0), lambda z, a, b: z * math.log(a)],
                    [(x, _base), (y, _exponent)])


def t_rpow(c, x):
    return t_custom(f"{c}**", [x], lambda a: c ** a,
                    [lambda z, a: z * math.log(c)], [(x, _bounded)])


def t_cube(x):
    return t_custom("Cube", [x], lambda a: a ** 3, [lambda z, a: 3.0 * a * a])


# ---- the same ops on rgrad --------------------------------------------------------

def _neg(x):
    return t_mul(x, -1)


# name: (rgrad op, twin op); the twins spell out micrograd's own composition
BINARY = {
    "add": (lambda a, b: a + b, t_add),
    "sub": (lambda a, b: a - b, lambda a, b: t_add(a, _neg(b))),
    "mul": (lambda a, b: a * b, t_mul),
    "div": (lambda a, b: a / b, lambda a, b: t_mul(a, t_pow(b, -1))),
    "powv": (lambda a, b: a ** b, t_powv),
}
WITH_CONSTANT = {
    "add": (lambda a, c: a + c, t_add),
    "radd": (lambda a, c: c + a, t_add),
    "sub": (lambda a, c: a - c, lambda a, c: t_add(a, -c)),
    "rsub": (lambda a, c: c - a, lambda a, c: t_add(_neg(a), c)),
    "mul": (lambda a, c: a * c, t_mul),
    "rmul": (lambda a, c: c * a, t_mul),
    "div": (lambda a, c: a / c, lambda a, c: t_mul(a, c ** -1)),
    "rdiv": (lambda a, c: c / a, lambda a, c: t_mul(t_pow(a, -1), c)),
    "pow": (lambda a, k: a ** k, t_pow),
    "rpow": (lambda a, c: c ** a, lambda a, c: t_rpow(c, a)),
}
UNARY = {
    "neg": (lambda a: -a, _neg),
    "relu": (lambda a: a.relu(), t_relu),
    "tanh": (lambda a: a.tanh(), t_tanh),
    "exp": (lambda a: a.exp(), t_exp),
    "log": (lambda a: a.log(), t_log),
    "sigmoid": (lambda a: a.sigmoid(), t_sigmoid),
    "softplus": (lambda a: a.softplus(), t_softplus),
    "function": (lambda a: Cube.apply(a), t_cube),
    "closure": (py_tanh, lambda a: _no_replay(t_tanh(a))),
}


def _no_replay(node):
    node._no_replay = True
    return node


numbers = st.one_of(st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0, -0.25]),
                    st.floats(-3.0, 3.0, allow_nan=False))
# constant operands, exponents of a ** k and bases of c ** a (ints too: micrograd
# keeps int arithmetic where rgrad converts)
constants = st.sampled_from([0, 1, -1, 2, 3, 0.5, -2.5, 1.75, -0.1, -2, -0.5, 1.5, 2.0, -1.0])
index = st.integers(0, 10**6)   # taken modulo the pool's (or an op table's) size


def _choose(table, k):
    """An op name from a table, by index (sampled_from would favour the first)."""
    return sorted(table)[k % len(table)]


def _topo(root):
    """The micrograd nodes root depends on, children first."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
        elif node not in seen:
            seen.add(node)
            stack.append((node, True))
            stack.extend((c, False) for c in node._prev)
    return order


class RgradAgainstMicrograd(RuleBasedStateMachine):

    def __init__(self):
        super().__init__()
        self.pool = []   # [rgrad Value, its micrograd twin, is a leaf]

    def _add(self, make_rgrad, make_twin, operands, replace=None):
        """Whether the op was in its domain, and so made."""
        try:
            twin = make_twin(*operands)
        except Unsafe:
            return False
        value = make_rgrad()
        if replace is None:
            self.pool.append([value, twin, False])
        else:   # x = x op y: the old handle goes
            self.pool[replace] = [value, twin, False]
        return True

    def _pick(self, i):
        return self.pool[i % len(self.pool)]

    # ---- making nodes ----

    @rule(xs=st.lists(numbers, min_size=1, max_size=4))
    def leaves(self, xs):
        made = [Value(xs[0])] if len(xs) == 1 else rgrad.values(xs)
        for v, x in zip(made, xs):
            self.pool.append([v, MG(x), True])

    @precondition(lambda self: self.pool)
    @rule(op=index, i=index, j=index, in_place=st.booleans())
    def binary(self, op, i, j, in_place):
        (a, ta, _), (b, tb, _) = self._pick(i), self._pick(j)
        rg_op, twin_op = BINARY[_choose(BINARY, op)]
        self._add(lambda: rg_op(a, b), twin_op, (ta, tb),
                  i % len(self.pool) if in_place else None)

    @precondition(lambda self: self.pool)
    @rule(op=index, i=index, c=constants)
    def with_constant(self, op, i, c):
        op = _choose(WITH_CONSTANT, op)
        if (op == "div" and c == 0) or (op == "rpow" and c <= 0):
            return
        a, ta, _ = self._pick(i)
        rg_op, twin_op = WITH_CONSTANT[op]
        self._add(lambda: rg_op(a, c), twin_op, (ta, c))

    @precondition(lambda self: self.pool)
    @rule(ops=st.lists(index, min_size=1, max_size=4), i=index)
    def unary(self, ops, i):
        """A chain of unary ops from one node, each link kept."""
        i %= len(self.pool)
        for op in ops:
            a, ta, _ = self.pool[i]
            rg_op, twin_op = UNARY[_choose(UNARY, op)]
            if self._add(lambda: rg_op(a), twin_op, (ta,)):
                i = len(self.pool) - 1

    # ---- gradients, replay, updates ----

    @precondition(lambda self: self.pool)
    @rule(i=index)
    def backward(self, i):
        v, t, _ = self._pick(i)
        v.backward()
        t.backward()

    @precondition(lambda self: any(leaf for _, _, leaf in self.pool))
    @rule(i=index, j=index, x=numbers, then_backward=st.booleans())
    def replay(self, i, j, x, then_backward):
        """Change a leaf, then forward() from a node (and perhaps backward)."""
        root, troot, _ = self._pick(i)
        leaves = [e for e in self.pool if e[2]]
        leaf, tleaf, _ = leaves[j % len(leaves)]
        if not _allowed(tleaf, x):
            return
        order = _topo(troot)
        new = {tleaf: x}

        def get(node):
            return new.get(node, node.data)
        for node in order:   # a dry run: is the replayed graph still in its domain?
            if getattr(node, "_no_replay", False):
                return       # forward() cannot recompute a closure op
            if hasattr(node, "_recompute"):
                try:
                    y = node._recompute(get)
                except (ArithmeticError, ValueError):
                    return
                if not _allowed(node, y):
                    return
                new[node] = y
        leaf.data = x
        tleaf.data = x
        root.forward()
        for node in order:
            if hasattr(node, "_recompute"):
                node.data = new[node]
                node.grad = 0
        if then_backward:   # a training step: forward, then backward
            self.every_value_matches_its_twin()
            root.backward()
            troot.backward()

    @precondition(lambda self: any(leaf for _, _, leaf in self.pool))
    @rule(lr=st.sampled_from([0.01, 0.1, -0.05, None]))
    def update(self, lr):
        """p.data -= lr * p.grad on every leaf held (lr None: zero the grads)."""
        for v, t, is_leaf in self.pool:
            if not is_leaf:
                continue
            if lr is None:
                v.grad = 0.0
                t.grad = 0
            elif math.isfinite(t.grad) and abs(t.grad) < HUGE:
                if _allowed(t, t.data - lr * t.grad) and _allowed(t, v.data - lr * v.grad):
                    v.data -= lr * v.grad
                    t.data -= lr * t.grad

    # ---- memory ----

    @precondition(lambda self: self.pool)
    @rule(i=index)
    def drop(self, i):
        del self.pool[i % len(self.pool)]

    @precondition(lambda self: self.pool)
    @rule(garbage=st.sampled_from([0, 10, 1000, 20000]), seed=st.integers(0, 99))
    def collect(self, garbage, seed):
        """Garbage on the side (at times enough for rgrad to collect by
        itself), then perhaps a forced collection."""
        if garbage:
            rng = random.Random(seed)
            xs = rgrad.values([rng.uniform(-1, 1) for _ in range(garbage)])
            s = xs[0]
            for x in xs[1:50]:
                s = s * 0.5 + x.tanh()
            s.backward()
            del xs, s
        if garbage == 0 or seed % 3 == 0:
            gc.collect()
            rgrad.collect()

    # ---- the check ----

    @invariant()
    def every_value_matches_its_twin(self):
        for v, t, _ in self.pool:
            assert close(v.data, t.data), (v, t)
            assert close(v.grad, t.grad), (v, t)


RgradAgainstMicrograd.TestCase.settings = SETTINGS
TestRgradMatchesMicrogradOverRandomSequencesOfSteps = RgradAgainstMicrograd.TestCase


# ---- the machine can fail ------------------------------------------------------------

# deterministic, so that these tests do not depend on luck
QUICK = settings(max_examples=300, stateful_step_count=30, deadline=None,
                 phases=[Phase.generate], database=None, derandomize=True,
                 suppress_health_check=list(HealthCheck))


def test_the_machine_catches_an_op_with_wrong_data(monkeypatch):
    monkeypatch.setattr(Value, "tanh", lambda self: self.sigmoid())
    with pytest.raises(AssertionError):
        run_state_machine_as_test(RgradAgainstMicrograd, settings=QUICK)


def test_the_machine_catches_an_op_with_a_wrong_gradient(monkeypatch):
    class WrongMul(rgrad.Function):   # right data; the second gradient 1.5 times too big
        @staticmethod
        def forward(x, y):
            return x * y

        @staticmethod
        def backward(grad, out, x, y):
            return (y * grad, 1.5 * x * grad)
    real = Value.__mul__
    monkeypatch.setattr(Value, "__mul__", lambda self, other: WrongMul.apply(self, other)
                        if isinstance(other, Value) else real(self, other))
    with pytest.raises(AssertionError):
        run_state_machine_as_test(RgradAgainstMicrograd, settings=QUICK)


def test_the_machine_catches_a_replay_that_does_not_zero_interior_grads(monkeypatch):
    real = Value.forward

    def forward_keeping_grads(self):
        grads = {}
        stack, seen = [self], set()
        while stack:
            v = stack.pop()
            if v not in seen:
                seen.add(v)
                grads[v] = v.grad
                stack.extend(v._prev)
        real(self)
        for v, g in grads.items():
            v.grad = g
    monkeypatch.setattr(Value, "forward", forward_keeping_grads)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(RgradAgainstMicrograd, settings=QUICK)


def test_close_matches_non_finite_numbers_only_in_kind():
    nan, inf = math.nan, math.inf
    for r, m in [(nan, nan), (inf, inf), (-inf, -inf), (inf, 2 * HUGE), (0.1, 0.1 + 1e-12)]:
        assert close(r, m) and close(m, r), (r, m)
    for r, m in [(nan, 1.0), (nan, inf), (inf, -inf), (inf, 1.0), (-inf, 2 * HUGE),
                 (2 * HUGE, 3 * HUGE), (1.0, 1.001)]:
        assert not close(r, m) and not close(m, r), (r, m)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_the_machine_catches_an_op_with_non_finite_data_and_a_right_gradient(monkeypatch, bad):
    class BadExp(rgrad.Function):      # exp's gradient, but data that is not exp's
        @staticmethod
        def forward(x):
            return bad

        @staticmethod
        def backward(grad, out, x):
            return (math.exp(x) * grad,)
    monkeypatch.setattr(Value, "exp", lambda self: BadExp.apply(self))
    with pytest.raises(AssertionError, match=rf"data={bad!r}"):
        run_state_machine_as_test(RgradAgainstMicrograd, settings=QUICK)
