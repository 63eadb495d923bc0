"""Which Python object holds each handle, and collection: finding the Values
that died and freeing their nodes.

Python chooses the slot of every new handle. `_reg[s]` is the Value object
that holds slot s (or None), and `_free` the slots not in use, the next one
last. A new Value is put in the registry *before* the C call that binds its
slot to a node, and the steps between taking a slot and registering the
object make no call, so no asynchronous exception (KeyboardInterrupt, a
signal handler raising) and no other thread can come between them: a slot is
either free, or held by a registered object that owns it.

A node has at most one Value object while that object lives: C maps each
node to its handle (csrc/objects.c), and `_prev` returns the registry's
object for a child that has one (engine.py, `_children`, which reads the
registry with collection excluded).

Values have no `__del__`. A Value has died when the registry holds the only
reference to it; collection finds those (C reads the reference counts,
rg_sweep, or Python does where C cannot read this Python's objects), tells C
to free their slots (and to compact the arena when due), then puts the slots
back on the free list. A Value that only the registry holds but that is an
instance of a subclass, or has attributes of its own, is kept as long as its
node lives, and is no root: micrograd's graph keeps its objects, and code
that finds such a node again expects that object. Every step either is one C
call or can be repeated: a collection cut short by an exception is finished
by the next one.

Most Values die young. The free list holds at most `_BATCH` slots (the rest
wait in `_spare`); when it runs out, every slot of the batch it was refilled
with has been taken since, and those are looked at (`_collect_young`). The
whole registry is looked at only when it has doubled or the arena is due for
a compaction.

Ops defined in Python keep a `_backward` closure per node (`_closures`), and
such a closure holds Values of its own node and usually of its children. Such
references do not keep a node alive, since the node keeps its children and the
closure lives exactly as long as its node: a Value that only the registry and
these closure cells refer to is not a root (`_weak_slots`). Its node lives as
long as something else reaches it; when C frees the node, Python drops the
closure, and the Value dies at the same collection.

A collection never waits on itself: one asked for on a thread that is already
collecting (a finalizer or a signal handler running inside it) is skipped,
and the op that asked lets the arena grow instead.

This needs CPython's reference counts. Known gaps: a finalizer or signal
handler that reads `_prev` while its thread is collecting gets Values of its
own for the children, not the nodes' objects (the registry cannot be read
then). Calling `Value.__init__` a second time on a live Value registers it
under a second slot, and the first one then stays in use until the process
ends (checking for it would cost every `Value(x)` more than the rest of the
call).
"""
import os
import sys
import threading
from ._rgrad import ffi, lib

_reg = []                # slot -> the Value holding it, or None
_free = []               # free slots, at most _BATCH; the next to use is last
_spare = []              # more free slots, moved to _free a batch at a time
_batch = []              # what _free was last refilled with
_nslots = 0              # slots in _reg
_releasing = None        # slots a cut-short collection was freeing
_sweep_at = 4096         # look at the whole registry when it grows to this size
_collect_lock = threading.RLock()
_local = threading.local()


def _after_fork_in_child():
    # A thread that was collecting does not exist in the child: its lock goes.
    # Where it stopped, at any call, a collection can be picked up again (see
    # _resume), so the fork does not wait for it. (C's own mutex is taken
    # around fork() by handlers in csrc/rgrad.c.)
    global _collect_lock
    _collect_lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

# what Python keeps for nodes of ops defined in Python, by node id
_names = {}        # id -> the _op string given to Value(data, _children, _op)
_labels = {}       # id -> label
_closures = {}     # id -> (_backward closure, its cells that hold a Value of the
                   #        node or of one of its children)
_forwards = {}     # id -> Function subclass, for replay
_constants = {}    # id -> the Constant leaf shown for the node's constant operand
                   #       (rgrad/graph.py), which holds the node's Value

_value_type = None  # rgrad.engine.Value, set by engine
_CHUNK = 1024            # new slots are made this many at a time
_BATCH = 256             # _free is refilled with at most this many


