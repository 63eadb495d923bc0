"""rgrad: micrograd's Value and nn, with the graph stored and differentiated in C.

    from rgrad import Value          # in place of: from micrograd.engine import Value
    from rgrad.nn import MLP         # in place of: from micrograd.nn import MLP
"""
try:
    from .engine import Value, collect, stats
except ImportError as e:  # pragma: no cover - only in an unbuilt source tree
    if "_rgrad" not in str(e):
        raise
    raise ImportError(
        "rgrad's C extension (rgrad._rgrad) is not built here. Install rgrad "
        "with `pip install .` and import it from outside the source folder "
        "(run the tests with `pytest`, not `python -m pytest`).") from e

__all__ = ["Value", "collect", "stats"]
__version__ = "0.1.0"
