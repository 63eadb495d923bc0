"""Anomaly mode: `with rgrad.detect_anomaly():` makes the C core check every
op's forward result and backward gradient for NaN and infinity, and turns the
first one it finds into a FloatingPointError naming the op and its inputs."""
import contextlib

from ._rgrad import ffi, lib
from .engine import _check, _op_name

@contextlib.contextmanager
def detect_anomaly():
    """Within this block (in the thread that entered it), the first built-in op
    whose forward result, or whose backward gradient, is NaN or infinite
    raises FloatingPointError naming the op and its inputs. Outside it NaN and
    infinity propagate as in Python floats, and nothing is checked. Leaving
    the block, on whatever thread, ends the mode of the thread that entered."""
    # the token names the entering thread: leaving the block on another
    # thread (a generator or task resumed elsewhere) still ends it there
    token = _check(lib.rg_anomaly_enter())
    try:
        yield
    finally:
        lib.rg_anomaly_exit(token)


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
