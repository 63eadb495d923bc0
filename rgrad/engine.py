"""Value: micrograd's autograd scalar, as a handle to a node in rgrad's C arena.

A Value holds one int, its handle. Each operator is one C call that appends a
node to the arena and returns the handle of the result. The C side holds the
formulas (csrc/rgrad.c); this file only dispatches and turns result codes into
exceptions.

Memory: a dying Value appends its handle to `_dead`. When the arena (or the
handle table) is due for a collection, C answers RG_COLLECT instead of making
the node; `_made` then hands `_dead` over, C frees those handles, compacts the
arena, and the call is made again. No handle refers to another, so Values form
no reference cycles and die as soon as they are dropped.
"""
import numbers
import threading

from ._rgrad import ffi, lib

__all__ = ["Value", "collect", "stats", "values", "get_data", "get_grad", "set_data"]

_dead = []                      # handles of dead Values, not yet handed to C
_collect_lock = threading.Lock()

_ERRORS = {
    lib.RG_EZERODIV: (ZeroDivisionError, "division by zero"),
    lib.RG_EDOMAIN: (ValueError, "math domain error"),
    lib.RG_EOVERFLOW: (OverflowError, "numerical result out of range"),
    lib.RG_ENOMEM: (MemoryError, "rgrad: no memory left to grow the node arena"),
    lib.RG_EHANDLE: (ValueError, "rgrad: this Value does not hold a live handle"),
}
_RG_COLLECT = lib.RG_COLLECT


def _error(code):
    kind, message = _ERRORS[code]
    return kind(message)


def _check(code):
    if code < 0:
        raise _error(code)
    return code


def collect(force=True):
    """Free the nodes no live Value can reach. rgrad does this by itself as the
    arena grows; calling it only makes it happen now."""
    with _collect_lock:
        n = len(_dead)
        batch = ffi.new("int32_t[]", _dead[:n])
        del _dead[:n]  # only collectors remove, and they hold the lock
        lib.rg_collect(batch, n, force)


def _made(code, fn, *args):
    """The handle that fn(*args) gave in place of `code`: collects and calls
    again while C asks for dead handles, raises for an error."""
    while code == _RG_COLLECT:
        collect(force=False)
        code = fn(*args)
    return _check(code)


def stats():
    """The arena's size: nodes held, capacity, nodes kept by the last
    collection, handles in use, collections run, bytes per node."""
    s = ffi.new("rg_stats *")
    lib.rg_get_stats(s)
    return {k: getattr(s, k) for k in
            ("nodes", "capacity", "live", "handles", "collections", "node_bytes")}


def _real(x):
    """x as a float for the arena, or None if x is not a real number.
    Raises OverflowError where float(x) does (an int past 1e308)."""
    t = type(x)
    if t is float:
        return x
    if t is int or isinstance(x, numbers.Real):
        return float(x)
    return None


_new = object.__new__


def _binary(with_value, with_const):
    """An operator method: one C call with the other operand's handle, or with
    it as a constant. with_value None: a Value operand is not supported."""
    def op(self, other):
        a, t = self._s, type(other)
        if t is Value:                      # the common cases first, cheaply
            b, fn = other._s, with_value
        elif t is float or t is int:        # cffi converts, with float()'s errors
            b, fn = other, with_const
        elif isinstance(other, Value):
            b, fn = other._s, with_value
        else:
            b, fn = _real(other), with_const
            if b is None:
                return NotImplemented
        if fn is None:
            return NotImplemented
        s = fn(a, b)
        if s < 0:
            s = _made(s, fn, a, b)
        out = _new(Value)
        out._s = s
        return out
    return op


def _unary(fn):
    def op(self):
        a = self._s
        s = fn(a)
        if s < 0:
            s = _made(s, fn, a)
        out = _new(Value)
        out._s = s
        return out
    return op


def _handle(s):
    out = _new(Value)
    out._s = s
    return out


_OP_NAMES = {
    lib.RG_LEAF: "", lib.RG_ADD: "+", lib.RG_ADDC: "+", lib.RG_SUB: "-",
    lib.RG_RSUBC: "-", lib.RG_MUL: "*", lib.RG_MULC: "*", lib.RG_DIV: "/",
    lib.RG_RDIVC: "/", lib.RG_NEG: "neg", lib.RG_RELU: "ReLU",
    lib.RG_TANH: "tanh", lib.RG_EXP: "exp", lib.RG_LOG: "log",
    lib.RG_SIGMOID: "sigmoid", lib.RG_SOFTPLUS: "softplus", lib.RG_POWV: "**",
}


