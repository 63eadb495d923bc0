"""Many values at once: leaves made, and data or grads read and written, in one
C call each (numpy arrays in and out when numpy is installed, lists otherwise)."""
from ._rgrad import ffi, lib
from .engine import Value, _bound, _check, _fresh, _real

# numpy dtype kinds that hold real numbers, as Value() takes them: bool, signed
# and unsigned integers, floats. Complex, strings, bytes, dates, durations and
# records are refused rather than converted (complex would lose its imaginary
# part; a string would be parsed), and object arrays are checked item by item.
_REAL_KINDS = "biuf"


def _doubles(xs, caller):
    """xs (a sequence of real numbers, or a numpy array) as a C double array
    and its length. Takes exactly what Value() takes, and raises TypeError
    naming the first item it refuses."""
    if isinstance(xs, (str, bytes, bytearray)):
        raise TypeError(f"{caller}: expected a sequence of real numbers, not "
                        f"{type(xs).__name__!r}")
    if hasattr(xs, "__array_interface__"):
        return _array_doubles(xs, caller)
    xs = [_item(x, i, caller) for i, x in enumerate(xs)]
    return ffi.new("double[]", xs), len(xs)


def _item(x, where, caller):
    """x as a float, as Value(x) would take it, or an error naming where it is."""
    try:
        c = _real(x)
    except OverflowError as e:
        raise OverflowError(f"{caller}: item {where}: {e}") from None
    if c is None:
        raise TypeError(f"{caller}: item {where} is {type(x).__name__!r}, not a real number")
    return c


def _array_doubles(xs, caller):
    import numpy as np
    if isinstance(xs, np.ma.MaskedArray):
        # its masked entries hold no number; filling them is the caller's choice
        raise TypeError(f"{caller}: masked arrays are refused; pass xs.filled(value) "
                        "or the unmasked entries xs.compressed()")
    arr = np.asarray(xs)
    if arr.dtype.kind == "O":
        flat = arr.ravel()
        where = (lambda i: i) if arr.ndim <= 1 else (
            lambda i: tuple(int(k) for k in np.unravel_index(i, arr.shape)))
        items = [_item(x, where(i), caller) for i, x in enumerate(flat)]
        return ffi.new("double[]", items), len(items)
    if arr.dtype.kind not in _REAL_KINDS:
        raise TypeError(f"{caller}: numpy arrays of dtype {arr.dtype} are refused; "
                        "only bool, integer and float arrays hold real numbers")
    arr = np.ascontiguousarray(arr, dtype=np.float64).ravel()
    return ffi.from_buffer("double[]", arr), len(arr)


def _handles(vs, caller):
    vs = list(vs)
    for i, v in enumerate(vs):
        if not isinstance(v, Value):
            raise TypeError(f"{caller}: item {i} is {type(v).__name__!r}, not a Value")
    return ffi.new("int32_t[]", [v._s for v in vs]), len(vs)


def values(xs):
    """A list of new leaf Values, one per number of xs (a sequence or a numpy
    array), made in one C call. It takes what Value() takes: real numbers, and
    numpy arrays of bool, integer or float dtype (read flat, in C order)."""
    buf, n = _doubles(xs, "values")
    vs, hs = _fresh(n)
    return _bound(vs, hs, lib.rg_leaves, buf, n, hs)


def _get(vs, which, caller):
    hs, n = _handles(vs, caller)
    out = ffi.new("double[]", n)
    _check(lib.rg_get_many(hs, n, which, out))
    try:
        import numpy as np
    except ImportError:
        return ffi.unpack(out, n)
    return np.frombuffer(ffi.buffer(out), dtype=np.float64).copy()


def get_data(vs):
    """The data of many Values: a numpy array if numpy is installed, else a list."""
    return _get(vs, lib.RG_DATA, "get_data")


def get_grad(vs):
    """The grads of many Values: a numpy array if numpy is installed, else a list."""
    return _get(vs, lib.RG_GRAD, "get_grad")


def set_data(vs, xs):
    """Load xs[i] into vs[i].data for all i, in one C call: all or nothing,
    and nothing is written if any Value or number is refused."""
    hs, n = _handles(vs, "set_data")
    buf, m = _doubles(xs, "set_data")
    if m != n:
        raise ValueError(f"set_data: {n} Values but {m} numbers")
    _check(lib.rg_set_many(hs, n, lib.RG_DATA, buf))
