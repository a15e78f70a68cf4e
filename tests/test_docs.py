"""The README and the docs show code that works.

- The README's hello-world runs as written, in a fresh interpreter and an empty
  directory (it creates ``app.db`` there), and prints the greeting.
- Every ``python`` block in README.md and docs/*.md is valid Python syntax. The guide's
  blocks are often fragments (a ``yield`` outside a function), which :func:`ast.parse`
  accepts; what it rejects are real typos.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """``(line number, source)`` of every fenced python block in ``path``."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in _BLOCK.finditer(text)]


def test_documents_have_python_examples() -> None:
    # Guards the syntax test against passing vacuously on a changed fence style.
    assert len(python_blocks(ROOT / "docs" / "guide.md")) > 50
    assert python_blocks(ROOT / "README.md")


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_python_blocks_parse(path: Path) -> None:
    bad = []
    for line, source in python_blocks(path):
        try:
            ast.parse(source)
        except SyntaxError as exc:
            bad.append(f"{path.name}:{line + (exc.lineno or 1) - 1}: {exc.msg}")
    assert not bad, "\n".join(bad)


def test_readme_hello_world_runs(tmp_path: Path) -> None:
    hello = next(src for _, src in python_blocks(ROOT / "README.md") if "HelloWorld" in src)
    done = subprocess.run(
        [sys.executable, "-c", hello],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hello, World!"
    assert (tmp_path / "app.db").exists()
