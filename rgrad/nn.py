"""Neural network modules with micrograd's names, arguments and weight draws.

Weights come from random.uniform(-1, 1) in the order micrograd draws them, and a
neuron adds its terms in micrograd's order (b + w0*x0 + w1*x1 + ...), so a
script seeded the same way trains to the same numbers.

A Layer builds all its nodes in one C call (rg_layer), with the same arithmetic
in the same order. It keeps its weights' handles in a C array between calls (a
plan), and each call first checks the plan against the objects the unfused
computation would use (`_Plan.holds`): each neuron's class, weights, bias and
nonlinearity, compared by identity. Any change, whichever way it was made,
rebuilds the plan, and anything the plan cannot express is computed neuron by
neuron. The plan holds the Values it was made from, so its handles stay valid
as long as it does.
"""
import itertools
import operator
import random
import sys
from typing import Any, Sequence

from . import collection as _collection
from ._rgrad import ffi, lib
from .engine import Value, _bound, _fresh, _isint, _made, _new, _number, _real

__all__ = ["Module", "Neuron", "Layer", "MLP"]


class _ParamList(list):
    """Kept so that models pickled by earlier versions, which stored their
    parameter lists as this class, still load."""


class Module:

    def zero_grad(self) -> None:
        """Set the grad of every parameter to zero (micrograd's int 0): in one
        C call when all of them are plain Values."""
        ps = self.parameters()
        if type(ps) is list and set(map(type, ps)) == _PLAIN:
            try:
                hs = ffi.new("int32_t[]", [p._s for p in ps])
            except AttributeError:          # a Value never given a handle
                hs = None
            if hs is not None and lib.rg_set_many(hs, len(ps), lib.RG_GRAD,
                                                  ffi.NULL) == lib.RG_OK:
                return
        for p in ps:          # (a refused handle raises here, at its parameter)
            p.grad = 0

    def parameters(self) -> list[Value]:
        return []

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Value]]:
        """(name, Value) pairs, found by walking the module's attributes: Values,
        Modules, and lists or tuples of them, named like PyTorch's
        ("layers.0.neurons.3.w.1")."""
        def walk(obj, name):
            if isinstance(obj, Value):
                yield name, obj
            elif isinstance(obj, Module):
                for key, val in vars(obj).items():
                    if not key.startswith("_"):
                        yield from walk(val, f"{name}.{key}" if name else key)
            elif isinstance(obj, (list, tuple)):
                for i, val in enumerate(obj):
                    yield from walk(val, f"{name}.{i}" if name else str(i))
        return list(walk(self, prefix))

    def state_dict(self) -> dict[str, float]:
        """{parameter name: data}, for saving a trained model."""
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, float], strict: bool = True) -> None:
        """Load parameter data saved by state_dict(). With strict, the names must
        match exactly (RuntimeError otherwise, as in PyTorch)."""
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        if strict and (missing or unexpected):
            raise RuntimeError(f"load_state_dict: missing keys {missing}, "
                               f"unexpected keys {unexpected}")
        values = {k: _number(v) for k, v in state.items() if k in params}
        for k, v in values.items():
            params[k].data = v


class Neuron(Module):

    def __init__(self, nin: int, nonlin: bool = True) -> None:
        self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0)           # micrograd's int 0
        self.nonlin = nonlin

    def __call__(self, x: Sequence[Value | float]) -> Value:
        act = self.b
        for wi, xi in zip(self.w, x):
            act = act + wi * xi
        return act.relu() if self.nonlin else act

    def parameters(self) -> list[Value]:
        return self.w + [self.b]

    def __repr__(self):
        return f"{'ReLU' if self.nonlin else 'Linear'}Neuron({len(self.w)})"


class Layer(Module):

    def __init__(self, nin: int, nout: int, **kwargs: Any) -> None:
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]

    def __call__(self, x: Sequence[Value | float]) -> Value | list[Value]:
        out = None
        if type(x) in _SEQUENCES:
            plan = self.__dict__.get("_cached_plan")
            if plan is None or not plan.holds(self):
                plan = self.__dict__["_cached_plan"] = _Plan.of(self)
            if plan.fusable and len(x) == plan.nin:
                out = plan.run(x)
        if out is None:
            out = [n(x) for n in self.neurons]     # micrograd's way, op by op
        return out[0] if len(out) == 1 else out

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_cached_plan", None)   # C arrays: rebuilt on the next call
        return state

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self):
        return "Layer of [" + ", ".join(map(str, self.neurons)) + "]"


