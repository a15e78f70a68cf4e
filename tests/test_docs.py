"""The README and the docs show code that works.

- The README's hello-world runs as written, in a fresh interpreter and an empty
  directory (it creates ``app.db`` there), and prints the greeting.
- Every ``python`` block in README.md and docs/*.md is valid Python syntax. The guide's
  blocks are often fragments (a ``yield`` outside a function), which :func:`ast.parse`
  accepts; what it rejects are real typos.
"""

from __future__ import annotations

import ast
import collections
import difflib
import importlib.util
import re
import subprocess
import sys
import types
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


# -- the API reference and the provider guide ---------------------------------------------

GENERATOR = ROOT / "docs" / "gen_reference.py"
REFERENCE = ROOT / "docs" / "reference.md"
PROVIDER_GUIDE = ROOT / "docs" / "providers.md"


def _load_generator() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("durox_docs_gen_reference", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_matches_the_docstrings() -> None:
    # The page documents PostgresProvider and the trio driver; without their
    # dependencies the generator (correctly) writes a different page.
    pytest.importorskip("psycopg", reason="the reference documents PostgresProvider")
    pytest.importorskip("trio", reason="the reference documents durox.drivers.trio")
    # A fresh interpreter, exactly as `python docs/gen_reference.py` runs.
    done = subprocess.run(
        [sys.executable, str(GENERATOR), "--stdout"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    committed = REFERENCE.read_text(encoding="utf-8")
    if done.stdout != committed:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    done.stdout.splitlines(keepends=True),
                    "docs/reference.md (committed)",
                    "docs/gen_reference.py (now)",
                )
            )[:60]
        )
        pytest.fail("docs/reference.md is out of date; run `python docs/gen_reference.py`\n" + diff)


def test_reference_documents_every_public_name() -> None:
    page = REFERENCE.read_text(encoding="utf-8")
    import durox
    import durox.errors
    import durox.providers
    import durox.providers.testing

    modules = {
        "durox": durox.__all__,
        "durox.errors": durox.errors.__all__,
        "durox.providers": durox.providers.__all__,
        "durox.providers.testing": durox.providers.testing.__all__,
        "durox.drivers.threads": ["Client", "Runtime"],
        "durox.drivers.asyncio": ["Client", "Runtime"],
        "durox.drivers.trio": ["Client", "Runtime"],
    }
    missing = [
        f"{module}.{name}"
        for module, names in modules.items()
        for name in names
        if f"### `{module}.{name}`" not in page
    ]
    assert not missing, f"not in docs/reference.md: {missing}"
    assert "*(no docstring)*" not in page, "a public name lacks a docstring"


def test_reference_generator_reports_what_it_cannot_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    generator = _load_generator()
    # Named inside durox: the generator documents members of durox classes only.
    half_installed = types.ModuleType("durox._docs_half_installed", "A module with a lazy name.")
    half_installed.__all__ = ["Present", "NeedsDriver"]  # type: ignore[attr-defined]

    class Present:
        """A name that imports."""

        def run(self, *, times: int = 1) -> None:
            """Run ``times`` times (see :class:`~durox.providers.base.Provider`)."""

    Present.__module__ = half_installed.__name__
    half_installed.Present = Present  # type: ignore[attr-defined]

    def lazy(name: str) -> object:
        if name == "NeedsDriver":
            raise ModuleNotFoundError("No module named 'some_driver'")
        raise AttributeError(name)

    vars(half_installed)["__getattr__"] = lazy  # module __getattr__ (PEP 562)
    monkeypatch.setitem(sys.modules, half_installed.__name__, half_installed)
    monkeypatch.setattr(
        generator,
        "SECTIONS",
        (
            (half_installed.__name__, None, "Half installed."),
            ("durox_docs_not_installed_anywhere", None, "Not installed."),
        ),
    )
    page = generator.render()
    assert "Could not import `durox_docs_not_installed_anywhere` here" in page
    assert "No module named 'some_driver'" in page
    assert "def run(*, times: int = 1) -> None" in page
    assert "(see `Provider`)" in page


def _guide_block(needle: str) -> str:
    blocks = [src for _, src in python_blocks(PROVIDER_GUIDE) if needle in src]
    assert len(blocks) == 1, f"expected one python block with {needle!r} in docs/providers.md"
    return blocks[0]


def test_provider_guide_pytest_wiring_runs(tmp_path: Path) -> None:
    from durox.providers.testing.suite import ALL_CHECKS

    (tmp_path / "test_my_provider.py").write_text(
        _guide_block("class TestMyProvider"), encoding="utf-8"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_provider.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    counts = dict(
        (word, int(number)) for number, word in re.findall(r"(\d+) (passed|skipped)", done.stdout)
    )
    # Every check ran; only those needing several processes were skipped.
    assert counts.get("passed", 0) + counts.get("skipped", 0) == len(ALL_CHECKS)
    assert counts.get("skipped", 0) == sum(1 for c in ALL_CHECKS if c.multiprocess)


def test_provider_guide_check_provider_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {}
    exec(compile(_guide_block("check_provider("), "providers.md", "exec"), namespace)
    report = namespace["report"]
    assert getattr(report, "ok", False)
    assert "passed, 0 failed" in capsys.readouterr().out


def test_provider_guide_lists_every_category_with_its_count() -> None:
    from durox.providers.testing.suite import ALL_CHECKS, categories

    text = PROVIDER_GUIDE.read_text(encoding="utf-8")
    table = re.findall(r"^\| `(\w+)` \| (\d+) \|", text, re.MULTILINE)
    live = collections.Counter(c.category for c in ALL_CHECKS)
    assert [name for name, _ in table] == categories()
    assert {name: int(count) for name, count in table} == dict(live)
