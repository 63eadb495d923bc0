"""What several test files compute or use: the tutorial's worked example, a
replayable custom op, an allocation made to fail, and a number's exact bits.
(tests/ is on sys.path when pytest runs these files.)"""
import contextlib
import math
import struct

import rgrad
from rgrad._rgrad import lib


def bits(x):
    """x's type (micrograd's int or float) and its double's bytes, in which
    -0.0 and 0.0 differ."""
    return type(x).__name__, struct.pack("<d", float(x))


@contextlib.contextmanager
def no_memory():
    """The C core's next allocation fails (rg_fault_after(0)); no injected
    failure is left after the block, whatever happens in it."""
    lib.rg_fault_after(0)
    try:
        yield
    finally:
        lib.rg_fault_after(-1)


def seed_example(a, b, relu=lambda v: v.relu()):
    """The tutorial's example from leaves a and b (rgrad or micrograd Values,
    torch tensors, or floats with a float relu); returns g."""
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + relu(b + a)
    d += 3 * d + relu(b - a)
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    return g


class Cube(rgrad.Function):
    """x ** 3 as an op defined in Python, which forward() can replay."""

    @staticmethod
    def forward(x):
        return x ** 3

    @staticmethod
    def backward(grad, out, x):
        return (3.0 * x * x * grad,)


def py_tanh(x):
    """tanh as micrograd's lecture writes it: a Python op with a _backward
    closure (not replayable)."""
    t = math.tanh(x.data)
    out = rgrad.Value(t, (x,), "tanh")

    def _backward():
        x.grad += (1.0 - t * t) * out.grad
    out._backward = _backward
    return out


def id_topo(root, on_visit=None):
    """A topological order of root's graph (rgrad or micrograd Values), keyed
    by id() as user code that cannot rely on Value hashing does, calling
    on_visit(v) as each node is first met. Visited nodes stay in the list."""
    order, seen = [], set()

    def visit(v):
        if id(v) not in seen:
            seen.add(id(v))
            if on_visit is not None:
                on_visit(v)
            for child in v._prev:
                visit(child)
            order.append(v)
    visit(root)
    return order


# ---- random programs over the built-in ops (test_batch.py, test_higher.py) ----
# Each keeps its values in ranges where no op raises for inputs in [-2, 2].

UNARY = {
    "neg": lambda a: -a,
    "relu": lambda a: a.relu(),
    "tanh": lambda a: a.tanh(),
    "sigmoid": lambda a: a.sigmoid(),
    "softplus": lambda a: a.softplus(),
    "square": lambda a: a ** 2,
    "cube": lambda a: a ** 3,
    "exp_tanh": lambda a: a.tanh().exp(),
    "log_1p_sq": lambda a: (1 + a * a).log(),
    "add_c": lambda a: a + 0.75,
    "mul_c": lambda a: a * -1.25,
    "c_sub": lambda a: 2 - a,
    "c_div": lambda a: 1.5 / (2 + a.sigmoid()),
    "rpow": lambda a: 2 ** a.tanh(),
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (1 + b * b),
    "powv": lambda a, b: (1 + a * a) ** b.tanh(),
}


def run_program(program, inputs, shared, unary=UNARY):
    """(first output, second output): the last two nodes the program made.
    unary: the unary ops' table (another one runs the program on torch)."""
    pool = list(inputs) + list(shared)
    made = []
    for ins in program:
        a = pool[ins[1] % len(pool)]
        out = unary[ins[0]](a) if ins[0] in unary else BINARY[ins[0]](a, pool[ins[2] % len(pool)])
        pool.append(out)
        made.append(out)
    return made[-1], made[-2] if len(made) > 1 else made[-1]


def instruction_strategy():
    """A hypothesis strategy for one instruction of run_program: an op's name
    and operand indices (taken modulo the pool's size when run)."""
    from hypothesis import strategies as st
    index = st.integers(0, 63)
    return st.one_of(
        st.tuples(st.sampled_from(sorted(UNARY)), index),
        st.tuples(st.sampled_from(sorted(BINARY)), index, index),
    )
