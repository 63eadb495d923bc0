"""rgrad.Batch against building one graph per row: outputs, the grads of the
shared leaves and the per-row grads of the inputs, on random graphs over the
built-in ops and on the demo MLP (and against PyTorch tensors where torch is
installed); thread counts; odd sizes; bad rows."""
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rgrad
import rgrad.batch
from reference import bits, instruction_strategy, run_program
from rgrad import Batch, Value
from rgrad.nn import MLP

np = pytest.importorskip("numpy")


def close(a, b, rel=1e-9, abs_=1e-12):
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


# ---- random graphs: a program over a pool of Values (reference.py), run once
# with the batch's input leaves and once per row with fresh ones ---------------

instruction = instruction_strategy()
cases = st.fixed_dictionaries({
    "n_in": st.integers(1, 3),
    "shared": st.lists(st.floats(-1.5, 1.5), min_size=1, max_size=3),
    "program": st.lists(instruction, min_size=1, max_size=14),
    "rows": st.integers(1, 40).flatmap(
        lambda n: st.lists(st.lists(st.floats(-2, 2), min_size=3, max_size=3),
                           min_size=n, max_size=n)),
    "scale": st.sampled_from([1.0, 0.25, -3.0]),
})


def reference(program, shared, rows, scale, n_in):
    """What one graph per row gives: outputs, shared leaves' grads (from
    scale * the sum of the rows' first outputs), per-row input grads."""
    for s in shared:
        s.grad = 0.0
    outs, total, in_grads = [], None, []
    for row in rows:
        xs = [Value(x) for x in row[:n_in]]
        o1, o2 = run_program(program, xs, shared)
        outs.append([o1.data, o2.data])
        total = o1 if total is None else total + o1
        in_grads.append(xs)
    (total * scale).backward()
    grads = [s.grad for s in shared]
    # per-row input grads: d out[0] / d input of that row alone (each row's
    # graph is separate, so the sum's backward gives each row its own)
    per_row = [[x.grad / scale for x in xs] for xs in in_grads]
    return outs, grads, per_row


@settings(max_examples=150, deadline=None)
@given(cases)
def test_random_graphs_match_one_graph_per_row(case):
    n_in = case["n_in"]
    rows = [r[:n_in] for r in case["rows"]]
    shared = [Value(x) for x in case["shared"]]
    inputs = [Value(0.0) for _ in range(n_in)]
    o1, o2 = run_program(case["program"], inputs, shared)
    try:
        want_out, want_grads, want_in = reference(case["program"], shared, rows,
                                                  case["scale"], n_in)
    except (ArithmeticError, ValueError):
        return                               # a row the ops refuse: not compared
    if not all(math.isfinite(g) for g in want_grads):
        return
    for s in shared:
        s.grad = 0.0
    b = Batch([o1, o2], inputs, threads=1)
    got = b.forward(rows)
    b.backward(scale=case["scale"])
    for r, (w1, w2) in enumerate(want_out):
        assert close(got[r][0], w1) and close(got[r][1], w2), (r, got[r], w1, w2)
    for s, w in zip(shared, want_grads):
        assert close(s.grad, w, abs_=1e-9), (s.grad, w)
    got_in = b.input_grads()
    for r in range(len(rows)):
        for j in range(n_in):
            assert close(got_in[r][j], want_in[r][j], abs_=1e-9), (r, j)


# ---- the demo MLP -------------------------------------------------------------

def demo(seed=1):
    random.seed(seed)
    model = MLP(2, [16, 16, 1])
    x = rgrad.values([0.0, 0.0])
    t = Value(0.0)
    score = model(x)
    loss1 = (1 - t * score).relu()
    return model, x, t, score, loss1


def moons_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(size=(n, 2)),
                            np.where(rng.random(n) > 0.5, 1.0, -1.0)])


def grads_of(model):
    return [p.grad for p in model.parameters()]


