"""Replay's program (csrc/tape.c): forward() and backward() of a replayed
graph run each chain of multiply-adds (a neuron's sum) as one instruction.
Every node must end with the bits and the int-or-float types that running
the ops one node at a time gives. Anomaly mode still runs them one node at a
time (it checks each node), so each test runs the same steps both ways and
compares every node of the graph: data and grad, their types, and the sign
of zero."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rgrad
from rgrad import Value
from rgrad._rgrad import lib

from reference import bits, no_memory


@pytest.fixture(autouse=True)
def _settled():
    """Each test starts from an arena with no dead Python op in it: a Python
    op given to a node that already had parents (tests/test_extensions.py)
    makes every graph take the Python walk until a compaction finds it
    gone, and a test that checks the program ran would see none."""
    import gc
    gc.collect()
    rgrad.collect()


def snapshot(nodes):
    return [(bits(v.data), bits(v.grad)) for v in nodes]


def run(root, nodes, leaves, one_by_one, steps):
    """Zeroes the leaves' grads (int 0), runs steps ("f" forward, "b"
    backward) on root, one node at a time or by the program, and returns
    every node's state."""
    for v in leaves:
        v.grad = 0
    if one_by_one:
        with rgrad.detect_anomaly():
            for s in steps:
                root.forward() if s == "f" else root.backward()
    else:
        for s in steps:
            root.forward() if s == "f" else root.backward()
    return snapshot(nodes)


def both_ways(root, nodes, leaves, steps="fbb"):
    plain = run(root, nodes, leaves, True, steps)
    fused = run(root, nodes, leaves, False, steps)
    return plain, fused


def backward_from(root, nodes, leaves, grads, one_by_one):
    """backward() alone, from grads set on every node (after a forward, so
    that the tape is made): what it adds to grads that are not zero."""
    root.forward()
    for v, g in zip(nodes, grads):
        v.grad = g
    if one_by_one:
        with rgrad.detect_anomaly():
            root.backward()
    else:
        root.backward()
    return snapshot(nodes)


def same_backward_alone(root, nodes, leaves):
    """backward_from both ways, from a mix of int and float grads, unless
    anomaly mode refuses a grad that overflows on the way."""
    start = [(0.5, 2, -0.0, 0)[k % 4] for k in range(len(nodes))]
    try:
        plain = backward_from(root, nodes, leaves, start, True)
    except (ArithmeticError, ValueError):
        return
    assert backward_from(root, nodes, leaves, start, False) == plain


def chains():
    """Sums as micrograd's Neuron writes them and otherwise: products either
    way round, the sum on either side, a weight in two terms, a factor that
    is also the start, a square, an inner sum used again (no fusion past
    it), ints and floats, and int zeros that keep no sign."""
    x = [Value(0.5), Value(-2), Value(3)]
    ws = [Value(v) for v in (2, -1.25, 0, -0.0, 3, 2**53 - 1)]
    b0, b1 = Value(1), Value(0.25)
    nodes = []

    def keep(v):
        nodes.append(v)
        return v

    n1 = keep(sum((keep(w * xi) for w, xi in zip(ws, x)), b0))       # Neuron
    n2 = keep(sum((keep(xi * w) for w, xi in zip(ws[1:], x)), x[0]))  # x * w
    n3 = keep(keep(x[1] * ws[2]) + keep(x[2] * ws[2]))   # an int 0 from -2 * 0
    s = keep(keep(ws[3] * x[2]) + n1)                     # the sum on the right
    s = keep(s + keep(ws[4] * x[2]))
    sq = keep(b1 + keep(x[1] * x[1]) + keep(b1 * b1))     # squares; b1 starts and is a factor
    big = keep(ws[5] * x[2] + ws[5] * ws[4])              # ints past 2**53: floats
    inner = keep(b0 + keep(ws[0] * n1))
    reused = keep(inner + keep(ws[1] * n2))               # inner read twice
    out = keep(keep(reused + keep(ws[2] * inner)).relu() * n3 + s.tanh() + sq * big)
    zero = keep(keep(ws[2] * x[1]) * -1.5)                # an int 0 times a float: +0.0
    nz = Value(-0.0)
    signless = keep(nz + keep(x[1] * ws[2]))              # -0.0 + the int 0 of -2 * 0: +0.0
    root = keep(out + zero + n1 * n2 + signless)
    leaves = x + ws + [b0, b1, nz]
    return root, nodes + leaves, leaves


