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

Ops defined in Python (micrograd's extension pattern: `Value(data, (self,),
'tanh')` and an `out._backward` closure) are RG_PY nodes. Python keeps what
belongs to such a node (its name, label, closure) in dicts keyed by the node's
id, and C reports the ids of the nodes it frees so that they are dropped. The
closure must live as long as its node, and it holds `out`, a Value of that very
node: so at each collection, a Value that nothing but such closures refers to
(counted with sys.getrefcount) is not a root. Its node then lives only as long
as something else reaches it. Only a closure's own cells are looked at: a
closure that reaches its `out` some other way (a list, a default argument)
keeps that node until the closure itself is dropped, and where Python cannot
count references (PyPy) closure-owning nodes are never freed.
"""
import contextlib
import numbers
import os
import sys
import threading

from ._rgrad import ffi, lib

__all__ = ["Value", "Function", "collect", "stats", "values", "get_data",
           "get_grad", "set_data", "set_max_nodes", "detect_anomaly"]

_dead = []                      # handles of dead Values, not yet handed to C
_collect_lock = threading.Lock()

_ERRORS = {
    lib.RG_EZERODIV: (ZeroDivisionError, "division by zero"),
    lib.RG_EDOMAIN: (ValueError, "math domain error"),
    lib.RG_EOVERFLOW: (OverflowError, "numerical result out of range"),
    lib.RG_ENOMEM: (MemoryError, "rgrad: no memory left to grow the node arena"),
    lib.RG_EHANDLE: (ValueError, "rgrad: this Value does not hold a live handle"),
}
_RG_PYGRAPH = lib.RG_PYGRAPH
_RG_EBUDGET = lib.RG_EBUDGET
_RG_COLLECT = lib.RG_COLLECT


def _error(code):
    if code == lib.RG_EBUDGET:
        s = stats()
        return MemoryError(
            f"rgrad: the node budget of {s['max_nodes']:,} nodes is spent: "
            f"{s['nodes']:,} nodes are still reachable from live Values. Drop "
            "graphs you no longer need, or raise the budget with "
            "rgrad.set_max_nodes(n) or the RGRAD_MAX_NODES environment variable.")
    if code == lib.RG_EANOMALY:
        return _anomaly_error()
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
        while True:
            n = len(_dead)
            batch = ffi.new("int32_t[]", _dead[:n])
            del _dead[:n]  # only collectors remove, and they hold the lock
            weak = _held_only_by_closures()
            compacted = lib.rg_collect(batch, n, ffi.new("int32_t[]", weak),
                                       len(weak), force)
            # Dropping a freed node's closure may free Values that only it
            # held (a Python op's input made by another Python op): go again.
            if not (_forget_freed_nodes() and compacted):
                return
            force = True


def _forget_freed_nodes():
    """Drop what Python kept for nodes C has freed; whether a closure went."""
    ids = ffi.new("uint64_t[]", 1024)
    closures = len(_closures)
    while True:
        k = lib.rg_take_dead(ids, 1024)
        for i in ffi.unpack(ids, k):
            _forget(i)
        if k < 1024:
            return len(_closures) < closures


def _made(code, fn, *args):
    """The handle that fn(*args) gave in place of `code`: collects and calls
    again while C asks for dead handles, raises for an error."""
    retried = False
    while code == _RG_COLLECT or (code == _RG_EBUDGET and _dead and not retried):
        retried |= code == _RG_EBUDGET  # dead Values C has not seen: collect once
        collect(force=code == _RG_EBUDGET)
        code = fn(*args)
    return _check(code)


def stats():
    """The arena's size: nodes held, capacity, nodes kept by the last
    collection, handles in use, collections run, bytes per node, the budget."""
    s = ffi.new("rg_stats *")
    lib.rg_get_stats(s)
    return {k: getattr(s, k) for k in ("nodes", "capacity", "live", "handles",
                                       "collections", "node_bytes", "max_nodes")}


def set_max_nodes(n):
    """Cap the arena at n nodes (None: no cap). Making a node past the cap
    raises MemoryError (after a collection, if one could make room); the engine
    stays usable. RGRAD_MAX_NODES in the environment sets it at import."""
    if n is None:
        n = 2**31 - 1
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"set_max_nodes takes a whole number >= 1 or None, not {n!r}")
    _check(lib.rg_set_max_nodes(min(int(n), 2**31 - 1)))


@contextlib.contextmanager
def detect_anomaly():
    """Within this block (in this thread), the first built-in op whose forward
    result, or whose backward gradient, is NaN or infinite raises
    FloatingPointError naming the op and its inputs. Outside it NaN and
    infinity propagate as in Python floats, and nothing is checked."""
    lib.rg_anomaly(1)
    try:
        yield
    finally:
        lib.rg_anomaly(-1)


def _anomaly_error():
    d = ffi.new("rg_anomaly_info *")
    lib.rg_anomaly_info_get(d)
    name = _op_name(d.op, d.arg)
    inputs = ", ".join(repr(d.inp[k]) for k in range(d.nin))
    if d.backward:
        where = (f"backward of {name!r} (output data {d.out!r}, grad {d.grad!r}) "
                 f"passed a gradient of {d.value!r} to its inputs")
    else:
        where = f"forward of {name!r} gave {d.value!r}"
    return FloatingPointError(f"rgrad anomaly: {where}; input data: ({inputs})")


def _real(x):
    """x as a float for the arena, or None if x is not a real number.
    Raises OverflowError where float(x) does (an int past 1e308)."""
    t = type(x)
    if t is float:
        return x
    if t is int or isinstance(x, numbers.Real):
        return float(x)
    np = sys.modules.get("numpy")      # numpy's bool is no numbers.Real, unlike bool
    if np is not None and isinstance(x, np.bool_):
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
    # the operator methods above inline this: one call fewer per op
    out = _new(Value)
    out._s = s
    return out


_OP_NAMES = {
    lib.RG_LEAF: "", lib.RG_ADD: "+", lib.RG_ADDC: "+", lib.RG_MUL: "*",
    lib.RG_MULC: "*", lib.RG_NEG: "neg", lib.RG_RELU: "ReLU",
    lib.RG_TANH: "tanh", lib.RG_EXP: "exp", lib.RG_LOG: "log",
    lib.RG_SIGMOID: "sigmoid", lib.RG_SOFTPLUS: "softplus", lib.RG_POWV: "**",
    lib.RG_PY: "",
}


def _nothing():
    pass


# ---- what Python keeps for nodes of ops defined in Python, by node id -------

_names = {}        # id -> the _op string given to Value(data, _children, _op)
_labels = {}       # id -> label
_closures = {}     # id -> (_backward closure, its cells that hold a Value of the node)
_forwards = {}     # id -> (Function subclass, its input Values), for replay


def _forget(i):
    """C freed node i: drop what Python kept for it."""
    for table in (_names, _labels, _closures, _forwards):
        table.pop(i, None)


def _own_cells(fn, s):
    """The cells of closure fn that hold a Value of handle s's node."""
    cells = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            v = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(v, Value) and lib.rg_same(v._s, s):
            cells.append(cell)
    return tuple(cells)


def _held_only_by_closures(_refcount=getattr(sys, "getrefcount", None)):
    """Handles of Values that only their own node's closure refers to. (Where
    Python cannot count references, there are none: such nodes then stay.)"""
    weak = []
    if _refcount is None:
        return weak
    for _, cells in list(_closures.values()):
        # A cell is referenced by the closure, by `cells`, by `cell` here and
        # by getrefcount's argument; one more is the frame that made it, still
        # running (between `out._backward = ...` and `return out`): then the
        # Value is in use even though only the cell holds it.
        busy = False
        for cell in cells:
            busy = busy or _refcount(cell) > 4
        if busy:
            continue
        held = [_contents(cell) for cell in cells]
        for v in held:
            # the references: c cells and c entries of `held`, `v` here, and
            # getrefcount's argument, where c cells hold v
            if isinstance(v, Value) and _refcount(v) <= 2 * sum(h is v for h in held) + 2:
                weak.append(v._s)
    return weak


def _contents(cell):
    try:
        return cell.cell_contents
    except ValueError:  # the variable was deleted in its function
        return None


def _walk(root, backward):
    """backward() or forward() over a graph that may hold Python ops: C runs
    the built-in ops between them; Python runs each Python op in its turn."""
    _check(lib.rg_pin(1))
    try:
        n = _check(lib.rg_tape(root, ffi.NULL, 0))
        tape = ffi.new("int32_t[]", n)
        _check(lib.rg_tape(root, tape, n))
        pos = ffi.new("int32_t *", n - 1 if backward else 0)
        node = ffi.new("uint64_t *")
        if backward:
            _check(lib.rg_set_grad(root, 1.0))
        while True:
            rc = lib.rg_run(tape, n, pos, backward, node)
            if rc != _RG_PYGRAPH:
                _check(rc)
                return
            i = node[0]
            if backward:
                entry = _closures.get(i)
                if entry is not None:
                    entry[0]()
            else:
                _replay_python_op(i)
            pos[0] += -1 if backward else 1
    finally:
        lib.rg_pin(-1)


def _replay_python_op(i):
    entry, closure = _forwards.get(i), _closures.get(i)
    if entry is None or closure is None or not closure[1]:
        raise RuntimeError(
            f"forward(): the graph holds the op {_names.get(i, '')!r}, defined in "
            "Python with a _backward closure only, and its data cannot be "
            "recomputed; define it as an rgrad.Function to make it replayable")
    cls, inputs = entry
    out = _contents(closure[1][0])
    out.data = cls.forward(*[x.data for x in inputs])
    out.grad = 0.0


class Value:
    """A scalar that remembers how it was computed, so that `backward()` can
    fill in d(root)/d(self) for everything it depends on."""

    __slots__ = ("_s",)

    def __init__(self, data, _children=(), _op="", label=""):
        x = _number(data)
        if _children:        # an op defined in Python: data computed there
            kids = tuple(_children)
            for k in kids:
                if not isinstance(k, Value):
                    raise TypeError(f"_children must be Values, not {type(k).__name__!r}")
            hs = ffi.new("int32_t[]", [k._s for k in kids])
            s = lib.rg_custom(x, hs, len(kids))
            if s < 0:
                s = _made(s, lib.rg_custom, x, hs, len(kids))
        else:
            s = lib.rg_leaf(x)
            if s < 0:
                s = _made(s, lib.rg_leaf, x)
        self._s = s
        if _op or label:
            _check(lib.rg_flag(s))
            i = lib.rg_id(s)
            if _op:
                _names[i] = str(_op)
            if label:
                _labels[i] = str(label)

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
        gives what rebuilding the graph would. Ops defined in Python are
        replayed if they are rgrad.Functions; otherwise this raises
        RuntimeError naming the op."""
        rc = lib.rg_forward(self._s)
        if rc == _RG_PYGRAPH:
            _walk(self._s, False)
        else:
            _check(rc)

    @property
    def _backward(self):
        """This node's own step of backpropagation: adds its grad, times its
        local derivatives, into its children's grads (once per call)."""
        s = self._s
        if _check(lib.rg_op(s)) == lib.RG_PY:
            entry = _closures.get(lib.rg_id(s))
            return entry[0] if entry is not None else _nothing

        def step():
            _check(lib.rg_node_backward(self._s))
        return step

    @_backward.setter
    def _backward(self, fn):
        # the node becomes an op defined in Python, run by calling fn
        if not callable(fn):
            raise TypeError("_backward must be callable")
        s = self._s
        _check(lib.rg_make_custom(s))
        _closures[lib.rg_id(s)] = (fn, _own_cells(fn, s))

    @property
    def label(self):
        return _labels.get(lib.rg_id(self._s), "") if _labels else ""

    @label.setter
    def label(self, text):
        s = self._s
        _check(lib.rg_flag(s))
        _labels[lib.rg_id(s)] = str(text)

    def backward(self):
        """Set this node's grad to 1 and add d(self)/d(node) into the grad of
        every node it depends on, as micrograd does (grads accumulate)."""
        rc = lib.rg_backward(self._s)
        if rc == _RG_PYGRAPH:
            _walk(self._s, True)
        else:
            _check(rc)

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
        if _names:
            name = _names.get(lib.rg_id(self._s))
            if name is not None:
                return name
        op = _check(lib.rg_op(self._s))
        return _op_name(op, lib.rg_arg(self._s))

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


def _op_name(op, arg):
    if op == lib.RG_POW:
        return f"**{_short(arg)}"
    if op == lib.RG_RPOWC:
        return f"{_short(arg)}**"
    return _OP_NAMES[op]


def _number(x):
    c = _real(x)
    if c is None:
        raise TypeError(f"must be a real number, not {type(x).__name__!r}")
    return c


class Function:
    """An op defined in Python with both a forward and a backward, which
    `forward()` can replay (in the spirit of torch.autograd.Function):

        class Cube(rgrad.Function):
            @staticmethod
            def forward(x):                 # input data -> output data
                return x ** 3
            @staticmethod
            def backward(grad, out, x):     # d root/d out, output data, input data
                return (3 * x ** 2 * grad,) # -> d root/d input, one per input

        y = Cube.apply(v)
    """

    @staticmethod
    def forward(*inputs):
        raise NotImplementedError

    @staticmethod
    def backward(grad, out, *inputs):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs):
        xs = tuple(x if isinstance(x, Value) else Value(x) for x in inputs)
        out = Value(cls.forward(*[x.data for x in xs]), xs, cls.__name__)

        def _backward():
            grads = tuple(cls.backward(out.grad, out.data, *[x.data for x in xs]))
            if len(grads) != len(xs):
                raise ValueError(f"{cls.__name__}.backward returned {len(grads)} "
                                 f"grads for {len(xs)} inputs")
            for x, g in zip(xs, grads):
                x.grad += g
        out._backward = _backward
        _forwards[lib.rg_id(out._s)] = (cls, xs)
        return out


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


if os.environ.get("RGRAD_MAX_NODES"):
    try:
        set_max_nodes(int(os.environ["RGRAD_MAX_NODES"]))
    except ValueError as e:
        raise ValueError(f"RGRAD_MAX_NODES={os.environ['RGRAD_MAX_NODES']!r}: {e}") from None