def test_demo_step_matches_one_graph_per_row():
    model, x, t, score, loss1 = demo()
    rows = moons_rows(100)
    b = Batch([loss1, score], inputs=[*x, t])
    out = b.forward(rows)
    model.zero_grad()
    b.backward(scale=1 / 100)
    got = grads_of(model)
    model.zero_grad()
    total = 0
    scores = []
    for x0, x1, y in rows:
        s = model([Value(x0), Value(x1)])
        scores.append(s.data)
        total = total + (1 - y * s).relu()
    (total * (1 / 100)).backward()
    assert out.shape == (100, 2)
    assert list(out[:, 1]) == scores                 # the same ops in the same order
    for g, w in zip(got, grads_of(model)):
        assert close(g, w, abs_=1e-15)


def test_demo_mlp_matches_pytorch():
    torch = pytest.importorskip("torch")
    model, x, t, score, loss1 = demo(seed=3)
    rows = moons_rows(64, seed=5)
    b = Batch([loss1], inputs=[*x, t])
    out = b.forward(rows)
    b.backward(scale=1 / 64)
    layers = model.layers
    W = [torch.tensor([[w.data for w in n.w] for n in L.neurons], dtype=torch.float64,
                      requires_grad=True) for L in layers]
    B = [torch.tensor([n.b.data for n in L.neurons], dtype=torch.float64,
                      requires_grad=True) for L in layers]
    h = torch.tensor(rows[:, :2])
    for k, (w, bias) in enumerate(zip(W, B)):
        h = h @ w.T + bias
        if k < len(W) - 1:
            h = torch.relu(h)
    y = torch.tensor(rows[:, 2])
    losses = torch.relu(1 - y * h[:, 0])
    (losses.sum() / 64).backward()
    assert np.allclose(out[:, 0], losses.detach().numpy(), rtol=1e-12, atol=1e-14)
    for L, w, bias in zip(layers, W, B):
        for j, n in enumerate(L.neurons):
            for i, p in enumerate(n.w):
                assert close(p.grad, w.grad[j, i].item(), abs_=1e-14)
            assert close(n.b.grad, bias.grad[j].item(), abs_=1e-14)


@pytest.mark.parametrize("n", [1, 7, 10_000, 10_007])
def test_thread_counts_give_the_same_bits(n):
    model, x, t, score, loss1 = demo()
    rows = moons_rows(n, seed=n)
    results = []
    for threads in (1, 2, 3):
        model.zero_grad()
        b = Batch([loss1, score], inputs=[*x, t], threads=threads)
        out = b.forward(rows)
        b.backward(scale=1 / n)
        results.append((out.tobytes(), grads_of(model), b.input_grads().tobytes()))
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 33, 257])
def test_row_counts_around_the_block_size(n):
    model, x, t, score, loss1 = demo()
    b = Batch([loss1], inputs=[*x, t], threads=1)
    rows = moons_rows(n, seed=n)
    out = b.forward(rows)
    model.zero_grad()
    b.backward()
    got = grads_of(model)
    model.zero_grad()
    total = 0
    for k, (x0, x1, y) in enumerate(rows):
        loss = (1 - y * model([Value(x0), Value(x1)])).relu()
        assert out[k, 0] == loss.data
        total = total + loss
    total.backward()
    for g, w in zip(got, grads_of(model)):
        assert close(g, w, abs_=1e-14)


def test_block_size_is_what_the_tests_straddle():
    # the row counts above straddle blocks of 16; the demo graph is larger
    model, x, t, score, loss1 = demo()
    vec, uni, leaves, block, insts = Batch([loss1], inputs=[*x, t]).nodes
    assert leaves == len(model.parameters()) and block >= 16 and block % 8 == 0


def test_shared_leaves_are_read_at_each_forward():
    model, x, t, score, loss1 = demo()
    rows = moons_rows(50)
    b = Batch([loss1], inputs=[*x, t])
    from rgrad.optim import SGD
    opt = SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        b.forward(rows)
        opt.zero_grad()
        b.backward(scale=1 / 50)
        opt.step()
    out = b.forward(rows)
    for k, (x0, x1, y) in enumerate(rows):
        assert out[k, 0] == (1 - y * model([Value(x0), Value(x1)])).relu().data


def test_a_collection_or_new_children_between_calls():
    model, x, t, score, loss1 = demo()
    rows = moons_rows(20)
    b = Batch([loss1], inputs=[*x, t])
    first = b.forward(rows).copy()
    junk = [Value(float(i)) * 2 for i in range(100_000)]   # nodes to compact away
    del junk
    rgrad.collect()
    assert (b.forward(rows) == first).all()
    model.zero_grad()
    b.backward()
    assert any(p.grad != 0 for p in model.parameters())
    # a node of the graph made an op defined in Python after compiling
    def step():
        score.grad += 0.0
    score._backward = step
    with pytest.raises(ValueError, match="defined in Python"):
        b.forward(rows)