class MLP(Module):

    def __init__(self, nin: int, nouts: Sequence[int]) -> None:
        sizes = [nin] + list(nouts)
        last = len(nouts) - 1
        self.layers = [Layer(sizes[i], sizes[i + 1], nonlin=i != last)
                       for i in range(len(nouts))]

    def __call__(self, x: Sequence[Value | float]) -> Value | list[Value]:
        chain = self.__dict__.get("_cached_chain")
        # the common case first: nothing changed since the chain's C check
        # was made (which covers all that _chain_for checks, but this MLP's
        # layers list, and x); self.layers as the loop below reads it
        if (chain is None or not chain.check or self.layers is not chain.owner
                or type(x) not in _SEQUENCES or len(x) != chain.nin
                or not _rg_objects_hold(*chain.check[0])):
            chain = _chain_for(self, x)
        if chain is not None:
            out = chain.run(x)          # all layers in one C call
            if out is not None:
                return out
        for layer in self.layers:
            x = layer(x)
        return x

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_cached_chain", None)  # C arrays: rebuilt on the next call
        return state

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self):
        return "MLP of [" + ", ".join(map(str, self.layers)) + "]"


_SEQUENCES = (list, tuple, _ParamList)
_VALUE_ADD, _VALUE_MUL, _VALUE_RELU = Value.__add__, Value.__mul__, Value.relu
_rg_layer, _rg_mlp = lib.rg_layer, lib.rg_mlp
_take = _collection.take
_PLAIN = {Value}
_flat = itertools.chain.from_iterable
_NEURON_CALL = Neuron.__call__
_LAYER_CALL = Layer.__call__
_MLP_CALL = MLP.__call__
# what a neuron's output depends on, as holds() compares it
_state_of = operator.attrgetter("__class__", "w", "b", "nonlin")


class _Plan:
    """A Layer's weights and biases as handle arrays for rg_layer, with the
    objects they were read from. `fusable` is false where the neurons cannot be
    fused (not all plain Neurons of one size and kind); the layer then runs
    them one by one until they change."""

    __slots__ = ("seq", "state", "bs", "fusable", "w", "b", "nin", "relu", "check")

    @classmethod
    def of(cls, layer, check=True):
        """The plan for layer's neurons now; with check, also C's check for
        its next call (an MLP's calls check their _Chain instead, so the
        plans of its layers make theirs only if holds() is asked)."""
        plan = cls()
        plan.seq = neurons = layer.neurons
        plan.fusable = False
        plan.state = None                  # holds() fails: checked again next call
        plan.check = None
        if type(neurons) not in _SEQUENCES or not neurons:
            return plan
        ns = list(neurons)                 # everything below is read once, from here
        if any(type(n) is not Neuron for n in ns):
            return plan
        # each weight list is kept as a copy of its items, in a list of its
        # type, so that holds() compares the list's current items with them;
        # the checks and the handles below come from the copies (another
        # thread may change a list meanwhile)
        plan.state = [(Neuron, _copy(n.w), n.b, n.nonlin) for n in ns]
        ws = [w for _, w, _, _ in plan.state]
        plan.bs = [b for _, _, b, _ in plan.state]
        nonlins = [r for _, _, _, r in plan.state]
        nin = len(ws[0]) if type(ws[0]) in _SEQUENCES else -1
        if (_plain_arithmetic()
                and all(type(w) in _SEQUENCES and len(w) == nin for w in ws)
                and set(map(type, _flat(ws))) | set(map(type, plan.bs)) == _PLAIN
                # bool and int keep their truth value, so it can be cached
                and all(type(r) in (bool, int) and bool(r) == bool(nonlins[0])
                        for r in nonlins)):
            plan.w = ffi.new("int32_t[]", [v._s for w in ws for v in w])
            plan.b = ffi.new("int32_t[]", [b._s for b in plan.bs])
            plan.nin, plan.relu, plan.fusable = nin, bool(nonlins[0]), True
            if check:
                _neurons_hold(plan, (neurons,))     # C's check, for the next call
        return plan

    def holds(self, layer):
        """Whether each neuron of the layer still has the class, weights, bias
        and nonlinearity this plan was made from. The comparison is one list
        comparison, run in C, which takes identical items as equal first;
        items that are not identical compare equal only if they compute the
        same (a Value of the same node, an equal number as nonlin)."""
        seq = layer.neurons
        if seq is not self.seq or self.state is None or not _plain_arithmetic():
            return False
        return _neurons_hold(self, (seq,))

    def run(self, x):
        """The layer's outputs on x, in one C call, or None where x holds
        something the unfused computation could treat differently (a Value
        subclass may define its own operators; a non-number raises there)."""
        args = _inputs(x)
        if args is None:
            return None
        nout = len(self.bs)
        vs, out = _fresh(nout)
        return _bound(vs, out, _rg_layer, self.w, self.b, *args, self.nin, nout,
                      self.relu, out)


