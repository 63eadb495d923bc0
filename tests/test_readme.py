"""Every ```python block of README.md runs as written, pasted into a fresh
interpreter, and prints what its comments say: a line `print(...)  # text`
must print `text`."""
import os
import re
import subprocess
import sys
import textwrap

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
# a block may sit indented in a list item: its closing fence has the same indent
FENCE = re.compile(r"^( *)```python\n(.*?)^\1```$", re.M | re.S)
PRINT_WITH_OUTPUT = re.compile(r"^\s*print\(.*\)\s+#\s*(.+?)\s*$")


def _blocks():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    return [pytest.param(textwrap.dedent(m.group(2)),
                         id=f"line{text.count(chr(10), 0, m.start()) + 1}")
            for m in FENCE.finditer(text)]


BLOCKS = _blocks()


def test_the_readme_has_its_python_blocks():
    # the worked example, switching over, training, a custom op
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("code", BLOCKS)
def test_readme_block_runs_and_prints_what_its_comments_say(code, tmp_path):
    if "micrograd" in code:
        pytest.importorskip("micrograd")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    printed = [m.group(1) for m in map(PRINT_WITH_OUTPUT.match, code.splitlines()) if m]
    assert done.stdout.splitlines() == printed
