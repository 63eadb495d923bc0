"""Derivatives of derivatives: rgrad.grad (in the spirit of
torch.autograd.grad), rgrad.hessian and rgrad.hvp. None of them touches the
.grad of anything: micrograd's backward() keeps its meaning. The C side is
csrc/higher.c."""
from ._rgrad import ffi, lib
from .batch import _numpy
from .bulk import values
from .engine import Value, _check, _fresh, _made, _real

__all__ = ["grad", "hessian", "hvp"]

def _pyop_error(outs):
    """The TypeError for a graph holding an op defined in Python, naming the
    first one found walking down from outs (only walked on this error)."""
    seen, stack = set(), list(outs)
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if lib.rg_op(v._s) == lib.RG_PY:
            name = v._op or "an unnamed op"
            label = f" (label {v.label!r})" if v.label else ""
            return TypeError(
                f"rgrad.grad: the graph holds the op {name!r}{label}, defined in Python "
                "with a _backward closure, whose derivative rgrad cannot build or run "
                "apart from .grad; write it with built-in ops to differentiate it this way")
        stack.extend(v._prev)
    return TypeError("rgrad.grad: the graph holds an op defined in Python")


def _values(xs, what):
    if isinstance(xs, Value):
        return [xs]
    xs = list(xs)
    for v in xs:
        if not isinstance(v, Value):
            raise TypeError(f"rgrad.grad: {what} must be Values, not {type(v).__name__!r}")
    return xs


def grad(outputs, inputs, grad_outputs=None, create_graph=False):
    """For each input, d(sum over k of grad_outputs[k] * outputs[k]) / d input
    (grad_outputs None: all 1), as a tuple of Values. With create_graph the
    results are built from rgrad ops, so they can be differentiated again
    (to any order) and replayed with forward(); without it they are leaves
    holding the numbers. No .grad changes. An input the outputs do not
    depend on gets 0."""
    outs, ins = _values(outputs, "outputs"), _values(inputs, "inputs")
    if not outs:
        raise ValueError("rgrad.grad needs at least one output")
    oh = ffi.new("int32_t[]", [v._s for v in outs])
    ih = ffi.new("int32_t[]", [v._s for v in ins])
    seeds = None
    if grad_outputs is not None:
        seeds = list(grad_outputs) if not isinstance(grad_outputs, Value) else [grad_outputs]
        if len(seeds) != len(outs):
            raise ValueError(f"rgrad.grad: {len(seeds)} grad_outputs for {len(outs)} outputs")
    if create_graph:
        keep = []                              # numbers as leaves, held for the call
        sh = ffi.NULL
        if seeds is not None:
            hs = []
            for s in seeds:
                if not isinstance(s, Value):
                    c = _real(s)
                    if c is None:
                        raise TypeError("rgrad.grad: grad_outputs must be Values or "
                                        f"real numbers, not {type(s).__name__!r}")
                    s = Value(c)
                    keep.append(s)
                hs.append(s._s)
            sh = ffi.new("int32_t[]", hs)
        vs, out = _fresh(len(ins))
        rc = lib.rg_grad_graph(oh, len(outs), sh, ih, len(ins), out)
        if rc == lib.RG_EPYOP:
            raise _pyop_error(outs)
        if rc:
            _made(rc, lib.rg_grad_graph, oh, len(outs), sh, ih, len(ins), out)
        return tuple(vs)
    sd = ffi.NULL
    if seeds is not None:
        nums = []
        for s in seeds:
            c = s.data if isinstance(s, Value) else _real(s)
            if c is None:
                raise TypeError("rgrad.grad: grad_outputs must be Values or real "
                                f"numbers, not {type(s).__name__!r}")
            nums.append(float(c))
        sd = ffi.new("double[]", nums)
    res = ffi.new("double[]", max(len(ins), 1))
    rc = lib.rg_grad_values(oh, len(outs), sd, ih, len(ins), res)
    if rc == lib.RG_EPYOP:
        raise _pyop_error(outs)
    _check(rc)
    return tuple(Value(x) for x in ffi.unpack(res, len(ins)))


def _array(rows):
    np = _numpy()
    return rows if np is None else np.array(rows, dtype=float)


def _leaves(f, inputs):
    xs = values([float(_real(x) if not isinstance(x, Value) else x.data) for x in inputs])
    y = f(xs)
    if not isinstance(y, Value):
        raise TypeError(f"rgrad.hessian: f must return a Value, not {type(y).__name__!r}")
    return xs, y


def hessian(f, inputs):
    """The matrix of second derivatives of f at inputs: f takes a list of
    Values (one per input, holding its number) and returns a Value. A list of
    lists of floats, or a numpy array where numpy is installed."""
    xs, y = _leaves(f, inputs)
    g = grad(y, xs, create_graph=True)
    rows = [[v.data for v in grad(gi, xs)] for gi in g]
    return _array(rows)


def hvp(f, inputs, v):
    """The Hessian of f at inputs times the vector v, without forming the
    Hessian: one gradient graph, then one pass back through it. A list of
    floats, or a numpy array where numpy is installed."""
    xs, y = _leaves(f, inputs)
    v = [float(_real(x)) for x in v]
    if len(v) != len(xs):
        raise ValueError(f"rgrad.hvp: v has {len(v)} numbers for {len(xs)} inputs")
    g = grad(y, xs, create_graph=True)
    return _array([r.data for r in grad(g, xs, grad_outputs=v)])
