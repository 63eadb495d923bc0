"""rgrad.viz: DOT text of a graph, summaries of big graphs, graphviz.Digraph."""
import re
import shutil
import subprocess
import sys

import pytest

from rgrad import Value, viz
from rgrad.viz import draw_dot, to_dot


def _small():
    """d = a*b + a: four Values (a, b, c = a*b, d) and two ops."""
    a, b = Value(2.0), Value(-3.0)
    c = a * b
    d = c + a
    d.backward()
    return a, b, c, d


def _counts(dot):
    lines = dot.splitlines()
    return (sum("shape=record" in ln for ln in lines),
            sum("shape=ellipse" in ln for ln in lines),
            sum("->" in ln for ln in lines))


def _chain(n):
    """n ops in a line over one leaf: n + 1 Values, and a leaf for each of the
    n // 2 constants (as micrograd draws them): n + 1 + n // 2 in all."""
    x = Value(1.0)
    v = x
    for i in range(n):
        v = v + 1.0 if i % 2 else v * x
    return v


def test_to_dot_draws_a_box_per_value_an_oval_per_op_and_their_edges():
    *_, d = _small()
    dot = to_dot(d)
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    # edges: each op into its Value (2), each input into its op (a, b; c, a)
    assert _counts(dot) == (4, 2, 6)


def test_value_boxes_show_data_and_grad_and_op_ovals_show_the_op():
    *_, d = _small()
    dot = to_dot(d)
    # a: data 2, grad b + 1 = -2; b: grad a = 2; c and d: grad 1
    for text in ("data 2.0000 | grad -2.0000", "data -3.0000 | grad 2.0000",
                 "data -6.0000 | grad 1.0000", "data -4.0000 | grad 1.0000"):
        assert text in dot
    ops = re.findall(r'\[label="([^"]*)", shape=ellipse\]', dot)
    assert sorted(ops) == ["*", "+"]


def test_edges_run_from_inputs_through_the_op_to_the_result():
    a, b, c, d = _small()
    dot = to_dot(d)
    name = {v: f"v{viz._node_id(v)}" for v in (a, b, c, d)}
    for tail, head in [(a, c), (b, c), (c, d), (a, d)]:
        assert f"{name[tail]} -> {name[head]}op;" in dot
    assert f"{name[c]}op -> {name[c]};" in dot and f"{name[d]}op -> {name[d]};" in dot


def test_a_value_used_twice_is_drawn_once():
    x = Value(3.0)
    y = x * x + x
    # Values x, x*x, y; ops * and +; edges x->*, *->x*x, x*x->+, x->+, +->y
    assert _counts(to_dot(y)) == (3, 2, 5)


def test_a_leaf_alone_is_one_box_with_no_op():
    assert _counts(to_dot(Value(1.5))) == (1, 0, 0)


def test_a_values_label_is_shown_in_its_box():
    *_, d = _small()
    d.label = "out"
    assert "{ out | data -4.0000 | grad 1.0000 }" in to_dot(d)


def test_labels_and_op_names_are_escaped_for_dot():
    a = Value(1.0)
    b = Value(2.0, (a,), 'say "hi" \\ {x}')   # an op defined in Python
    b.label = 'q"{a|b}<c>\\\nend'
    dot = to_dot(b)
    assert r'{ q\"\{a\|b\}\<c\>\\\nend | data 2.0000' in dot
    assert r'[label="say \"hi\" \\ {x}", shape=ellipse]' in dot
    if shutil.which("dot"):   # Graphviz itself reads it without complaint
        out = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0 and not out.stderr, out.stderr
        assert "q&quot;{a|b}&lt;c&gt;\\" in out.stdout
        assert "say &quot;hi&quot; \\ {x}" in out.stdout


def test_big_and_small_numbers_keep_their_digits():
    v = Value(1.5e-7) * 1e13
    dot = to_dot(v)
    assert "data 1.5000e-07" in dot and "data 1.5000e+06" in dot


def test_rankdir_is_lr_or_tb_and_anything_else_is_a_value_error():
    *_, d = _small()
    assert "rankdir=LR;" in to_dot(d)
    assert "rankdir=TB;" in to_dot(d, rankdir="TB")
    with pytest.raises(ValueError, match="rankdir"):
        to_dot(d, rankdir="RL")
    with pytest.raises(ValueError, match="max_nodes"):
        to_dot(d, max_nodes=0)


def test_a_100000_value_chain_is_summarised_in_500_records():
    v = _chain(66_666)              # 66,667 + 33,333 constant leaves
    dot = to_dot(v)
    records, _, _ = _counts(dot)
    assert records == 500
    assert "99,500 more values not shown" in dot
    # the note points (dashed) at the op whose input was cut off
    assert re.search(r"more -> v\d+op \[style=dashed\];", dot)


def test_max_nodes_bounds_the_drawing():
    v = _chain(100)
    dot = to_dot(v, max_nodes=10)
    assert _counts(dot)[0] == 10
    assert "141 more values not shown" in dot
    assert _counts(to_dot(v, max_nodes=151))[0] == 151
    assert "more" not in to_dot(v, max_nodes=151)


def test_past_the_counting_limit_the_note_gives_a_lower_bound(monkeypatch):
    monkeypatch.setattr(viz, "_COUNT_LIMIT", 10)
    dot = to_dot(_chain(1000), max_nodes=5)
    assert re.search(r"at least \d+ more values not shown", dot)


def test_draw_dot_without_graphviz_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)   # import fails
    *_, d = _small()
    with pytest.raises(ImportError, match="pip install graphviz"):
        draw_dot(d)


def test_draw_dot_builds_a_digraph_with_the_same_drawing():
    graphviz = pytest.importorskip("graphviz")
    *_, d = _small()
    d.label = "<out>"
    g = draw_dot(d, format="png", rankdir="TB")
    assert isinstance(g, graphviz.Digraph)
    assert g.format == "png"
    assert "rankdir=TB" in g.source
    assert _counts(g.source) == _counts(to_dot(d)) == (4, 2, 6)
    assert r"\<out\> | data -4.0000 | grad 1.0000" in g.source
    with pytest.raises(ValueError):
        draw_dot(d, rankdir="BT")
    if shutil.which("dot"):
        svg = draw_dot(d).pipe(format="svg").decode()
        assert "data 2.0000" in svg and "&lt;out&gt;" in svg
