"""rgrad.Batch: one sample's graph, built once with Values, run over many rows
at once (csrc/batch.c).

    x = rgrad.values([0.0, 0.0]); t = rgrad.Value(0.0)     # one sample's inputs
    score = model(x)
    loss1 = (1 - t * score).relu()                          # one sample's loss
    batch = rgrad.Batch([loss1, score], inputs=[*x, t])
    out = batch.forward(rows)       # rows: N x len(inputs); out: N x len(outputs)
    batch.backward(scale=1 / N)     # scale * sum over rows of d out[:, 0] / d leaf,
                                    # into the grad of every other leaf
    batch.input_grads()             # N x len(inputs): d out[:, 0] / d input, per row

Rows and results are numpy arrays where numpy is installed, lists of lists
otherwise.
"""
import os
import sys
import threading

from ._rgrad import ffi, lib
from .engine import Value, _check, _real


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _numpy():
    return sys.modules.get("numpy") or _import_numpy()


def _import_numpy():
    try:
        import numpy
    except ImportError:
        return None
    return numpy


class Batch:
    """The graph under `outputs`, with the leaves `inputs` given per row, run
    over many rows at once. The other leaves the outputs depend on (the
    parameters) are shared by all rows: `forward` reads their data as it is
    then, and `backward` adds into their grads. Built-in ops only: a graph
    holding an op defined in Python raises ValueError. threads: how many
    threads a call may use (None: every core this process may run on); any
    number gives the same bits."""

    def __init__(self, outputs, inputs, threads=None):
        outs, ins = list(outputs), list(inputs)
        if not outs:
            raise ValueError("Batch needs at least one output")
        for v in outs + ins:
            if not isinstance(v, Value):
                raise TypeError(f"Batch takes Values, not {type(v).__name__!r}")
        self.threads = _threads(threads)
        self._outputs, self._inputs = outs, ins      # they keep the graph alive
        made = ffi.new("rg_batch **")
        oh = ffi.new("int32_t[]", [v._s for v in outs])
        ih = ffi.new("int32_t[]", [v._s for v in ins])
        rc = lib.rg_batch_new(oh, len(outs), ih, len(ins), made)
        if rc == lib.RG_EPYOP:
            raise ValueError("Batch: the graph holds an op defined in Python, which C "
                             "cannot run over rows; use built-in ops only")
        if rc == lib.RG_EBATCHIN:
            raise ValueError("Batch: the inputs must be distinct leaves (Values made "
                             "from numbers, not by ops)")
        _check(rc)
        self._b = ffi.gc(made[0], lib.rg_batch_free)
        self._rows = 0
        self._lock = threading.Lock()       # one call at a time: _rows follows C

    @property
    def nodes(self):
        """(vector nodes, uniform nodes, shared leaves, rows a block, instructions)."""
        return tuple(lib.rg_batch_shape(self._b, k) for k in range(5))

    def forward(self, rows):
        """The outputs for each row: an N x len(outputs) array. rows is N x
        len(inputs) real numbers, N >= 1."""
        buf, n, keep = self._check_rows(rows)
        nout = len(self._outputs)
        out, dest = _matrix(n, nout)
        with self._lock:
            self._rows = 0
            rc = lib.rg_batch_forward(self._b, buf, n, dest, self.threads)
            if rc == lib.RG_OK:
                self._rows = n
        del keep
        if rc == lib.RG_EPYOP:
            raise ValueError("Batch: the graph now holds an op defined in Python")
        _check(rc)
        return _result(out, n, nout)

    def backward(self, scale=1.0):
        """Adds scale * (the sum over the last forward's rows of d out[:, 0] /
        d leaf) into the grad of every shared leaf, as building one graph per
        row and backward() from scale times the sum of their first outputs
        would."""
        s = _real(scale)
        if s is None:
            raise TypeError(f"scale must be a real number, not {type(scale).__name__!r}")
        with self._lock:
            rc = lib.rg_batch_backward(self._b, s, self.threads)
            if rc != lib.RG_OK:
                self._rows = 0              # C has dropped the forward it had
        if rc == lib.RG_ENOFORWARD:
            raise RuntimeError("Batch.backward() needs a forward() first")
        if rc == lib.RG_EPYOP:
            raise ValueError("Batch: the graph now holds an op defined in Python")
        _check(rc)

    def input_grads(self):
        """d out[:, 0] / d input for each row of the last backward(): an
        N x len(inputs) array (not scaled)."""
        with self._lock:
            n, nin = self._rows, len(self._inputs)
            if not n:
                raise RuntimeError("Batch.input_grads() needs a forward() and a backward() first")
            out, dest = _matrix(n, nin)
            rc = lib.rg_batch_input_grads(self._b, dest, n)
        if rc == lib.RG_ENOFORWARD:
            raise RuntimeError("Batch.input_grads() needs a backward() first")
        _check(rc)
        return _result(out, n, nin)

    def _check_rows(self, rows):
        """(C buffer, N, what keeps the buffer alive), or TypeError/ValueError."""
        nin = len(self._inputs)
        np = _numpy()
        if np is not None:
            try:
                a = np.asarray(rows)
            except ValueError:              # ragged rows
                raise ValueError(f"Batch rows must have {nin} numbers each") from None
            if a.dtype.kind not in "biuf":
                if a.dtype.kind != "O":
                    raise TypeError(f"Batch rows must be real numbers, not {a.dtype}")
                a = np.asarray(_rows_as_lists(rows, nin))
            if a.ndim != 2 or a.shape[1] != nin:
                raise ValueError(f"Batch rows must be N x {nin}, not of shape {a.shape}")
            if a.shape[0] < 1:
                raise ValueError("Batch.forward needs at least one row")
            a = np.ascontiguousarray(a, dtype=np.float64)
            return ffi.from_buffer("double[]", a), a.shape[0], a
        flat = [x for row in _rows_as_lists(rows, nin) for x in row]
        n = len(flat) // nin if nin else len(list(rows))
        if n < 1:
            raise ValueError("Batch.forward needs at least one row")
        return ffi.new("double[]", flat or [0.0]), n, None


def _matrix(n, width):
    """An n x width result (a numpy array, or a C array without numpy) and
    the C pointer to fill it through."""
    np = _numpy()
    if np is not None:
        out = np.empty((n, width))
        return out, ffi.from_buffer("double[]", out)
    out = ffi.new("double[]", max(n * width, 1))
    return out, out


def _result(out, n, width):
    """What _matrix made, filled, as the caller gets it: the array, or lists."""
    if not isinstance(out, ffi.CData):
        return out
    flat = ffi.unpack(out, n * width)
    return [flat[k * width:(k + 1) * width] for k in range(n)]


def _rows_as_lists(rows, nin):
    out = []
    for row in rows:
        try:
            row = list(row)
        except TypeError:
            raise TypeError(f"each Batch row must be a sequence of {nin} numbers, "
                            f"not {type(row).__name__!r}") from None
        if len(row) != nin:
            raise ValueError(f"Batch rows must have {nin} numbers each, not {len(row)}")
        xs = []
        for x in row:
            c = _real(x)
            if c is None:
                raise TypeError(f"Batch rows must be real numbers, not {type(x).__name__!r}")
            xs.append(c)
        out.append(xs)
    return out


def _threads(threads):
    if threads is None:
        return _cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a whole number >= 1 or None, not {threads!r}")
    return threads
