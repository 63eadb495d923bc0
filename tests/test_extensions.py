"""micrograd's extension patterns (the lecture that builds micrograd step by
step, and projects derived from it) run unchanged on rgrad, checked against
micrograd running the same code."""
import math
import random
import subprocess
import sys

import pytest

from reference import Cube
import rgrad
import rgrad.engine as engine
from rgrad import Function, Value

mg = pytest.importorskip("micrograd.engine")
MG = mg.Value


def _base(v):
    """The library's own Value class, as the lecture's code names it."""
    return Value if isinstance(v, Value) else MG


def py_tanh(self):
    """tanh written the lecture's way: data in Python, a _backward closure."""
    x = self.data
    t = (math.exp(2 * x) - 1) / (math.exp(2 * x) + 1)
    out = _base(self)(t, (self,), 'tanh')

    def _backward():
        self.grad += (1 - t**2) * out.grad
    out._backward = _backward
    return out


def py_exp(self):
    x = self.data
    out = _base(self)(math.exp(x), (self,), 'exp')

    def _backward():
        self.grad += out.data * out.grad
    out._backward = _backward
    return out


@pytest.fixture(params=["Value", "subclass"])
def with_python_ops(request, monkeypatch):
    """Each test runs with the Python ops attached to Value itself (replacing
    rgrad's C tanh) and to a subclass, in both libraries. Built-in ops return
    the base class (in micrograd too), so tests call them as T.tanh(v)."""
    kinds = {}
    for V in (MG, Value):
        if request.param == "Value":
            monkeypatch.setattr(V, "tanh", py_tanh, raising=False)
            monkeypatch.setattr(V, "exp", py_exp, raising=False)
            kinds[V] = V
        else:
            kinds[V] = type("ValueExt", (V,), {"tanh": py_tanh, "exp": py_exp})
    return kinds


def test_constructor_with_children_op_and_label():
    a = Value(2.0, label='a')
    b = Value(3.0, (a,), 'double')
    assert (a.label, b.label, a._op, b._op) == ('a', '', '', 'double')
    assert b._prev == {a} and b.data == 3.0
    b.label = 'b'
    (handle_to_b,) = {v for v in (b * a)._prev if v is not a}
    assert handle_to_b is b and handle_to_b.label == 'b'   # one object per node
    assert repr(b) == "Value(data=3.0, grad=0)"    # micrograd: grad starts as int 0
    many = Value(1.0, (a, b, a * b, Value(4.0)), 'four')
    assert len(many._prev) == 4 and a in many._prev


def test_children_must_be_values():
    with pytest.raises(TypeError):
        Value(1.0, (2.0,), 'x')


def _lecture_neuron(V):
    x1, x2 = V(2.0), V(0.0)
    w1, w2 = V(-3.0), V(1.0)
    b = V(6.8813735870195432)
    n = x1 * w1 + x2 * w2 + b
    o = V.tanh(n)
    return [x1, x2, w1, w2, b], o


def test_lecture_neuron_with_python_tanh_matches_micrograd(with_python_ops):
    out = {}
    for V in (MG, Value):
        leaves, o = _lecture_neuron(with_python_ops[V])
        o.backward()
        out[V] = (o.data, [v.grad for v in leaves])
    assert out[Value][0] == out[MG][0]
    assert out[Value][1] == pytest.approx(out[MG][1], rel=1e-12)


def test_python_ops_mix_with_builtin_ops(with_python_ops):
    out = {}
    for V in (MG, Value):
        T = with_python_ops[V]
        a, b = T(0.3), T(-1.2)
        c = T.tanh(a * b) * a + T.exp(b / 3) - a ** 2
        d = T.tanh(c) + c * c
        d.backward()
        out[V] = (d.data, a.grad, b.grad)
    assert out[Value][0] == out[MG][0]       # forward: equal to the bit
    assert out[Value][1:] == pytest.approx(out[MG][1:], rel=1e-12)


def test_manual_backpropagation_node_by_node_matches_micrograd():
    out = {}
    for V in (MG, Value):
        a, b, c, f = V(2.0), V(-3.0), V(10.0), V(-2.0)
        e = a * b
        d = e + c
        L = d * f
        L.grad = 1.0
        L._backward()
        d._backward()
        e._backward()
        a._backward()                     # a leaf's does nothing
        out[V] = [v.grad for v in (a, b, c, d, e, f, L)]
    assert out[Value] == out[MG]