def _inputs(x):
    """x as rg_layer's (handles, constants, int flags), or None where x holds
    something other than plain Values and real numbers."""
    hs = [v._s for v in x if type(v) is Value]
    if len(hs) == len(x):               # all Values (the common case): no constants
        return ffi.new("int32_t[]", hs), ffi.NULL, ffi.NULL
    hs, cs, ks = [], [], None
    for i, v in enumerate(x):
        if type(v) is Value:
            hs.append(v._s)
            cs.append(0.0)
        else:                   # a number: a constant in each multiply
            c = _real(v)
            if c is None:
                return None
            hs.append(-1)
            cs.append(c)
            if _isint(v):       # micrograd's leaf for it holds an int
                ks = ks or [0] * len(x)
                ks[i] = 1
    return (ffi.new("int32_t[]", hs), ffi.new("double[]", cs),
            ffi.new("uint8_t[]", ks) if ks else ffi.NULL)


class _Chain:
    """An MLP's layers' plans as one set of arrays for rg_mlp: all layers in
    one C call, handles only for the last layer's outputs (the values between
    layers are nodes that nothing in Python holds; `_prev` makes objects for
    them if asked). Valid while its layers hold the same plans."""

    __slots__ = ("owner", "layers", "seqs", "lens", "state", "plans", "w", "b", "sizes",
                 "relu", "nin", "nout", "check")

    @classmethod
    def of(cls, layers, plans):
        chain = cls()
        chain.owner = layers            # the MLP's list, whose items C checks
        chain.layers, chain.plans = list(layers), plans
        chain.seqs = [layer.neurons for layer in layers]
        chain.lens = [len(seq) for seq in chain.seqs]
        chain.state = [s for p in plans for s in p.state]
        chain.check = None
        chain.w = ffi.new("int32_t[]", [h for p in plans for h in ffi.unpack(p.w, p.nin * len(p.bs))])
        chain.b = ffi.new("int32_t[]", [h for p in plans for h in ffi.unpack(p.b, len(p.bs))])
        chain.sizes = ffi.new("int32_t[]", [plans[0].nin] + [len(p.bs) for p in plans])
        chain.relu = ffi.new("uint8_t[]", [int(p.relu) for p in plans])
        chain.nin, chain.nout = plans[0].nin, len(plans[-1].bs)
        _neurons_hold(chain, chain.seqs, layers)     # C's check, for the next call
        return chain

    def holds(self, layers):
        """Whether layers are still this chain's layers, each still a plain
        Layer (a class can be assigned) with the same neurons list, whose
        neurons still have the class, weights, bias and nonlinearity its
        plans were made from: the plans' own check (_Plan.holds), for all
        layers in one list comparison. C's check, if made again, covers the
        list the chain was made from (owner), whatever list layers is: the
        call's fast path (MLP.__call__) takes it for a check of that list."""
        if len(layers) != len(self.layers) or not _plain_arithmetic():
            return False
        for layer, mine, seq, n in zip(layers, self.layers, self.seqs, self.lens):
            if (layer is not mine or type(layer) is not Layer or layer.neurons is not seq
                    or len(seq) != n):
                return False        # (a neuron moved between layers keeps the flat list)
        return _neurons_hold(self, self.seqs, self.owner)

    def run(self, x):
        args = _inputs(x)
        if args is None:
            return None
        xh, xc, xk = args
        if self.nout == 1:              # one output (the common case): no lists
            v = _new(Value)
            out = ffi.new("int32_t *", _take(v))
            args = (self.w, self.b, self.sizes, len(self.plans), self.relu, xh, xc, xk, out)
            rc = _rg_mlp(*args)
            if rc:
                _made(rc, _rg_mlp, *args)
            return v
        vs, out = _fresh(self.nout)
        return _bound(vs, out, _rg_mlp, self.w, self.b, self.sizes, len(self.plans),
                      self.relu, xh, xc, xk, out)