def test_results_are_lists_without_numpy(monkeypatch):
    model, x, t, score, loss1 = demo()
    b = Batch([loss1, score], inputs=[*x, t])
    want = b.forward(moons_rows(5)).tolist()
    monkeypatch.setattr(rgrad.batch, "_numpy", lambda: None)
    got = b.forward([list(r) for r in moons_rows(5)])
    assert got == want
    b.backward()
    ig = b.input_grads()
    assert isinstance(ig, list) and len(ig) == 5 and all(len(r) == 3 for r in ig)
    with pytest.raises(TypeError):
        b.forward([[1.0, None, 1.0]])
    with pytest.raises(ValueError):
        b.forward([[1.0, 2.0]])


# ---- bad input: clear errors, nothing changed -------------------------------------

@pytest.mark.parametrize("rows, error", [
    ([[0.0, 1.0]], ValueError),                      # too narrow
    ([[0.0, 1.0, 1.0, 2.0]], ValueError),            # too wide
    ([[0.0, 1.0, 1.0], [0.0, 1.0]], ValueError),     # ragged
    ([0.0, 1.0, 1.0], ValueError),                   # not two-dimensional
    ([], ValueError),                                # no rows
    ([[None, 1.0, 1.0]], TypeError),
    ([["a", 1.0, 1.0]], TypeError),
    ([[1j, 1.0, 1.0]], TypeError),
    (np.zeros((3, 3), dtype=complex), TypeError),
    (np.array([["1", "2", "3"]]), TypeError),
    ("abc", TypeError),
])
def test_bad_rows_raise_and_change_nothing(rows, error):
    model, x, t, score, loss1 = demo()
    b = Batch([loss1], inputs=[*x, t])
    good = moons_rows(4)
    before = b.forward(good).copy()
    with pytest.raises(error):
        b.forward(rows)
    model.zero_grad()
    b.backward()                  # still the good forward's rows
    g1 = grads_of(model)
    model.zero_grad()
    assert (b.forward(good) == before).all()
    b.backward()
    assert grads_of(model) == g1


def test_bad_construction():
    a, k = Value(1.0), Value(2.0)
    y = a * k + 1
    with pytest.raises(ValueError, match="distinct leaves"):
        Batch([y], inputs=[a * k])                # an input made by an op
    with pytest.raises(ValueError, match="distinct leaves"):
        Batch([y], inputs=[a, a])
    with pytest.raises(TypeError):
        Batch([y], inputs=[1.0])
    with pytest.raises(ValueError):
        Batch([], inputs=[a])
    with pytest.raises(ValueError):
        Batch([y], inputs=[a], threads=0)

    def cube(v):
        out = Value(v.data ** 3, (v,), "cube")

        def _backward():
            v.grad += 3 * v.data ** 2 * out.grad
        out._backward = _backward
        return out
    with pytest.raises(ValueError, match="defined in Python"):
        Batch([cube(a) * k], inputs=[a])
    b = Batch([y], inputs=[a])
    with pytest.raises(RuntimeError):
        b.backward()
    with pytest.raises(RuntimeError):
        b.input_grads()
    b.forward([[1.0]])
    with pytest.raises(TypeError):
        b.backward(scale="x")


def test_math_errors_raise_as_ops_do():
    a = Value(1.0)
    b = Batch([a.log()], inputs=[a])
    assert b.forward([[math.e]])[0][0] == 1.0
    with pytest.raises(ValueError):
        b.forward([[1.0], [-1.0]])
    with pytest.raises(RuntimeError):
        b.backward()                              # the refused forward left nothing
    z = Batch([1 / a], inputs=[a])
    with pytest.raises(ZeroDivisionError):
        z.forward([[0.0]])


def test_an_input_the_outputs_do_not_use_has_zero_grads():
    a, u = Value(1.0), Value(5.0)
    k = Value(3.0)
    b = Batch([a * k], inputs=[a, u])
    out = b.forward([[2.0, 7.0], [4.0, 1.0]])
    assert out.tolist() == [[6.0], [12.0]]
    b.backward()
    assert k.grad == 6.0
    assert b.input_grads().tolist() == [[3.0, 0.0], [3.0, 0.0]]