def more_slots():
    """Refills _free (it is empty): looks for dead Values, among the young
    ones or in the whole registry once it has doubled since the last time,
    then takes a chunk of spare slots, or makes new ones."""
    global _free, _batch
    if _nslots >= _sweep_at:
        collect(force=False)
    elif _batch:
        _run(_collect_young)
    if _free:
        return
    if not _spare:
        # The registry changes size only with collection excluded (C reads
        # it then); on a thread that is collecting, it is excluded already.
        if not _run(_grow):
            _grow()
        if not _spare:
            return
    batch = _spare[-_BATCH:]
    del _spare[-_BATCH:]        # these three in one go: no call between them
    _free += batch
    _batch = batch


def _grow():
    global _nslots, _reg, _spare
    n0 = _nslots
    fresh = list(range(n0 + _CHUNK - 1, n0 - 1, -1))
    nones = [None] * _CHUNK
    if _nslots == n0 and not _spare:   # (else another thread made slots meanwhile)
        _nslots = n0 + _CHUNK   # these three in one go: no call between them
        _reg += nones
        _spare += fresh


def take(obj):
    """Registers obj under a free slot and returns the slot (for the calls that
    are not on the hot path; the operators and engine._make_leaf inline this)."""
    while not _free:
        more_slots()
    s = _free[-1]
    del _free[-1]
    obj._s = s
    _reg[s] = obj
    return s


def collect(force=True):
    """Free the nodes no live Value can reach. rgrad does this by itself as the
    arena grows; calling it only makes it happen now. Returns False if it was
    skipped because this thread is already collecting."""
    return _run(_collect, force)


def _run(step, *args):
    """Runs step(*args) with collection excluded (a collection step, or a read
    of the registry), unless this thread is already collecting (then it returns
    False at once: it never waits on itself)."""
    if getattr(_local, "collecting", False):
        return False
    # The flag means "this thread holds the lock" (more_slots relies on it),
    # so it is set once the lock is taken. The lock is reentrant: a signal
    # handler that runs between taking it and setting the flag runs its own
    # step first, whole, on this thread; one that runs while this thread waits
    # for it waits too, for the other thread that holds it.
    with _collect_lock:
        _local.collecting = True
        try:
            step(*args)
        finally:
            _local.collecting = False
    return True


exclusive = _run


def collecting():
    """Whether this thread is inside a collection."""
    return getattr(_local, "collecting", False)


def _collect(force):
    global _releasing, _sweep_at
    _resume()
    while True:
        dead, kept, dead_c = _sweep()
        weak = _weak_slots() + kept
        weak_c = ffi.new("int32_t[]", weak)
        _releasing = dead       # from here to the call: no call
        compacted = lib.rg_collect(dead_c, len(dead), weak_c, len(weak), force)
        _finish_release()
        if compacted:
            _release([s for s in kept if not lib.rg_valid(s)])  # their nodes went
        # Dropping a freed node's closure may leave Values that only it held
        # (a Python op's input made by another Python op): go again.
        if not (_forget_freed_nodes() and compacted):
            break
        force = True
    _trim()
    # next time the table has doubled: it grows only when no slot is free, so
    # that is when many Values have lived through the looks at their batch
    _sweep_at = max(4096, 2 * _nslots)


def _collect_young():
    """Frees the slots of the Values of the last batch that have died."""
    global _batch
    _resume()
    batch, _batch = _batch, []
    if not batch:
        return
    if max(batch) >= len(_reg):             # the table has shrunk since
        batch = [s for s in batch if s < len(_reg)]
    dead, _, dead_c = _sweep(batch)
    _release(dead, dead_c)


def _release(dead, dead_c=None):
    """Frees the slots of these dead Values (no compaction). dead_c: the
    same slots as a C array, if the caller has one (rg_sweep's)."""
    global _releasing
    if dead:
        if dead_c is None:
            dead_c = ffi.new("int32_t[]", dead)
        _releasing = dead       # from here to the call: no call
        lib.rg_collect(dead_c, len(dead), ffi.NULL, 0, -1)
        _finish_release()


