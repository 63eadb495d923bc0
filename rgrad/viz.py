"""Pictures of a graph: Graphviz DOT text, or a graphviz.Digraph to render.

    from rgrad.viz import to_dot, draw_dot
    print(to_dot(loss))                      # DOT text; needs nothing installed
    draw_dot(loss).render("graph")           # needs `pip install graphviz`

Each Value is a box showing its data and grad (and its label, if it has one);
a Value made by an op is fed by an oval naming the op, which its inputs feed.
The walk starts at the root and goes breadth first, so when a graph has more
than `max_nodes` Values the ones nearest the root are drawn and a note says
how many were left out.
"""
from collections import deque

from ._rgrad import lib

__all__ = ["to_dot", "draw_dot"]

_RANKDIRS = ("LR", "TB")

# After max_nodes Values are drawn, the walk goes on only to count the rest,
# for at most this many more Values; past it the note gives a lower bound.
_COUNT_LIMIT = 100_000


def _number(x):
    """x with four decimals, or in exponent form where that would hide it."""
    if x == 0 or 1e-3 <= abs(x) < 1e6 or x != x:
        return f"{x:.4f}"
    return f"{x:.4e}"


def _quoted(text):
    """text inside a DOT double-quoted string: only `"` is special to DOT
    itself, and a backslash starts an escape in a label, so both get one."""
    return (text.replace("\\", "\\\\").replace('"', '\\"')
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def _record_field(text):
    """text as one field of a record label: braces, bars and angle brackets
    are record syntax, so they are escaped too."""
    text = _quoted(text)
    for ch in "{}|<>":
        text = text.replace(ch, "\\" + ch)
    return text


def _check(rankdir, max_nodes):
    if rankdir not in _RANKDIRS:
        raise ValueError(f"rankdir must be 'LR' or 'TB', not {rankdir!r}")
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1:
        raise ValueError(f"max_nodes must be an int >= 1, not {max_nodes!r}")


def _sorted_children(v):
    # _prev is a set: sort by node id so the picture is the same every time
    return sorted(v._prev, key=_node_id)


def _node_id(v):
    return lib.rg_id(v._s)


def _walk(root, max_nodes):
    """Breadth first from root, drawing at most max_nodes Values.

    Returns (shown, edges, cut, left_out, exact): shown the Values drawn, in
    walk order; edges (child, parent) pairs between drawn Values; cut the
    drawn Values some of whose inputs are not drawn; left_out how many Values
    are not drawn (a lower bound unless exact)."""
    seen = {root}
    queue = deque([root])
    shown, edges, cut = [], [], []
    while queue and len(shown) < max_nodes:
        v = queue.popleft()
        shown.append(v)
        for c in _sorted_children(v):
            if c not in seen:
                seen.add(c)
                queue.append(c)
            edges.append((c, v))
    if not queue:
        return shown, edges, cut, 0, True

    drawn = set(shown)
    edges = [(c, p) for c, p in edges if c in drawn]
    cut = [v for v in shown if any(c not in drawn for c in v._prev)]
    # count the rest without drawing it, up to a limit
    left_out, budget = len(queue), _COUNT_LIMIT
    while queue and budget > 0:
        v = queue.popleft()
        budget -= 1
        for c in v._prev:
            if c not in seen:
                seen.add(c)
                queue.append(c)
                left_out += 1
    return shown, edges, cut, left_out, not queue


def _graph(root, max_nodes):
    """The drawing as plain data: nodes (name, label, shape) with labels
    already escaped for a DOT string, and edges (tail, head, style)."""
    shown, edges, cut, left_out, exact = _walk(root, max_nodes)
    names = {v: f"v{_node_id(v)}" for v in shown}
    nodes, lines = [], []
    for v in shown:
        fields = [f"data {_number(v.data)}", f"grad {_number(v.grad)}"]
        label = getattr(v, "label", "")
        if label:
            fields.insert(0, label)
        record = " | ".join(_record_field(f) for f in fields)
        nodes.append((names[v], "{ " + record + " }", "record"))
        if v._prev:
            op = names[v] + "op"
            nodes.append((op, _quoted(v._op), "ellipse"))
            lines.append((op, names[v], None))
    for child, parent in edges:
        lines.append((names[child], names[parent] + "op", None))
    if left_out:
        amount = f"{left_out:,}" if exact else f"at least {left_out:,}"
        note = (f"{amount} more value{'s' if left_out != 1 else ''} not shown"
                f"\\n(max_nodes={max_nodes})")
        nodes.append(("more", note, "note"))
        for v in cut:
            lines.append(("more", names[v] + "op", "dashed"))
    return nodes, lines


def to_dot(root, rankdir="LR", max_nodes=500):
    """Graphviz DOT text of the graph that `root` was computed from.

    Draws at most max_nodes Values (the nearest to root); the rest are
    summarised in one note node. rankdir is "LR" (left to right) or "TB"."""
    _check(rankdir, max_nodes)
    nodes, edges = _graph(root, max_nodes)
    out = ["digraph rgrad {", f"  rankdir={rankdir};"]
    for name, label, shape in nodes:
        out.append(f'  {name} [label="{label}", shape={shape}];')
    for tail, head, style in edges:
        attrs = f" [style={style}]" if style else ""
        out.append(f"  {tail} -> {head}{attrs};")
    out.append("}")
    return "\n".join(out) + "\n"


def draw_dot(root, format="svg", rankdir="LR", max_nodes=500):
    """The same drawing as to_dot, as a graphviz.Digraph (render it with
    .render(), or show it in a notebook). Needs the graphviz Python package,
    and the Graphviz programs to render."""
    _check(rankdir, max_nodes)
    try:
        import graphviz
    except ImportError as e:
        raise ImportError(
            "rgrad.viz.draw_dot needs the graphviz Python package: "
            "pip install graphviz (rgrad.viz.to_dot gives DOT text without it)"
        ) from e
    nodes, edges = _graph(root, max_nodes)
    dot = graphviz.Digraph(format=format, graph_attr={"rankdir": rankdir})
    for name, label, shape in nodes:
        # the label is escaped already; nohtml: never read it as HTML
        dot.node(name, label=graphviz.nohtml(label), shape=shape)
    for tail, head, style in edges:
        dot.edge(tail, head, **({"style": style} if style else {}))
    return dot
