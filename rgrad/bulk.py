"""Many values at once: leaves made, and data or grads read and written, in one
C call each (numpy arrays in and out when numpy is installed, lists otherwise)."""
from ._rgrad import ffi, lib
from .engine import Value, _check, _handle, _made, _number

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
