"""The graph as micrograd code sees it: a node's children (`_prev`), each as
the one Value object of its node, and the leaves micrograd makes for constant
operands."""
from . import collection as _c
from ._rgrad import ffi, lib
from .collection import _constants
from .engine import Value, _bound, _check, _fresh, _isint, _made, _number, _reg


def prev(v):
    """v._prev: its children and the leaf for its constant operand, if any."""
    kids = set(_children(v))
    c = _constant_leaf(v)
    if c is not None:
        kids.add(c)
    return kids


def _children(v):
    """v's children in order, each as the one Value object of its node: the
    object Python holds for it, or a new one (that stays the node's object
    while it lives)."""
    out = []
    if not _c.exclusive(_find_children, v._s, out):
        _new_children(v._s, out)
    return out


def _find_children(s, out):
    # Runs with collection excluded: an object that only the registry holds,
    # read from it here, cannot be freed by a collection that has counted it
    # dead already. (One that an exception cut short is finished first: the
    # Values it was freeing are dead, though C may still map their nodes.)
    _c._resume()
    n = _check(lib.rg_children(s, ffi.NULL, 0))
    hs = ffi.new("int32_t[]", n)
    n = min(n, _check(lib.rg_children(s, hs, n)))
    objs = [_reg[h] if h >= 0 else None for h in ffi.unpack(hs, n)]
    missing = [k for k, o in enumerate(objs) if o is None]
    if missing:
        vs, fresh = _fresh(len(missing))
        ks = ffi.new("int32_t[]", missing)
        got = ffi.new("int32_t[]", len(missing))
        rc = lib.rg_bind_children(s, ks, fresh, len(missing), got)
        if rc:
            _made(rc, lib.rg_bind_children, s, ks, fresh, len(missing), got)
        # a child listed twice gets the Value made for its first place; the
        # Value made for the second was not bound, and is dropped
        for k, h in zip(missing, ffi.unpack(got, len(missing))):
            objs[k] = _reg[h]
        del vs
    out.extend(objs)


def _new_children(s, out):
    # This thread is collecting (a finalizer or a signal handler running inside
    # a collection reads _prev): the registry cannot be read safely, so each
    # child gets a Value of its own, which is not the node's object.
    for k in range(_check(lib.rg_nchildren(s))):
        (c,), hs = _fresh(1)
        out.append(_bound([c], hs, lib.rg_child, s, k, c._s)[0])


class Constant(Value):
    """The constant of `a + c`, `a * c` or `-a` (that is `a * -1`) as the leaf
    micrograd makes for it: a leaf holding c, with a grad of its own. rgrad
    keeps the constant in the node, so this leaf is made when `_prev` is first
    read; from then on each backward() that reaches the node adds to its grad
    what micrograd's would add (the node's grad, times the other operand's
    data for `* c`). Made after one backward() it starts from what that call
    gave; made after several, from what the last one alone would have given
    (micrograd's leaf would hold the sum of what each gave, which the node's
    grad no longer tells)."""

    __slots__ = ("_parent", "_grad")

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, x):
        self._grad = x if _isint(x) else _number(x)    # an int stays one

    def backward(self):
        # a leaf as the root: its grad is set to 1, as micrograd's would be
        Value.backward(self)
        self._grad = 1

    def __reduce__(self):
        # pickled as the plain leaf it stands for
        restore, args = Value.__reduce__(self)
        return restore, (Value,) + args[1:]


def _constant(parent):
    """(c, what a backward() that reaches parent's node adds to micrograd's
    leaf for c) for parent's node, or None if its op has no constant. Each is
    an int where micrograd's would be one."""
    value, grad = ffi.new("double *"), ffi.new("double *")   # (per call: threads)
    kind = _check(lib.rg_constant(parent._s, value, grad))
    if kind == 0:
        return None
    return _as_int(value[0], kind & 2), _as_int(grad[0], kind & 4)


def _as_int(x, isint):
    return int(x) if isint and x.is_integer() and abs(x) < 2**53 else x


def _constant_leaf(v):
    """The Constant for v's node (made the first time), or None."""
    i = lib.rg_id(v._s)
    c = _constants.get(i) if _constants else None
    if c is not None:
        return c
    got = _constant(v)
    if got is None:
        return None
    c = Value.__new__(Constant)
    # micrograd's leaf starts at int 0 and adds its share: untouched while
    # the node's own grad is an int 0 (no backward reached it), and 0 + -0.0
    # is 0.0
    g = v.grad
    c._parent, c._grad = v, (0 if type(g) is int and g == 0 else 0 + got[1])
    c.data = got[0]
    _check(lib.rg_flag(v._s))       # so that it is dropped when v's node is freed
    _constants[i] = c
    return c


def after_backward(root):
    """A backward() from root has run: each Constant whose node it reached
    gathers what micrograd's leaf would have."""
    cs = list(_constants.values())
    n = len(cs)
    hs = ffi.new("int32_t[]", [c._parent._s for c in cs])
    reached = ffi.new("uint8_t[]", n)
    _check(lib.rg_reached(root._s, hs, n, reached))
    for c, hit in zip(cs, reached):
        if hit:
            _gather(c)


def _gather(c):
    got = _constant(c._parent)
    if got is not None:
        c._grad += got[1]


def after_node_backward(v):
    """v's own backward step ran (manual backpropagation): its Constant, if
    it has one, gathers that step's share."""
    c = _constants.get(lib.rg_id(v._s))
    if c is not None:
        _gather(c)


def forget_constant(v):
    """v's node becomes an op defined in Python (a _backward assigned): its
    constant, if it had one, is no longer shown."""
    if _constants:
        _constants.pop(lib.rg_id(v._s), None)