# ---- found in review -------------------------------------------------------------

def test_a_backward_refused_after_the_graph_changed_stays_refused():
    w, x = Value(0.5), Value(1.0)
    h = w * x
    b = Batch([h.tanh()], inputs=[x])
    b.forward([[1.0], [2.0]])

    def step():
        h.grad += 0.0
    h._backward = step                   # an op defined in Python, after forward
    with pytest.raises(ValueError, match="defined in Python"):
        b.backward()
    with pytest.raises(RuntimeError, match="forward"):   # (this once crashed the process)
        b.backward()
    with pytest.raises(RuntimeError):
        b.input_grads()


def test_backward_after_a_collection_twice():
    model, x, t, score, loss1 = demo()
    rows = moons_rows(30)
    b = Batch([loss1], inputs=[*x, t])
    b.forward(rows)
    model.zero_grad()
    b.backward()
    once = grads_of(model)
    model.zero_grad()
    junk = [Value(float(i)) * 2 for i in range(100_000)]
    del junk
    rgrad.collect()                      # nodes move: the batch compiles again
    b.backward()
    b.backward()                         # from the same forward's data
    assert grads_of(model) == pytest.approx([2 * g for g in once], rel=1e-15, abs=1e-300)


def test_shared_nodes_that_do_not_lead_to_the_first_output_add_nothing():
    # sqrt's slope at 0 is infinite; the second output's branch gets grad 0,
    # and 0 * inf must not turn the first output's gradient into NaN
    w, x = Value(0.0), Value(1.0)
    b = Batch([w * x, (w ** 0.5) * x], inputs=[x], threads=1)
    b.forward([[1.0], [2.0]])
    b.backward()
    assert w.grad == 3.0


# ---- fused multiply-add chains: the same bits as the ops one by one ---------------

def run_both(build, rows, scale=0.5, threads=1, block=48):
    """(outputs, shared leaves' grads, input grads, instructions) of the graph
    build() makes, compiled with chains fused and without (rg_batch_tune),
    both with `block` rows a block: the shared leaves' sums are added block
    by block, so another block size is another rounding."""
    from rgrad._rgrad import lib
    results = []
    for fuse in (1, 0):
        outs, inputs, shared = build()
        lib.rg_batch_tune(fuse, block)
        try:
            b = Batch(outs, inputs, threads=threads)
        finally:
            lib.rg_batch_tune(1, 0)
        for s in shared:
            s.grad = 0.0
        out = b.forward(rows)
        b.backward(scale=scale)
        grads = [bits(s.grad)[1] for s in shared]     # -0.0 and 0.0 differ
        results.append((out.tobytes(), grads, b.input_grads().tobytes(), b.nodes[4]))
    return results


def chains():
    """Sums written as micrograd's Neuron writes them and otherwise: a
    uniform or a vector start, operands either way round, a vector or a
    weight in two terms, an inner sum used again (no fusion past it), and
    sums feeding sums."""
    x = rgrad.values([0.0, 0.0, 0.0])
    ws = [Value(v) for v in (0.5, -1.25, 2.0, -0.0, 3.0)]
    b0 = Value(0.25)
    n1 = sum((w * xi for w, xi in zip(ws, x)), b0)            # Neuron: b + w1 x1 + ...
    n2 = sum((xi * w for w, xi in zip(ws[1:], x)), x[0])      # a vector start, x * w
    n3 = x[1] * ws[2] + x[2] * ws[2]                          # products first, then adds
    s = ws[3] * x[2] + n1                                     # the sum on the right
    s = s + ws[4] * x[2]                                      # x[2] in two terms
    inner = b0 + ws[0] * n1
    reused = inner + ws[1] * n2                               # inner used twice:
    out = (reused + ws[2] * inner).relu() * n3 + s.tanh()     # no fusion past it
    # a weight and a vector in several terms: backward takes the terms two at
    # a time (the last two first), and ws[4]'s sum gets three terms, in order
    pairs = [(ws[0], x[0]), (ws[0], x[1]), (ws[1], x[0]), (ws[1], x[0]),
             (ws[4], x[2]), (ws[4], x[1]), (ws[2], x[2]), (ws[4], x[0])]
    n4 = sum((w * xi for w, xi in pairs), b0)
    s0 = x[0].tanh()                                          # a vector start that only
    n5 = s0 + ws[0] * x[1] + ws[1] * x[2]                     # the chain reads
    part = b0 + ws[2] * x[0] + ws[4] * x[1]                   # an inner sum that is an
    n6 = part + ws[1] * x[2] + ws[0] * x[0]                   # output too
    # one weight as the start and in three terms: its sum gets the terms'
    # and the start's totals in backward's order (x[2]'s, x[1]'s, the
    # start's, x[0]'s), which the rounding shows
    n7 = ws[1] + ws[1] * x[0] + ws[1] * x[1] + ws[1] * x[2]
    return [out + n4 + n5 * n6 + n7, n1, n2, part], list(x), ws + [b0]