class Value:
    """A scalar that remembers how it was computed, so that `backward()` can
    fill in d(root)/d(self) for everything it depends on."""

    __slots__ = ("_s",)

    def __init__(self, data, _children=(), _op=""):
        if _children:
            raise NotImplementedError(
                "rgrad: Value(data, _children) (an op defined in Python) is not "
                "supported yet; use the built-in operators")
        x = _number(data)
        s = lib.rg_leaf(x)
        if s < 0:
            s = _made(s, lib.rg_leaf, x)
        self._s = s

    def __del__(self, _append=_dead.append):
        # default argument: still bound while the interpreter shuts down
        try:
            _append(self._s)
        except AttributeError:  # __init__ raised before a handle was made
            pass

    __add__ = _binary(lib.rg_add, lib.rg_addc)             # self + other
    __radd__ = _binary(None, lib.rg_addc)                  # other + self
    __sub__ = _binary(lib.rg_sub, lib.rg_subc)             # self - other
    __rsub__ = _binary(None, lib.rg_rsubc)                 # other - self
    __mul__ = _binary(lib.rg_mul, lib.rg_mulc)             # self * other
    __rmul__ = _binary(None, lib.rg_mulc)                  # other * self
    __truediv__ = _binary(lib.rg_div, lib.rg_divc)         # self * other**-1
    __rtruediv__ = _binary(None, lib.rg_rdivc)             # other * self**-1
    __pow__ = _binary(lib.rg_powv, lib.rg_pow)             # self ** other
    __rpow__ = _binary(None, lib.rg_rpowc)                 # other ** self
    __neg__ = _unary(lib.rg_neg)                           # -self
    relu = _unary(lib.rg_relu)                             # max(self, 0)
    tanh = _unary(lib.rg_tanh)
    exp = _unary(lib.rg_exp)
    log = _unary(lib.rg_log)                               # natural log
    sigmoid = _unary(lib.rg_sigmoid)                       # 1 / (1 + exp(-self))
    softplus = _unary(lib.rg_softplus)                     # log(1 + exp(self))

    def forward(self):
        """Recompute, in C, the data of every node this one depends on from the
        current data of its leaves, and zero those nodes' grads (leaves keep
        theirs). After a parameter update, `loss.forward(); loss.backward()`
        gives what rebuilding the graph would."""
        _check(lib.rg_forward(self._s))

    def backward(self):
        """Set this node's grad to 1 and add d(self)/d(node) into the grad of
        every node it depends on, as micrograd does (grads accumulate)."""
        _check(lib.rg_backward(self._s))

    @property
    def data(self):
        x = lib.rg_data(self._s)
        if x != x and not lib.rg_valid(self._s):
            raise _error(lib.RG_EHANDLE)
        return x

    @data.setter
    def data(self, x):
        _check(lib.rg_set_data(self._s, _number(x)))

    @property
    def grad(self):
        x = lib.rg_grad(self._s)
        if x != x and not lib.rg_valid(self._s):
            raise _error(lib.RG_EHANDLE)
        return x

    @grad.setter
    def grad(self, x):
        _check(lib.rg_set_grad(self._s, _number(x)))

    @property
    def _prev(self):
        """The children, as a set of Values (as micrograd keeps them)."""
        s = self._s
        children = set()
        for i in range(_check(lib.rg_nchildren(s))):
            c = lib.rg_child(s, i)
            if c < 0:
                c = _made(c, lib.rg_child, s, i)
            children.add(_handle(c))
        return children

    @property
    def _op(self):
        op = _check(lib.rg_op(self._s))
        if op == lib.RG_POW:
            return f"**{_short(lib.rg_arg(self._s))}"
        if op == lib.RG_RPOWC:
            return f"{_short(lib.rg_arg(self._s))}**"
        return _OP_NAMES[op]

    def __eq__(self, other):
        # handles to one node are one Value (as a micrograd object is itself)
        if isinstance(other, Value):
            return bool(lib.rg_same(self._s, other._s))
        return NotImplemented

    def __hash__(self):
        return _check(lib.rg_id(self._s))

    def __reduce__(self):
        # pickle and copy give a leaf with the same data and grad
        return (_leaf, (self.data, self.grad))

    def __repr__(self):
        return f"Value(data={self.data}, grad={self.grad})"


def _short(k):
    return int(k) if k.is_integer() else k


def _number(x):
    c = _real(x)
    if c is None:
        raise TypeError(f"must be a real number, not {type(x).__name__!r}")
    return c


def _leaf(data, grad):
    v = Value(data)
    v.grad = grad
    return v


# ---- many values at once ----------------------------------------------------

def _doubles(xs):
    """xs (a sequence of real numbers, or a numpy array) as a C double array."""
    if hasattr(xs, "__array_interface__"):
        import numpy as np
        arr = np.ascontiguousarray(xs, dtype=np.float64).ravel()
        return ffi.from_buffer("double[]", arr), len(arr)
    xs = [_number(x) for x in xs]
    return ffi.new("double[]", xs), len(xs)


def _handles(vs):
    vs = list(vs)
    for v in vs:
        if not isinstance(v, Value):
            raise TypeError(f"expected Values, got {type(v).__name__!r}")
    return ffi.new("int32_t[]", [v._s for v in vs]), len(vs)


def values(xs):
    """A list of new leaf Values, one per number of xs (a sequence or a numpy
    array), made in one C call."""
    buf, n = _doubles(xs)
    out = ffi.new("int32_t[]", n)
    _made(lib.rg_leaves(buf, n, out), lib.rg_leaves, buf, n, out)
    return [_handle(h) for h in ffi.unpack(out, n)]


def _get(vs, which):
    hs, n = _handles(vs)
    out = ffi.new("double[]", n)
    _check(lib.rg_get_many(hs, n, which, out))
    try:
        import numpy as np
    except ImportError:
        return ffi.unpack(out, n)
    return np.frombuffer(ffi.buffer(out), dtype=np.float64).copy()


def get_data(vs):
    """The data of many Values: a numpy array if numpy is installed, else a list."""
    return _get(vs, lib.RG_DATA)


def get_grad(vs):
    """The grads of many Values: a numpy array if numpy is installed, else a list."""
    return _get(vs, lib.RG_GRAD)


def set_data(vs, xs):
    """Load xs[i] into vs[i].data for all i, in one C call."""
    hs, n = _handles(vs)
    buf, m = _doubles(xs)
    if m != n:
        raise ValueError(f"set_data: {n} Values but {m} numbers")
    _check(lib.rg_set_many(hs, n, lib.RG_DATA, buf))
