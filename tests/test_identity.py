"""One Python object per node (issue #9), against the machinery behind it:
the map from node to handle in C (csrc/objects.c), which compaction rebuilds;
Values that collection keeps as long as their node lives (subclass instances,
Values with attributes); new children assigned to `_prev`. tests/test_dropin.py
holds the same behaviour against micrograd itself.

Every collection test runs twice: with C reading the objects' headers (the
normal path on CPython 3.11) and with the pure-Python path that other
versions take."""
import gc

import micrograd.engine
import pytest

import rgrad
from rgrad import Value
from rgrad import collection


@pytest.fixture(params=["C reads objects", "Python reads objects"])
def sweep(request, monkeypatch):
    """Which way collection looks at objects."""
    if request.param == "Python reads objects":
        monkeypatch.setattr(collection, "_probe_ok", False)
    elif not collection._probe_ok:
        pytest.skip("C reads objects on CPython 3.11 only")
    return request.param


def full_collection():
    gc.collect()
    rgrad.collect()


def churn(n=5000):
    """Makes and drops n Values, so that young collections run."""
    for _ in range(n):
        Value(1.0) * 2.0


class Named(Value):
    """A subclass: its instances live as long as their node does."""


def test_prev_gives_the_object_that_made_the_node_after_compactions(sweep):
    a, k = Value(1.0), Value(2.0)
    b = a * k
    for _ in range(3):
        churn()
        full_collection()
    assert rgrad.stats()["collections"] >= 3
    assert {id(c) for c in b._prev} == {id(a), id(k)}


def test_an_object_reached_through_prev_stays_the_same_while_held(sweep):
    a = Value(1.0)
    b = a * 2.0 + 1.0
    (mul,) = [c for c in b._prev if c._op == "*"]
    churn()
    full_collection()
    assert any(c is mul for c in b._prev)


@pytest.mark.parametrize("mark", ["attribute", "subclass"])
def test_a_dropped_object_with_attributes_or_of_a_subclass_lives_with_its_node(sweep, mark):
    x = Named(3.0) if mark == "subclass" else Value(3.0)
    x.tag = "x"
    y = x * 2.0
    del x
    churn()
    full_collection()
    (child,) = rgrad.engine._children(y)      # (_prev also holds a leaf for 2.0)
    assert child.tag == "x"
    assert type(child) is (Named if mark == "subclass" else Value)


@pytest.mark.parametrize("mark", ["attribute", "subclass", "plain"])
def test_objects_kept_for_their_node_go_with_it(sweep, mark):
    full_collection()
    before = rgrad.stats()["handles"]
    for _ in range(200):
        x = Named(3.0) if mark == "subclass" else Value(3.0)
        if mark == "attribute":
            x.tag = "x"
        y = x * 2.0
        del x
        len(y._prev)
    del y
    churn()
    full_collection()
    full_collection()
    assert rgrad.stats()["handles"] <= before + 1


def test_a_plain_object_nobody_holds_is_collected_and_made_again(sweep):
    a = Value(1.0)
    b = a * 2.0
    del a
    churn()
    full_collection()
    held = rgrad.stats()["handles"]
    (child,) = rgrad.engine._children(b)
    assert child.data == 1.0
    assert rgrad.stats()["handles"] == held + 1


def test_a_child_listed_twice_is_one_object():
    a = Value(2.0)
    square = Value(4.0, (a, a), "square")
    kids = rgrad.engine._children(square)
    assert len(kids) == 2 and kids[0] is kids[1] is a
    fresh = Value(4.0, (Value(2.0),) * 2, "square")
    kids = rgrad.engine._children(fresh)
    assert kids[0] is kids[1]


def test_prev_of_many_children_is_each_child_object():
    xs = [Value(float(i)) for i in range(3000)]
    total = Value(sum(x.data for x in xs), tuple(xs), "sum")
    assert [id(c) for c in rgrad.engine._children(total)] == [id(x) for x in xs]


def test_values_are_their_own_hash_and_equality():
    a = Value(1.0)
    assert hash(a) == object.__hash__(a)
    assert a == a and a != Value(1.0) and a != 1.0
    assert len({a, *(a * a)._prev}) == 1


# ---- assigning _prev -----------------------------------------------------