def _topo(root):
    order, seen = [], set()

    def build(v):
        if v not in seen:
            seen.add(v)
            for child in v._prev:
                build(child)
            order.append(v)
    build(root)
    return order


def test_hand_written_topological_walk_gives_micrograds_gradients(with_python_ops):
    out = {}
    for V in (MG, Value):
        leaves, o = _lecture_neuron(with_python_ops[V])
        order = _topo(o)
        o.grad = 1.0
        for v in reversed(order):
            v._backward()
        out[V] = (len(order), [v.grad for v in leaves])
    assert out[Value] == out[MG]     # one path to each leaf: nothing to sum in another order


def _lecture_mlp_losses(V, steps):
    """The lecture's MLP (tanh neurons) and training loop, for any Value class."""
    class Neuron:
        def __init__(self, nin):
            self.w = [V(random.uniform(-1, 1)) for _ in range(nin)]
            self.b = V(random.uniform(-1, 1))

        def __call__(self, x):
            act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
            return V.tanh(act)

        def parameters(self):
            return self.w + [self.b]

    class Layer:
        def __init__(self, nin, nout):
            self.neurons = [Neuron(nin) for _ in range(nout)]

        def __call__(self, x):
            outs = [n(x) for n in self.neurons]
            return outs[0] if len(outs) == 1 else outs

        def parameters(self):
            return [p for n in self.neurons for p in n.parameters()]

    class MLP:
        def __init__(self, nin, nouts):
            sz = [nin] + nouts
            self.layers = [Layer(sz[i], sz[i + 1]) for i in range(len(nouts))]

        def __call__(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

        def parameters(self):
            return [p for layer in self.layers for p in layer.parameters()]

    random.seed(42)
    xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    ys = [1.0, -1.0, -1.0, 1.0]
    n = MLP(3, [4, 4, 1])
    losses = []
    for _ in range(steps):
        ypred = [n(x) for x in xs]
        loss = sum((yout - ygt) ** 2 for ygt, yout in zip(ys, ypred))
        for p in n.parameters():
            p.grad = 0.0
        loss.backward()
        for p in n.parameters():
            p.data += -0.1 * p.grad
        losses.append(loss.data)
    return losses


def test_lecture_mlp_with_python_tanh_trains_like_micrograd(with_python_ops):
    want = _lecture_mlp_losses(with_python_ops[MG], 20)
    got = _lecture_mlp_losses(with_python_ops[Value], 20)
    # the first loss is equal to the bit; the gradients' last bits (summed in
    # another order) carry into later ones (measured: 2e-15 relative)
    assert got[0] == want[0]
    assert got == pytest.approx(want, rel=1e-13)
    assert got[-1] < got[0] / 4


def test_python_op_loop_runs_in_flat_memory(with_python_ops):
    V = with_python_ops[Value]

    def step():
        w = V(0.5)
        y = V.tanh(w * 2.0 + 1)
        z = V.exp(V.tanh(y)) * 3         # a Python op whose child is one too
        z.backward()
        return z.data

    for _ in range(200):
        step()
    rgrad.collect()
    base = (rgrad.stats()["nodes"], len(engine._closures))
    for _ in range(20_000):
        assert step() == pytest.approx(3 * math.exp(math.tanh(math.tanh(2.0))))
    rgrad.collect()
    # at most the last step's nodes (and closures) are left, not 20,000 steps'
    assert rgrad.stats()["nodes"] <= base[0] + 50
    assert len(engine._closures) <= base[1] + 10


def test_forward_on_a_python_op_without_forward_names_the_op(with_python_ops):
    T = with_python_ops[Value]
    y = T.tanh(T(0.5)) * 2
    with pytest.raises(RuntimeError, match="tanh"):
        y.forward()


def test_builtin_graphs_still_replay_while_python_ops_exist(with_python_ops):
    T = with_python_ops[Value]
    keep = T.tanh(T(1.0))                          # a Python op stays alive
    a = Value(2.0)
    y = a * a + 1
    a.data = 3.0
    y.forward()
    y.backward()
    assert (y.data, a.grad) == (10.0, 6.0)
    assert keep.data == pytest.approx(math.tanh(1.0))


class Hypot(Function):
    @staticmethod
    def forward(x, y):
        return math.hypot(x, y)

    @staticmethod
    def backward(grad, out, x, y):
        return (x / out * grad, y / out * grad)


def test_function_ops_backpropagate_like_finite_differences():
    def f(x, y):
        return (Hypot.apply(Cube.apply(x), y * 2) + x).data

    x, y = Value(0.7), Value(-1.3)
    r = Hypot.apply(Cube.apply(x), y * 2) + x
    r.backward()
    h = 1e-6
    dx = (f(Value(0.7 + h), Value(-1.3)) - f(Value(0.7 - h), Value(-1.3))) / (2 * h)
    dy = (f(Value(0.7), Value(-1.3 + h)) - f(Value(0.7), Value(-1.3 - h))) / (2 * h)
    assert (x.grad, y.grad) == pytest.approx((dx, dy), rel=1e-6)


def test_function_ops_are_replayed_by_forward():
    x = Value(2.0)
    y = Cube.apply(x * 0.5) + Hypot.apply(x, 1.0)
    x.data = 3.0
    y.forward()
    assert y.data == pytest.approx(1.5 ** 3 + math.hypot(3.0, 1.0), rel=1e-15)
    y.backward()
    assert x.grad == pytest.approx(3 * 1.5 ** 2 * 0.5 + 3.0 / math.hypot(3.0, 1.0))


def test_function_backward_with_the_wrong_number_of_grads_is_an_error():
    class Bad(Function):
        forward = staticmethod(lambda x: x)
        backward = staticmethod(lambda grad, out, x: (grad, grad))

    y = Bad.apply(Value(1.0))
    with pytest.raises(ValueError, match="2 grads for 1 inputs"):
        y.backward()


def test_builtin_op_pays_nothing_when_no_python_ops_exist():
    # a fresh interpreter, so that no other test's Python op is alive: with
    # none anywhere, backward takes C's one-pass path
    code = ("from rgrad import Value\n"
            "from rgrad._rgrad import lib\n"
            "a = Value(2.0)\n"
            "y = a * a\n"
            "assert lib.rg_backward(y._s) == lib.RG_OK\n"
            "assert a.grad == 4.0\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_builtin_graphs_take_cs_path_while_a_python_op_is_alive_elsewhere():
    from rgrad._rgrad import lib
    x = Value(0.5)
    keep = Value(math.tanh(0.5), (x,), 'tanh')     # a Python op, alive
    keep._backward = lambda: None
    a = Value(2.0)
    y = a * a + 1
    assert lib.rg_backward(y._s) == lib.RG_OK        # not handed to Python
    assert a.grad == 4.0
    z = keep * 2 + a                                  # this one holds it
    assert lib.rg_backward(z._s) == lib.RG_PYGRAPH


def test_backward_set_on_a_node_that_already_has_parents_is_run():
    a = Value(3.0)
    mid = a * 1.0
    top = mid * 2 + 1                                 # made before mid's closure
    calls = []

    def _backward():
        calls.append(mid.grad)
        a.grad += 10 * mid.grad
    mid._backward = _backward
    top.backward()
    assert calls == [2.0] and a.grad == 20.0


@pytest.mark.parametrize("when", ["made as one", "given to a node with parents"])
def test_a_python_op_under_a_graph_still_runs_after_a_compaction(when):
    """Compaction recomputes which nodes have a Python op under them (and
    clears it everywhere when the arena holds none): a graph over one kept
    through a compaction still calls its closure."""
    import gc
    a = Value(3.0)
    calls = []
    if when == "made as one":
        mid = Value(3.0, (a,), "copy")
        top = mid * 2 + 1
    else:
        mid = a * 1.0
        top = mid * 2 + 1                             # made before mid's closure

    def _backward():
        calls.append(mid.grad)
        a.grad += 10 * mid.grad
    mid._backward = _backward
    gc.collect()
    rgrad.collect()
    top.backward()
    assert calls == [2.0] and a.grad == 20.0

