"""Check a function's rgrad gradients against central finite differences.

    from rgrad.gradcheck import gradcheck
    gradcheck(lambda x, y: (x * y).tanh() + y.log(), [0.3, 1.7])   # True

The shape follows torch.autograd.gradcheck: the function is differentiated
once by rgrad (on fresh leaves, so the caller's Values are never touched), and
again numerically, input by input, by evaluating it at x + eps and x - eps.
"""
from __future__ import annotations

import numbers
from typing import Callable, List, Sequence, Union

from .engine import Value

__all__ = ["gradcheck", "GradcheckError"]

Number = Union[int, float, numbers.Real]


class GradcheckError(RuntimeError):
    """An analytic gradient disagrees with its finite-difference estimate."""


def _as_float(x: Union[Value, Number], i: int) -> float:
    if isinstance(x, Value):
        return x.data
    if isinstance(x, numbers.Real):
        return float(x)
    raise TypeError(f"gradcheck: input {i} must be a Value or a real number, "
                    f"not {type(x).__name__!r}")


def _note(exc: BaseException, text: str) -> None:
    """Attach text to an exception that is on its way out."""
    if hasattr(exc, "add_note"):            # Python 3.11 and later
        exc.add_note(text)
    elif len(exc.args) == 1 and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]} ({text})",)


def _call(fn: Callable[..., Value], xs: Sequence[float]):
    """fn on fresh leaves holding xs: (its output, the leaves)."""
    leaves = [Value(x) for x in xs]
    out = fn(*leaves)
    if not isinstance(out, Value):
        raise TypeError(f"gradcheck: fn must return one Value, "
                        f"not {type(out).__name__!r}")
    return out, leaves


def _reachable(root: Value) -> List[Value]:
    """Every node root depends on, root included."""
    seen = {root}
    stack = [root]
    while stack:
        for child in stack.pop()._prev:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return list(seen)


def _analytic(fn: Callable[..., Value], xs: Sequence[float]) -> List[float]:
    """d fn / d x_i by rgrad's backward at xs. Values fn reaches that are not
    the fresh leaves (parameters it closes over, say) get their grads back
    as they were: backward would otherwise add into them."""
    try:
        out, leaves = _call(fn, xs)
    except Exception as e:
        _note(e, f"gradcheck: raised by fn at the inputs {list(xs)!r}")
        raise
    nodes = _reachable(out)
    before = [v.grad for v in nodes]
    try:
        out.backward()
        return [v.grad for v in leaves]
    finally:
        for v, g in zip(nodes, before):
            v.grad = g


def _evaluate(fn: Callable[..., Value], xs: Sequence[float], i: int,
              x: float, sign: str) -> float:
    try:
        out, _ = _call(fn, xs)
        return out.data
    except Exception as e:
        _note(e, f"gradcheck: raised by fn while input {i} (value {x!r}) "
                 f"was perturbed to x {sign} eps = {xs[i]!r}")
        raise


def _agree(analytic: float, numeric: float, tolerance: float) -> bool:
    # NaN anywhere is a disagreement: it can confirm nothing
    return analytic == numeric or abs(analytic - numeric) <= tolerance


def gradcheck(fn: Callable[..., Value], inputs: Sequence[Union[Value, Number]],
              eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True) -> bool:
    """Whether rgrad's gradient of fn at inputs matches central differences.

    fn takes as many Values as there are inputs and returns one Value. inputs
    holds numbers or Values (only their data is read: the caller's Values keep
    their data and grads). fn is built once on fresh leaf Values and
    differentiated with backward(); then, for each input i, it is evaluated
    on fresh leaves with x_i moved to x_i + eps and to x_i - eps, giving
    numeric_i = (f(x + eps) - f(x - eps)) / (2 eps).

    Input i disagrees when |analytic_i - numeric_i| > atol + rtol * |numeric_i|
    (or either is NaN). Then GradcheckError (a RuntimeError) is raised, naming
    every disagreeing input by index and value with both gradients and the
    tolerance; with raise_exception=False, False is returned instead. True
    when every input agrees.

    An exception raised by fn (say, ValueError from the log of a number that
    x - eps made negative) propagates, with a note saying which input was
    being perturbed. Parameters fn closes over keep their grads too.
    """
    if not eps > 0.0:
        raise ValueError(f"gradcheck: eps must be > 0, not {eps!r}")
    if not (atol >= 0.0 and rtol >= 0.0):
        raise ValueError(f"gradcheck: atol and rtol must be >= 0, "
                         f"not {atol!r} and {rtol!r}")
    xs = [_as_float(x, i) for i, x in enumerate(inputs)]
    analytic = _analytic(fn, xs)

    failures = []
    for i, x in enumerate(xs):
        up, down = list(xs), list(xs)
        up[i] = x + eps
        down[i] = x - eps
        numeric = (_evaluate(fn, up, i, x, "+") - _evaluate(fn, down, i, x, "-")) / (2 * eps)
        tolerance = atol + rtol * abs(numeric)
        if not _agree(analytic[i], numeric, tolerance):
            failures.append(
                f"input {i} (value {x!r}): analytic gradient {analytic[i]!r}, "
                f"numeric gradient {numeric!r}, difference "
                f"{abs(analytic[i] - numeric)!r} > tolerance {tolerance!r} "
                f"(atol={atol!r} + rtol={rtol!r} * |numeric|)")
    if not failures:
        return True
    if not raise_exception:
        return False
    raise GradcheckError(
        f"gradcheck: gradient mismatch (eps={eps!r}) for "
        f"{len(failures)} of {len(xs)} inputs:\n  " + "\n  ".join(failures))