def test_prev_assigned_on_a_new_leaf_makes_a_python_op():
    a, b = Value(2.0), Value(3.0)
    out = Value(a.data * b.data)
    out._prev = {a, b}
    out._op = "*"

    def _backward():
        a.grad += b.data * out.grad
        b.grad += a.data * out.grad
    out._backward = _backward
    out.backward()
    assert (a.grad, b.grad) == (3.0, 2.0)
    assert out._prev == {a, b} and out._op == "*"


def test_prev_assigned_children_made_after_the_node_moves_it_keeping_what_python_keeps():
    out = Value(0.0, label="out")
    out.color = "red"
    xs = [Value(float(i)) for i in range(1, 5)]   # made after out
    out._op = "sum"
    out._prev = xs
    out.data = sum(x.data for x in xs)

    def _backward():
        for x in xs:
            x.grad += out.grad
    out._backward = _backward
    loss = out * 2.0
    loss.backward()
    assert [x.grad for x in xs] == [2.0] * 4
    assert (out.label, out._op, out.color, out.data) == ("out", "sum", "red", 10.0)
    assert [id(c) for c in rgrad.engine._children(out)] == [id(x) for x in xs]
    churn()
    full_collection()
    assert loss.data == 20.0 and [id(c) for c in rgrad.engine._children(loss)] == [id(out)]


def test_prev_assigned_the_same_children_changes_nothing():
    a, b = Value(2.0), Value(3.0)
    c = a + b
    c._prev = {b, a}
    c.backward()
    assert (a.grad, b.grad) == (1.0, 1.0) and c._op == "+"


@pytest.mark.parametrize("case, message", [
    ("built-in op", "a built-in op made it"),
    ("used by another node", "other Values were computed from it"),
    ("itself", "its own child"),
])
def test_prev_that_cannot_be_honoured_raises_and_changes_nothing(case, message):
    a, b = Value(2.0), Value(3.0)
    if case == "built-in op":
        node, kids = a * b, {a}
    elif case == "used by another node":
        node, kids = Value(1.0), {a, b}
        parent = node * 2.0
    else:
        node = Value(1.0, (a,), "f")
        kids = {node, a}
    before = (node._op, {id(c) for c in node._prev})
    with pytest.raises(ValueError, match=message):
        node._prev = kids
    assert (node._op, {id(c) for c in node._prev}) == before
    if case == "used by another node":
        parent.backward()
        assert node.grad == 2.0


def test_prev_must_hold_values():
    with pytest.raises(TypeError, match="_prev must hold Values"):
        Value(1.0)._prev = {1.0}


def test_a_backward_that_does_nothing_leaves_a_leaf_a_leaf():
    v = Value(1.0)
    v._backward = lambda: None
    assert v._op == "" and rgrad.engine.lib.rg_op(v._s) == rgrad.engine.lib.RG_LEAF
    calls = []
    v._backward = lambda: calls.append(1)
    (v * 1.0).backward()
    assert calls == [1]
    v._backward = lambda: None      # replaces the closure
    (v * 1.0).backward()
    assert calls == [1]


# ---- constant operands ---------------------------------------------------


def test_constant_leaves_go_with_their_node(sweep):
    full_collection()
    before = rgrad.stats()["handles"]
    for _ in range(300):
        y = Value(2.0) * 3.0 + 1.0
        assert len(y._prev) == 2
        assert all(len(c._prev) == 2 for c in y._prev if c._op)
    del y
    for _ in range(3):
        churn()
        full_collection()
    assert rgrad.stats()["handles"] <= before + 1
    assert not collection._constants


def test_a_held_constant_leaf_keeps_its_grad_readable():
    y = Value(2.0) * 3.0
    y.backward()
    (c,) = [v for v in y._prev if isinstance(v, rgrad.engine.Constant)]
    del y
    churn()
    full_collection()
    assert (c.data, c.grad) == (3.0, 2.0)


# ---- found in review: each of these failed before its fix ----------------


def test_values_take_no_weak_references():
    # one could bring back a Value that a collection has counted dead
    import weakref
    with pytest.raises(TypeError):
        weakref.ref(Value(1.0))