def test_chains_give_the_bits_of_the_ops_one_by_one():
    root, nodes, leaves = chains()
    plain, fused = both_ways(root, nodes, leaves)
    assert fused == plain
    # it did fuse: fewer instructions than nodes on the tape
    assert 0 < lib.rg_replay_program() < lib.rg_tape(root._s, rgrad._rgrad.ffi.NULL, 0)
    # and the grads are not all zero or all ints: the test can see a change
    assert any(g[1][0] == "float" and g[1][1] != bits(0.0)[1] for g in fused)
    assert any(g[0][0] == "int" for g in fused)


@pytest.mark.parametrize("grads", [
    [0.5, -0.0, 3, 0, -2.25],
    [1, 2, 0, -0.0],
], ids=["floats-and-ints", "ints"])
def test_backward_alone_adds_to_the_grads_it_finds(grads):
    root, nodes, leaves = chains()
    start = [grads[k % len(grads)] for k in range(len(nodes))]
    plain = backward_from(root, nodes, leaves, start, True)
    fused = backward_from(root, nodes, leaves, start, False)
    assert fused == plain


def test_the_demo_graph_gives_the_bits_of_the_ops_one_by_one():
    from rgrad.bench_peers import FACTORIES
    from rgrad.bench_workloads import moons
    peer = FACTORIES["rgrad-replay"](*moons())
    root = peer.total
    params = peer.model.parameters()
    plain, fused = both_ways(root, [root] + params, params)
    assert fused == plain
    assert lib.rg_replay_program() < lib.rg_tape(root._s, rgrad._rgrad.ffi.NULL, 0) / 5


def test_a_neuron_and_what_follows_it_is_one_instruction():
    """A dot's tail: relu(b + w1 x1 + w2 x2), then the max-margin loss on it,
    (1 + -y * score).relu() with the label y an int as in micrograd's demo,
    is one instruction, with the bits of the ops one by one."""
    x = [Value(0.5), Value(-2.0)]
    w = [Value(1.5), Value(-0.25)]
    b, y = Value(0), -1
    act = (b + w[0] * x[0] + w[1] * x[1]).relu()
    loss = (1 + -y * act).relu()
    leaves = x + w + [b]
    plain, fused = both_ways(loss, [loss, act] + leaves, leaves)
    assert fused == plain
    assert lib.rg_replay_program() == 1
    assert all(g[1][1] != bits(0.0)[1] for g in fused[2:6])   # the grads reach the leaves


@pytest.mark.parametrize("scale", [0.5, 2], ids=["float-grad", "int-grad"])
def test_a_dot_of_ints_under_a_float_grad_gives_its_factors_float_grads(scale):
    """A dot whose sum gets a float grad (times 0.5) passes floats down, and
    every factor's grad is a float in micrograd, whole numbers included
    (0.5 * 2 is 1.0, not 1): the program's float path must clear their int
    bits. Times 2, every grad stays an int."""
    w = [Value(v) for v in (2, 4, 6)]
    x = [Value(v) for v in (2, -2, 4)]
    b = Value(1)
    root = (b + w[0] * x[0] + w[1] * x[1] + w[2] * x[2]) * scale
    leaves = w + x + [b]
    plain, fused = both_ways(root, [root] + leaves, leaves)
    assert fused == plain
    assert lib.rg_replay_program() == 1          # the dot, root its tail
    kind = "float" if isinstance(scale, float) else "int"
    assert [g[1][0] for g in fused[1:]] == [kind] * 7


# ---- random graphs of neurons ------------------------------------------------

LEAF = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([2**53 - 1, 2**53 + 2, -(2**52) - 1, 3**34]),
    st.sampled_from([0.5, -0.0, 0.0, -1.25, 1e-300, 3.0, 2.5e15, -7.75]),
)
TERM = st.tuples(st.integers(0, 99), st.integers(0, 99),       # w, x
                 st.booleans(), st.booleans(),                  # x * w, p + acc
                 st.sampled_from([None, None, None, "product", "sum"]))   # read again
NEURON = st.tuples(st.integers(0, 99), st.lists(TERM, min_size=1, max_size=6),
                   st.sampled_from(["relu", "tanh", None]))