def _chain_for(mlp, x):
    """The _Chain that runs mlp on x in one C call, or None where calling its
    layers one by one could do something else: a layer that is not a plain
    Layer, a plan that cannot be fused, sizes that do not follow, a layer
    between others that returns one Value (the next would get a Value, not a
    list), or x not a list of the first layer's size."""
    layers = getattr(mlp, "layers", None)     # what the layers loop would read
    if type(layers) not in _SEQUENCES or len(layers) < 2 or type(x) not in _SEQUENCES:
        return None
    if Layer.__call__ is not _LAYER_CALL or MLP.__call__ is not _MLP_CALL:
        return None
    chain = mlp.__dict__.get("_cached_chain")
    if chain is not None and len(x) == chain.nin and chain.holds(layers):
        return chain                    # the common case: nothing changed
    plans = []
    for layer in layers:
        if type(layer) is not Layer:
            return None
        plan = layer.__dict__.get("_cached_plan")
        if plan is None or not plan.holds(layer):
            plan = layer.__dict__["_cached_plan"] = _Plan.of(layer, check=False)
        if not plan.fusable:
            return None
        plans.append(plan)
    if len(x) != plans[0].nin or any(
            len(p.bs) != q.nin or len(p.bs) < 2 for p, q in zip(plans, plans[1:])):
        return None
    chain = mlp.__dict__.get("_cached_chain")
    if (chain is None or len(chain.plans) != len(plans)
            or any(a is not b for a, b in zip(chain.plans, plans))
            or any(a is not b for a, b in zip(chain.layers, layers))):
        chain = mlp.__dict__["_cached_chain"] = _Chain.of(layers, plans)
    return chain


def _plain_arithmetic():
    """Whether calling a neuron runs what a fused call computes: rgrad's own
    Neuron.__call__, and the Value operators it uses."""
    return (Neuron.__call__ is _NEURON_CALL and Value.__add__ is _VALUE_ADD
            and Value.__mul__ is _VALUE_MUL and Value.relu is _VALUE_RELU)


def _neurons_hold(plan, seqs, layers=None):
    """Whether the neurons in the lists seqs still have the class, weights,
    bias and nonlinearity plan.state was read from: in one C call where C
    can read the objects (csrc/objects.c), else in one list comparison of
    what each neuron's attributes are now. When C says no (an attribute set
    to itself, or one added, changes a neuron's dict without changing what it
    computes), the comparison decides, and C's check is made again.
    plan.check is False where C cannot check these neurons: not tried again
    for this plan. layers: an MLP's list of the layers whose neurons seqs
    are, for C's check to cover them too (_c_check). (A weight or bias
    whose class was assigned in place is seen where C checks, not by the
    comparison, which would read every weight's class at every call.)"""
    check = plan.check
    if check and _rg_objects_hold(*check[0]):
        return True
    fresh = False if check is False else _c_check(plan, seqs, layers)
    try:
        ok = (fresh is not _NOT_PLAIN
              and list(map(_state_of, _flat(seqs))) == plan.state)
    except AttributeError:             # not a neuron any more, or one missing a part
        ok = False
    plan.check = fresh if ok else None
    return ok