def test_prev_after_a_collection_cut_short_gives_no_dead_object(monkeypatch):
    """A collection interrupted after it chose its dead Values (a signal
    handler raising just before C frees them) is finished before `_prev`
    reads the registry: the dead Value is not handed out again."""
    real = collection.lib

    class Interrupting:
        def __getattr__(self, name):
            if name == "rg_collect":
                def interrupted(*args):
                    monkeypatch.setattr(collection, "lib", real)
                    raise KeyboardInterrupt
                return interrupted
            return getattr(real, name)

    a = Value(1.0)
    b = a * 2.0
    top = b + 3.0
    dead_slot = b._s
    del b
    monkeypatch.setattr(collection, "lib", Interrupting())
    with pytest.raises(KeyboardInterrupt):
        rgrad.collect()
    assert collection._releasing                 # cut short, to be finished
    (mul,) = rgrad.engine._children(top)
    assert mul._s != dead_slot and mul.data == 2.0
    churn()
    full_collection()
    assert mul.data == 2.0 and top.data == 5.0


def test_a_node_keeps_its_object_after_a_second_handle_to_it_goes():
    """Two handles to one node (a finalizer reading _prev inside a
    collection gets its own): whichever goes first, the node still maps to
    the other, so _prev gives the object that is still alive."""
    a = Value(1.0)
    top = a * 2.0
    out = []
    rgrad.engine._graph._new_children(top._s, out)     # the finalizer's path
    (second,) = [c for c in out if c is not a and c.data == 1.0]
    slot = a._s
    del a
    if slot not in collection._batch:            # a young collection frees it,
        collection._batch.append(slot)           # with no compaction after
    collection._run(collection._collect_young)
    assert not rgrad.engine.lib.rg_valid(slot)
    (child,) = rgrad.engine._children(top)
    assert child is second


def test_a_young_collection_frees_every_value_of_its_batch_that_died(sweep):
    """Values that die young are found when their batch of slots runs out:
    each dead one's slot is then free in C and back on Python's lists, and
    nothing of it stays in the registry (no full collection needed)."""
    full_collection()
    keep = []
    a = Value(1.0)
    for k in range(3 * collection._BATCH):
        v = a * 2.0
        if k % 7 == 0:
            keep.append(v)
    del v
    taken = collection._batch
    collection._run(collection._collect_young)
    free = set(collection._free) | set(collection._spare)
    held = {v._s for v in keep} | {a._s}
    for s in taken:
        alive = collection._reg[s] is not None
        assert alive == (s in held) == rgrad.engine.lib.rg_valid(s)
        assert alive != (s in free)
    assert not collection._batch


def test_a_dict_made_empty_keeps_no_value_alive(sweep):
    full_collection()
    before = rgrad.stats()["handles"]
    for _ in range(500):
        v = Value(1.0) * 2.0
        vars(v)                  # makes its dict, empty (as copy and pickle do)
        del v
    churn()
    full_collection()
    assert rgrad.stats()["handles"] <= before + 1


def test_prev_assigned_after_a_parent_was_dropped_is_allowed():
    a, k = Value(1.0), Value(2.0)
    t = a * 2.0
    del t                        # a parent, gone but not yet collected
    a._prev = (k,)
    assert [id(c) for c in rgrad.engine._children(a)] == [id(k)]


def test_a_constant_is_no_longer_shown_once_its_node_is_an_op_defined_in_python():
    a = Value(2.0)
    y = a * 3.0
    assert len(y._prev) == 2

    def _backward():
        a.grad += 1.0
    y._backward = _backward
    assert y._prev == {a}
    y.backward()
    assert a.grad == 1.0


def test_an_object_prev_handed_out_keeps_its_id_while_its_node_lives(sweep):
    """A walk that remembers nodes only by id() (it holds no objects) while
    Values come and go: micrograd's graph keeps every object, so an id names
    one node for the whole walk. rgrad keeps each object _prev hands out for
    as long as its node lives, so the walk counts each node once, as the
    same code counts them on micrograd."""
    def build(V):
        x = V(0.5)
        shared = x * x + 1.0        # reached twice below
        return (shared * 2.0).relu() + shared * shared

    def ids(root, on_visit=None):
        seen = set()                # ids only: the walk holds no object

        def visit(v):
            if id(v) not in seen:
                seen.add(id(v))
                if on_visit:
                    on_visit(v)
                for c in v._prev:
                    visit(c)
        visit(root)
        return seen

    def collecting(_):
        churn(600)                  # young collections during the walk
        full_collection()

    y = build(Value)
    seen = ids(y, collecting)
    assert len(seen) == len(ids(build(micrograd.engine.Value)))
    assert ids(y) == seen