def _resume():
    """Finishes a collection that an exception cut short. C may not have freed
    its slots yet: freeing a free slot again is harmless, and these cannot have
    been reused, as they are on no free list until the last step."""
    if _releasing is not None:
        dead = _releasing
        lib.rg_collect(ffi.new("int32_t[]", dead), len(dead), ffi.NULL, 0, -1)
        _finish_release()


def _sweep(slots=None):
    """Of these slots (None: all), those whose Value has died (only the
    registry holds it), and those whose Value only the registry holds but is
    kept as long as its node lives: an instance of a subclass, one with
    attributes of its own, or one that `_prev` handed out (micrograd's Values
    live as long as the graph that holds them, and code that found a node
    expects the same object, with the same id(), while the node lives).
    Either kind whose node is freed has died. Returns (dead, kept, dead_c):
    dead_c a C array that starts with the dead slots, for rg_collect. Runs
    with collection excluded."""
    n = len(_reg) if slots is None else len(slots)
    if _probe_ok:
        out = ffi.new("int32_t[]", n)
        kept = ffi.new("int32_t *")
        dead = lib.rg_sweep(id(_reg), ffi.NULL if slots is None else ffi.new("int32_t[]", slots),
                            n, _plain, _layout, out, kept)
        return ffi.unpack(out, dead), ffi.unpack(out + (n - kept[0]), kept[0]), out
    # the same in Python, where C cannot read objects (not CPython's layout)
    # (3: the registry, the list and the call)
    if slots is None:
        slots = range(n)
    objs = list(map(_reg.__getitem__, slots))
    counts = list(map(sys.getrefcount, objs))
    del objs
    alone = [s for s, c in zip(slots, counts) if c == 3 and _reg[s] is not None]
    dead, kept = [], []
    for s in alone:
        v = _reg[s]
        if not lib.rg_valid(s) or (type(v) is _value_type and not lib.rg_kept(s)
                                   and not v.__dict__):
            dead.append(s)
        else:
            kept.append(s)
    return dead, kept, ffi.new("int32_t[]", dead)


_probe_ok = False       # rg_sweep can read Value objects (set by init)
_plain = 0              # id(Value)
_layout = 0             # where a Value keeps its attributes: lib.RG_LAYOUT_*


def init(value_type):
    """Called once Value is defined: finds out whether C can read Value
    objects as this Python lays them out (CPython 3.11; see csrc/objects.c)."""
    global _value_type, _probe_ok, _plain, _layout
    _value_type = value_type
    _plain = id(value_type)
    if sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11):
        _layout = lib.RG_LAYOUT_311
        _probe_ok = _layout_holds(value_type)


def _layout_holds(cls):
    out = ffi.new("intptr_t[3]")

    def probe(obj):
        lib.rg_probe(id(obj), _layout, out)
        return out[0], out[1], out[2]

    # (probe's argument is one more reference, as is sys.getrefcount's)
    obj = object.__new__(cls)
    ok = probe(obj) == (sys.getrefcount(obj), _plain, 0)
    held = [obj]
    ok &= probe(obj)[0] == sys.getrefcount(obj) == 3
    del held
    obj.a = obj.b = 1           # attributes in the inline values
    ok &= probe(obj)[2] == 1
    del obj.a, obj.b
    ok &= probe(obj)[2] == 0
    other = object.__new__(cls)
    vars(other)                 # the dict made, empty
    ok &= probe(other)[2] == 0
    other.c = 1
    ok &= probe(other)[2] == 1
    items = [obj, None]
    ok &= [lib.rg_list_item(id(items), k) for k in range(3)] == [id(obj), id(None), 0]
    return ok


