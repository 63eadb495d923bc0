"""Neural network modules with micrograd's names, arguments and weight draws.

Weights come from random.uniform(-1, 1) in the order micrograd draws them, and a
neuron adds its terms in micrograd's order (b + w0*x0 + w1*x1 + ...), so a
script seeded the same way trains to the same numbers.

A Layer builds all its nodes in one C call (rg_layer), with the same arithmetic
in the same order. It keeps its weights' handles in a C array between calls;
the array is rebuilt whenever any module's attributes or parameter lists
change, which `_ParamList` and `Module.__setattr__` report by bumping `_epoch`.
"""
import random
from typing import Any, Sequence

from ._rgrad import ffi, lib
from .engine import Value, _bound, _fresh, _number

__all__ = ["Module", "Neuron", "Layer", "MLP"]

_epoch = [0]   # bumped by every change to a module's attributes or lists


class _ParamList(list):
    """A list that reports changes to itself, so fused layers see them."""

    def __reduce_ex__(self, protocol):
        return (_ParamList, (list(self),))


def _reporting(name):
    method = getattr(list, name)

    def changed(self, *args, **kwargs):
        _epoch[0] += 1
        return method(self, *args, **kwargs)
    changed.__name__ = name
    return changed


for _name in ("__setitem__", "__delitem__", "__iadd__", "__imul__", "append",
              "extend", "insert", "pop", "remove", "clear", "sort", "reverse"):
    setattr(_ParamList, _name, _reporting(_name))


class Module:

    def __setattr__(self, name, value):
        _epoch[0] += 1
        object.__setattr__(self, name, value)

    def zero_grad(self) -> None:
        """Set the grad of every parameter to zero."""
        for p in self.parameters():
            p.grad = 0.0

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
        self.w = _ParamList(Value(random.uniform(-1, 1)) for _ in range(nin))
        self.b = Value(0.0)
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
        self.neurons = _ParamList(Neuron(nin, **kwargs) for _ in range(nout))

    def __call__(self, x: Sequence[Value | float]) -> Value | list[Value]:
        plan = self._plan()
        if plan is None or not isinstance(x, (list, tuple)) or len(x) != plan[2]:
            out = [n(x) for n in self.neurons]     # micrograd's way, op by op
        else:
            out = self._fused(plan, x)
        return out[0] if len(out) == 1 else out

    def _plan(self):
        """(weight handles, bias handles, nin, relu) for rg_layer, or None if
        the neurons are not all plain Neurons of one kind."""
        cached = self.__dict__.get("_cached_plan")
        if cached is not None and cached[0] == _epoch[0]:
            return cached[1]
        neurons = list(self.neurons)
        plan = None
        if neurons and all(type(n) is Neuron for n in neurons):
            nin, relu = len(neurons[0].w), neurons[0].nonlin
            if all(len(n.w) == nin and n.nonlin == relu and isinstance(n.b, Value)
                   and all(isinstance(w, Value) for w in n.w) for n in neurons):
                w = ffi.new("int32_t[]", [w._s for n in neurons for w in n.w])
                b = ffi.new("int32_t[]", [n.b._s for n in neurons])
                plan = (w, b, nin, bool(relu))
        # a list that cannot report changes to itself cannot be cached
        if all(type(n.w) is _ParamList for n in neurons) and type(self.neurons) is _ParamList:
            self.__dict__["_cached_plan"] = (_epoch[0], plan)
        return plan

    def _fused(self, plan, x):
        w, b, nin, relu = plan
        nout = len(b)
        x = [v if isinstance(v, Value) else Value(v) for v in x]
        xh = ffi.new("int32_t[]", [v._s for v in x])
        vs, out = _fresh(nout)
        return _bound(vs, out, lib.rg_layer, w, b, xh, nin, nout, relu, out)

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
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self):
        return "MLP of [" + ", ".join(map(str, self.layers)) + "]"