@st.composite
def graphs(draw):
    return (draw(st.lists(LEAF, min_size=2, max_size=6)),
            draw(st.lists(NEURON, min_size=1, max_size=5)),
            draw(st.lists(st.booleans(), min_size=4, max_size=4)))


def build(case):
    values, neurons, joins = case
    leaves = [Value(v) for v in values]
    pool, nodes = list(leaves), []
    for start, terms, act in neurons:
        acc = pool[start % len(pool)]
        for w, x, swap, left, again in terms:
            a, b = pool[w % len(pool)], pool[x % len(pool)]
            p = b * a if swap else a * b
            acc = p + acc if left else acc + p
            nodes += [p, acc]
            if again:                        # read by another node: a chain ends here
                pool.append(p if again == "product" else acc)
        out = acc.relu() if act == "relu" else acc.tanh() if act == "tanh" else acc
        nodes.append(out)
        pool.append(out)
    root = pool[len(leaves)]
    for k, v in enumerate(pool[len(leaves) + 1:]):
        root = root * v if joins[k % 4] else root + v
        nodes.append(root)
    return root, nodes + leaves, leaves


@settings(max_examples=150, deadline=None)
@given(graphs())
def test_random_neurons_give_the_bits_of_the_ops_one_by_one(case):
    root, nodes, leaves = build(case)
    try:
        plain = run(root, nodes, leaves, True, "fbb")
    except (ArithmeticError, ValueError):
        return                               # anomaly mode refused an inf or a NaN
    fused = run(root, nodes, leaves, False, "fbb")
    assert fused == plain
    same_backward_alone(root, nodes, leaves)


def test_a_program_is_made_again_after_a_compaction():
    root, nodes, leaves = chains()
    plain = run(root, nodes, leaves, True, "fb")
    fused = run(root, nodes, leaves, False, "fb")
    junk = [Value(1.0) * 2 for _ in range(1000)]
    del junk
    rgrad.collect()                          # moves the nodes: the tape's indices go
    again = run(root, nodes, leaves, False, "fb")
    assert plain == fused == again
    assert math.isfinite(root.data)


# ---- runs: nodes each read only by the next ----------------------------------

def runs():
    """Runs as they are written: micrograd's loss (1 + -y * score).relu(), a
    chain acc * 0.999 + x, the node before on either side, int constants and
    float ones, ints past 2**53, int zeros with and without a sign, relu of
    negatives (micrograd's int 0), and a node read twice (a run ends there)."""
    xs = [Value(v) for v in (2, -0.5, 3, 0, -7, 2**53 - 1, 0.25)]
    y, score = Value(-1), Value(0.75)
    nodes = []

    def keep(v):
        nodes.append(v)
        return v

    loss = keep(keep(1 + keep(keep(-y) * score)).relu())
    acc = Value(0)
    for x in xs:
        acc = keep(keep(acc * 0.999) + x)
    ints = Value(3)
    for x in (xs[0], xs[2]):                           # 86
        ints = keep(keep(keep(x * ints) + 1) * 2)
    # int zeros keep no sign (-0.0 in doubles), so -0.0 + each of them is +0.0
    nz = Value(-0.0)
    zeros = [keep(keep(-ints) * 0),                    # MULC
             keep(keep(ints * -5) * xs[3]),            # MUL, the run's node on the left
             keep(keep(ints * -1) * xs[3]),
             keep(keep(xs[3] * keep(-ints))),          # on the right
             keep(-keep(keep(ints - ints) * 2))]       # NEG of an int 0
    signs = [keep(keep(z + nz) * 1.5) for z in zeros]
    floats = [keep(keep(xs[0] * 3) + 2.0),             # an int plus a float: a float
              keep(2.0 + keep(xs[2] * 2)), keep(keep(xs[2] * 2) * 1.0)]
    big = keep(keep(xs[5] * 3) + 2**60)
    neg = keep(keep(xs[4] * 2).relu() + keep(keep(-xs[1]).relu() * xs[4]))
    twice = keep(acc * 1.5)
    split = keep(keep(twice + 1) * keep(twice - 1))    # twice read twice
    root = keep(loss + acc + sum(signs) + sum(floats) + big + neg + split)
    leaves = xs + [y, score, nz]
    return root, nodes + leaves, leaves