def _c_check(plan, seqs, layers=None):
    """rg_objects_hold's arguments for the neurons in the lists seqs, with
    the objects they name (held, so that no address is reused while the
    check is kept). It stands on its own, whatever other threads do: each
    neuron's dict is read at a version and found to hold the plan's bias,
    nonlinearity and a weight list, and C compares that list's items with
    the plan's copy of them at every call. With layers (an MLP's list of
    Layers, whose neurons lists are seqs), the check also covers what
    MLP.__call__ checks before fusing: that list's items, each layer's
    class and dict (so its neurons list), and the classes Layer, MLP and
    Value (their __call__ and operators). None if this cannot be made now
    (no version tag yet, or the objects do not match the plan), _NOT_PLAIN
    where a weight or bias is no longer a plain Value, False where
    C cannot check these neurons: C cannot read objects here, a list is not
    an exact list, a neuron not a plain Neuron with its own plain dict and a
    w list (a layer not a plain Layer), or a class they inherit from defines
    w, b, nonlin, neurons or __getattribute__ (only reading them will do)."""
    if not _C_READS_NEURONS or any(type(seq) is not list for seq in seqs):
        return False
    classes = [Neuron] if layers is None else [Neuron, Layer, MLP, Value]
    # read first: any change to a class after this shows
    tags = [lib.rg_type_tag(id(c)) for c in classes]
    if not _neuron_class_is_plain():
        return False
    # each list read once: what is checked below is what C compares it with
    contents = [list(seq) for seq in seqs]
    owners = list(_flat(contents))
    if any(type(n) is not Neuron for n in owners):
        return False
    n = len(owners)
    if layers is not None:
        if type(layers) is not list:
            return False
        contents.append(list(layers))
        owners += contents[-1]
        if (len(owners) - n != len(seqs)
                or any(type(layer) is not Layer for layer in owners[n:])
                or not _plain_class(Layer, ("neurons", "__getattribute__"))
                or not _plain_arithmetic() or Layer.__call__ is not _LAYER_CALL
                or MLP.__call__ is not _MLP_CALL):
            return False
    dicts = list(map(vars, owners))         # makes each one's dict, for good
    if (any(type(d) is not dict for d in dicts)
            or [lib.rg_object_dict(id(o)) for o in owners] != list(map(id, dicts))):
        return False
    versions = [lib.rg_dict_version(id(d)) for d in dicts]   # a change after this shows
    state = plan.state
    if not all(tags) or n != len(state):
        return None
    ws = []
    for d, (_, copy, b, r) in zip(dicts, state):
        w, nonlin = d.get("w"), d.get("nonlin")
        if type(w) is not list or type(copy) is not list:
            return False
        if d.get("b") is not b or type(nonlin) not in (bool, int) or nonlin != r:
            return None
        ws.append(w)
    if any(d.get("neurons") is not seq for d, seq in zip(dicts[n:], seqs)):
        return None
    # C compares each list with what was read of it above (the w lists with
    # the plan's copies; the biases, in a list of the check's own, with
    # themselves), and each object's and item's class with the one checked
    bs = [b for _, _, b, _ in state]
    lists = list(seqs) + ws + [bs] + ([layers] if layers is not None else [])
    contents[len(seqs):len(seqs)] = [copy for _, copy, _, _ in state] + [list(bs)]
    items = list(_flat(contents))
    if set(map(type, _flat(contents[len(seqs):len(seqs) + n + 1]))) - _PLAIN:
        return _NOT_PLAIN                   # a weight's or bias's class was assigned
    args = (ffi.new("intptr_t[]", list(map(id, classes))), ffi.new("uint32_t[]", tags),
            len(classes), ffi.new("intptr_t[]", list(map(id, owners))),
            ffi.new("intptr_t[]", [id(Neuron)] * n + [id(Layer)] * (len(owners) - n)),
            ffi.new("intptr_t[]", list(map(id, dicts))), ffi.new("uint64_t[]", versions),
            len(owners), ffi.new("intptr_t[]", list(map(id, lists))),
            ffi.new("int32_t[]", list(map(len, contents))),
            ffi.new("intptr_t[]", list(map(id, items))),
            ffi.new("intptr_t[]", [id(Neuron)] * len(seqs) + [id(Value)] * (n + 1)
                    + [id(Layer)] * (layers is not None)), len(lists), id(list))
    return args, (classes, owners, dicts, lists, items)


def _neuron_class_is_plain():
    """Whether a Neuron's w, b and nonlin are what its dict holds."""
    return _plain_class(Neuron, ("w", "b", "nonlin", "__getattribute__"))


def _plain_class(cls, names):
    """Whether cls's instances' attributes `names` are what their dicts hold:
    cls's metaclass is type, and no class it inherits from but object has
    one of names in its own dict (read from the dicts, which no descriptor
    can answer for)."""
    if type(cls) is not type:
        return False
    mro = cls.__mro__
    return mro[-1] is object and not any(k in vars(c) for c in mro[:-1] for k in names)


def _c_reads_neurons():
    """Whether C reads here what rg_objects_hold needs (CPython 3.11's
    layout, 64-bit): a Neuron's dict, a dict's version, a class's version
    tag, each as Python sees it change."""
    if not _collection._probe_ok or sys.maxsize < 2**63 - 1:
        return False

    class Probe:
        pass

    n = Neuron.__new__(Neuron)
    n.w = []
    dn = vars(n)
    p = Probe()
    p.a = 1
    d = vars(p)
    if lib.rg_object_dict(id(n)) != id(dn) or lib.rg_object_dict(id(p)) != id(d):
        return False
    v1 = lib.rg_dict_version(id(d))
    same = lib.rg_dict_version(id(d)) == v1
    p.a = 2
    if not same or lib.rg_dict_version(id(d)) == v1:
        return False
    getattr(p, "a")                     # the class gets a version tag
    t1 = lib.rg_type_tag(id(Probe))
    same = lib.rg_type_tag(id(Probe)) == t1
    Probe.b = 1                         # a change to the class: a new tag (or none)
    getattr(p, "a")
    return t1 != 0 and same and lib.rg_type_tag(id(Probe)) != t1


_rg_objects_hold = lib.rg_objects_hold
_NOT_PLAIN = object()           # _c_check: the plan no longer holds
_C_READS_NEURONS = _c_reads_neurons()


def _copy(w):
    return tuple(w) if type(w) is tuple else list(w) if type(w) in _SEQUENCES else w