SPECIAL_ROWS = np.array([[0.5, -1.0, 2.0], [0.0, -0.0, 0.0], [-0.0, 1e-300, -3.5],
                         [1e300, -1e300, 7.0], [3.0, 0.125, -0.0]] * 7)


@pytest.mark.parametrize("rows", [SPECIAL_ROWS, np.random.default_rng(7).normal(size=(37, 3))],
                         ids=["zeros-and-extremes", "normal"])
def test_fused_chains_give_the_bits_of_the_ops_one_by_one(rows):
    fused, plain = run_both(chains, rows, block=16)
    assert fused[:3] == plain[:3]
    assert fused[3] < plain[3]          # it did fuse: fewer instructions


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_demo_mlp_gives_the_bits_of_the_ops_one_by_one(threads):
    def build():
        model, x, t, score, loss1 = demo()
        return [loss1, score], [*x, t], model.parameters()
    rows = moons_rows(12_000, seed=3)   # enough rows a thread for a second one to run
    fused, plain = run_both(build, rows, scale=1 / 12_000, threads=threads, block=64)
    assert fused[:3] == plain[:3]
    assert fused[3] < plain[3] / 5      # 2 + 2 + 16 + 16 + ... become one each


@settings(max_examples=60, deadline=None)
@given(cases)
def test_fused_random_graphs_give_the_bits_of_the_ops_one_by_one(case):
    n_in = case["n_in"]
    rows = [r[:n_in] for r in case["rows"]]

    def build():
        shared = [Value(v) for v in case["shared"]]
        inputs = [Value(0.0) for _ in range(n_in)]
        o1, o2 = run_program(case["program"], inputs, shared)
        # and a neuron over the inputs started at the program's output, and
        # one over the program's outputs: every case has a chain to fuse
        ws = shared * 4
        n = sum((w * v for w, v in zip(ws, inputs * 2)), o1)
        n2 = sum((w * o for w, o in zip(ws[1:], [o1, o2, n])), o2)
        return [n + n2, o1, o2], inputs, shared
    try:
        fused, plain = run_both(build, rows, scale=case["scale"])
    except (ArithmeticError, ValueError):
        return                               # a row the ops refuse
    assert fused[:3] == plain[:3]
    assert fused[3] < plain[3]


def test_a_batch_keeps_its_block_and_fusion_through_a_compaction():
    # rg_batch_tune's settings are the batch's from when it was made: a
    # compaction between forward and backward compiles it again the same way
    from rgrad._rgrad import lib
    rows = np.random.default_rng(0).normal(size=(1000, 3))

    def run(collect):
        x = rgrad.values([0.0] * 3)
        ws = [Value(v) for v in (0.5, -1.25, 2.0)]
        out = sum((w * xi for w, xi in zip(ws, x)), Value(0.1)).tanh()
        junk = [Value(1.0) * 2 for _ in range(10)]      # something to compact away
        del junk
        lib.rg_batch_tune(1, 48)
        try:
            b = Batch([out], x, threads=1)
        finally:
            lib.rg_batch_tune(1, 0)
        b.forward(rows)
        if collect:
            rgrad.collect()
        b.backward()
        return [w.grad for w in ws], b.input_grads().tobytes(), b.nodes[3]
    assert run(False) == run(True)
    assert run(True)[2] == 48