def test_runs_give_the_bits_of_the_ops_one_by_one():
    root, nodes, leaves = runs()
    plain, fused = both_ways(root, nodes, leaves)
    assert fused == plain
    assert 0 < lib.rg_replay_program() < lib.rg_tape(root._s, rgrad._rgrad.ffi.NULL, 0) / 2
    assert any(g[1][0] == "float" and g[1][1] != bits(0.0)[1] for g in fused)
    assert any(g[1][0] == "int" and g[1][1] != bits(0)[1] for g in fused)


@pytest.mark.parametrize("grads", [[0.5, -0.0, 3, 0, -2.25], [1, 2, 0, -0.0]],
                         ids=["floats-and-ints", "ints"])
def test_runs_backward_alone_adds_to_the_grads_it_finds(grads):
    root, nodes, leaves = runs()
    start = [grads[k % len(grads)] for k in range(len(nodes))]
    assert backward_from(root, nodes, leaves, start, False) == \
        backward_from(root, nodes, leaves, start, True)


RUN_STEP = st.tuples(
    st.sampled_from(["add", "radd", "mul", "rmul", "addc", "raddc", "mulc", "rmulc",
                     "neg", "relu", "sub", "square"]),
    st.integers(0, 99),                                   # the other child
    st.sampled_from([2, -1, 0, 3, 0.5, -0.0, 2.0, 2**53 + 2]),   # a constant
    st.booleans())                                        # read again later


def step_on(v, op, other, c):
    return {"add": lambda: v + other, "radd": lambda: other + v, "mul": lambda: v * other,
            "rmul": lambda: other * v, "addc": lambda: v + c, "raddc": lambda: c + v,
            "mulc": lambda: v * c, "rmulc": lambda: c * v, "neg": lambda: -v,
            "relu": lambda: v.relu(), "sub": lambda: v - other, "square": lambda: v * v}[op]()


@settings(max_examples=150, deadline=None)
@given(st.lists(LEAF, min_size=1, max_size=5), st.lists(RUN_STEP, min_size=1, max_size=25))
def test_random_runs_give_the_bits_of_the_ops_one_by_one(values, steps):
    leaves = [Value(v) for v in values]
    pool, nodes = list(leaves), []
    v = leaves[0]
    for op, other, c, again in steps:
        v = step_on(v, op, pool[other % len(pool)], c)
        nodes.append(v)
        if again:
            pool.append(v)
    root = v
    for k, u in enumerate(pool[len(leaves):-1]):
        root = root + u if k % 2 else root * u
        nodes.append(root)
    nodes += leaves
    try:
        plain = run(root, nodes, leaves, True, "fbb")
    except (ArithmeticError, ValueError):
        return
    assert run(root, nodes, leaves, False, "fbb") == plain
    same_backward_alone(root, nodes, leaves)


def test_without_memory_for_the_program_replay_goes_node_by_node():
    """An allocation that fails while the program is made leaves none made
    (rg_replay_program: -1), and that step walks the nodes one by one, with
    the same bits; the next step makes it."""
    root, nodes, leaves = chains()
    rgrad.collect()                          # frees any program made before
    plain = run(root, nodes, leaves, True, "fb")
    for v in leaves:
        v.grad = 0
    with no_memory():                        # the program's first allocation fails
        root.forward()
    assert lib.rg_replay_program() == -1
    with no_memory():
        root.backward()
    assert lib.rg_replay_program() == -1
    assert snapshot(nodes) == plain
    assert run(root, nodes, leaves, False, "fb") == plain
    assert lib.rg_replay_program() > 0


def test_a_tape_that_cannot_be_made_leaves_no_program_behind():
    """forward() on a second root whose tape has no memory to grow raises
    MemoryError and leaves no program: not the first root's (whose count
    rg_replay_program would report), nor a stale one that replay could run."""
    root, nodes, leaves = chains()
    plain = run(root, nodes, leaves, True, "fb")
    root.forward()
    assert lib.rg_replay_program() > 0
    acc = Value(0.5)
    for k in range(3000):                    # a longer tape than the first
        acc = acc * 0.5 + k
    with no_memory(), pytest.raises(MemoryError):
        acc.forward()
    assert lib.rg_replay_program() == -1
    assert run(root, nodes, leaves, False, "fb") == plain
    acc.forward()
    assert acc.data > 0 and lib.rg_replay_program() == 1
