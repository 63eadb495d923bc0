"""Losses for models of micrograd's size, built from rgrad's ops (each op's
derivative lives in C). Each takes lists of Values (or numbers) and returns
one Value, the mean over the examples."""
from collections.abc import Iterable, Sequence

from .engine import Value

Scalar = Value | float

__all__ = ["hinge", "mse", "bce_with_logits", "softmax_cross_entropy"]


def _mean(terms):
    terms = list(terms)
    if not terms:
        raise ValueError("a loss needs at least one example")
    return sum(terms) * (1.0 / len(terms))


def hinge(scores: Iterable[Scalar], targets: Iterable[float]) -> Value:
    """Max-margin loss, mean of relu(1 - y * s), targets y in {-1, +1} (the
    loss of micrograd's demo)."""
    return _mean((1 + -y * s).relu() for s, y in zip(scores, targets, strict=True))


def mse(predictions: Iterable[Scalar], targets: Iterable[Scalar]) -> Value:
    """Mean squared error, mean of (p - t)**2."""
    return _mean((p - t) ** 2 for p, t in zip(predictions, targets, strict=True))


def bce_with_logits(logits: Iterable[Scalar], targets: Iterable[float]) -> Value:
    """Binary cross-entropy of sigmoid(x) against t in [0, 1], as
    softplus(x) - x t: exact for logits of any size."""
    return _mean(Value.softplus(_value(x)) - x * t
                 for x, t in zip(logits, targets, strict=True))


def softmax_cross_entropy(logits: Iterable[Sequence[Scalar]], targets: Iterable[int]) -> Value:
    """Cross-entropy of softmax(row) against the class index t, for each row
    of logits: logsumexp(row) - row[t], with the row's largest value taken
    out before exp so that nothing overflows."""
    def one(row, t):
        row = [_value(x) for x in row]
        if not 0 <= t < len(row):
            raise IndexError(f"class index {t} out of range for {len(row)} logits")
        m = max(x.data for x in row)       # a constant: the loss does not depend on it
        return (sum((x - m).exp() for x in row)).log() + m - row[t]
    return _mean(one(row, t) for row, t in zip(logits, targets, strict=True))


def _value(x):
    return x if isinstance(x, Value) else Value(x)
