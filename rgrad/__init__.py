"""rgrad: micrograd's Value and nn, with the graph stored and differentiated in C.

    from rgrad import Value          # in place of: from micrograd.engine import Value
    from rgrad.nn import MLP         # in place of: from micrograd.nn import MLP
"""
import os
import sys


def _use_installed_copy():
    """`python -m rgrad` in a source checkout imports this folder, which has no
    built C extension. Serve the package from the copy pip installed instead."""
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        candidate = os.path.join(os.path.abspath(entry or os.curdir), "rgrad")
        if candidate != here and os.path.isdir(candidate) and any(
                name.startswith("_rgrad") and name.endswith((".so", ".pyd"))
                for name in os.listdir(candidate)):
            __path__[:] = [candidate]
            return
    raise ImportError(
        "rgrad's C extension is not built: install rgrad with `pip install .`")


try:
    from . import _rgrad  # noqa: F401
except ImportError:
    _use_installed_copy()

from .engine import (  # noqa: E402
    Function, Value, collect, detect_anomaly, get_data, get_grad, set_data,
    set_max_nodes, stats, values)
from .gradcheck import GradcheckError, gradcheck  # noqa: E402
from .batch import Batch  # noqa: E402
from .higher import grad, hessian, hvp  # noqa: E402

__all__ = ["Batch", "Function", "GradcheckError", "Value", "collect", "detect_anomaly",
           "get_data", "get_grad", "grad", "gradcheck", "hessian", "hvp", "set_data",
           "set_max_nodes", "stats", "values"]
__version__ = "0.1.0"