def _finish_release():
    """C has freed the slots in _releasing: forget their objects and put the
    slots on the spare list. Repeating it is harmless until the last step,
    which is one step with the reset."""
    global _releasing, _spare
    slots = _releasing
    for s in slots:
        _reg[s] = None
    kept = sorted(slots, reverse=True)    # the lowest slots are used first
    _spare += kept              # these two in one go: no call between them
    _releasing = None


def _trim():
    """Shrinks the handle table when most of it is free at the top. Other
    threads may take slots while this runs (between its calls): it gives up
    if they did, and otherwise cuts in one step with no call in it."""
    global _nslots, _spare
    if _nslots <= 4 * _CHUNK or 2 * (len(_free) + len(_spare)) < _nslots:
        return
    top = _nslots
    while top > 0 and _reg[top - 1] is None:
        top -= 1
    top = -(-top // _CHUNK) * _CHUNK          # whole chunks
    if top >= _nslots:
        return
    n = _nslots
    free, spare = _free[:], _spare[:]
    kept_free = [s for s in free if s < top]
    kept_spare = sorted((s for s in spare if s < top), reverse=True)
    tail = [None] * (n - top)
    if _nslots == n and _free == free and _spare == spare and _reg[top:] == tail:
        _free[:] = kept_free      # in place: the operators hold this list
        _spare = kept_spare
        _nslots = top
        del _reg[top:]
        lib.rg_trim_handles(top)


def _forget_freed_nodes():
    """Drop what Python kept for nodes C has freed; whether that let go of
    Values (a closure or a Constant went)."""
    ids = ffi.new("uint64_t[]", 1024)
    before = len(_closures) + len(_constants)
    while True:
        k = lib.rg_peek_dead(ids, 1024)
        for i in ffi.unpack(ids, k):
            for table in (_names, _labels, _closures, _forwards, _constants):
                table.pop(i, None)
        lib.rg_drop_dead(k)
        if k < 1024:
            return len(_closures) + len(_constants) < before


def closure_cells(fn, s):
    """The cells of closure fn that hold a Value of handle s's node or of one
    of its children."""
    cells = []
    for cell in getattr(fn, "__closure__", None) or ():
        v = _contents(cell)
        if isinstance(v, _value_type) and type(v._s) is int and (
                lib.rg_same(v._s, s) or lib.rg_is_child(v._s, s)):
            cells.append(cell)
    return tuple(cells)


def _contents(cell):
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def _weak_slots():
    """Slots of Values that only the registry and closure cells of their own
    node or of its parents refer to, or Constants that only `_constants`
    holds (rgrad/graph.py: a Constant holds the Value of its node)."""
    if not _closures and not _constants:
        return []
    held = _holders()
    vs = [v for v, n in held.values() if n > 0]
    ns = [n for v, n in held.values() if n > 0]
    del held
    # references: the registry, `vs`, the count itself, and the n holders
    counts = list(map(sys.getrefcount, vs))
    weak = []
    for v, n, c in zip(vs, ns, counts):
        s = v._s
        if c == 3 + n and type(s) is int and 0 <= s < len(_reg) and _reg[s] is v:
            weak.append(s)
    return weak


def _holders():
    """id -> [Value, number of closure cells and unused Constants holding it
    (-1: in use)]. (A function of its own, so that none of its locals
    outlives it.)"""
    held = {}

    def add(v, busy):
        entry = held.setdefault(id(v), [v, 0])
        entry[1] = -1 if busy or entry[1] < 0 else entry[1] + 1

    for _, cells in list(_closures.values()):
        # A cell is referenced by the closure and by `cells` (and by the count
        # itself); one more is the frame that made it, still running (between
        # `out._backward = ...` and `return out`): then the Values it holds
        # are in use even though only the cell holds them.
        busy = max(map(sys.getrefcount, cells), default=0) > 3
        for cell in cells:
            v = _contents(cell)
            if v is not None:
                add(v, busy)
    for c in list(_constants.values()):
        # held by the registry, _constants, the list, `c` and the count: a
        # Constant no one else holds does not make its node's Value a root
        add(c._parent, sys.getrefcount(c) > 5)
    return held
