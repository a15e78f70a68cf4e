"""durox.core stays sans-IO: no I/O, no clock, no threads, no hidden randomness.

The replay engine must produce the same decisions every time it sees the same
history, so nothing in ``core/`` may reach for the outside world. These tests read
the source with :mod:`ast` (nothing is imported, so a bad module cannot hide behind
an import error) and check three things:

1. Imports. An allow-list: a new impure module cannot slip in unnoticed. A deny-list
   on top names the modules the rule is really about, so a failure says exactly
   what is wrong.
2. Calls that read the clock, draw randomness or do I/O through builtins
   (``datetime.now()``, ``uuid.uuid4()``, ``open()``, ``print()``, ...).
3. What importing actually loads, checked in a fresh interpreter: ``import durox``
   and every ``durox.core`` module must not pull in an event loop, a database
   driver or the network stack, and ``import durox.providers`` must not load
   psycopg, trio or asyncio.

``os``, ``time`` and ``threading`` are not checked in (3): the standard library
imports them internally, so their presence in ``sys.modules`` says nothing about
durox. Check (1) keeps them out of core's own source.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "core"

#: Top-level modules core may import. Everything else is refused.
ALLOWED = frozenset(
    {
        "__future__",
        "abc",
        "attrs",
        "cattrs",
        "collections",
        "dataclasses",
        "datetime",
        "durox",
        "enum",
        "functools",
        "hashlib",
        "inspect",
        "itertools",
        "json",
        "math",
        "operator",
        "re",
        "types",
        "typing",
        "uuid",
    }
)

#: The modules the sans-IO rule exists to keep out (SPEC §1).
DENIED = frozenset(
    {
        "asyncio",
        "logging",
        "os",
        "psycopg",
        "random",
        "socket",
        "sqlite3",
        "threading",
        "time",
        "trio",
    }
)

#: Builtins that do I/O or run code behind the engine's back.
BANNED_BUILTIN_CALLS = frozenset(
    {"open", "print", "input", "exec", "eval", "compile", "__import__", "breakpoint"}
)

#: ``<module or class>.<attribute>`` pairs that read the clock or draw randomness.
BANNED_ATTRIBUTES = frozenset(
    {
        ("datetime", "now"),
        ("datetime", "utcnow"),
        ("datetime", "today"),
        ("date", "today"),
        ("uuid", "uuid1"),
        ("uuid", "uuid4"),
    }
)

#: Names that must not be imported from these modules (``from uuid import uuid4``).
BANNED_FROM_IMPORTS = {"uuid": frozenset({"uuid1", "uuid4"})}


def core_files() -> list[Path]:
    """Every Python file of durox.core, sorted so failures are reported stably."""
    return sorted(CORE.rglob("*.py"))


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Yield ``(line, dotted module name)`` for every absolute import in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def _where(path: Path, line: int) -> str:
    return f"core/{path.relative_to(CORE)}:{line}"


def test_core_has_modules() -> None:
    # Guards the tests below against passing vacuously on a wrong path.
    names = {path.name for path in core_files()}
    assert {"__init__.py", "errors.py", "history.py"} <= names


@pytest.mark.parametrize("path", core_files(), ids=lambda p: p.name)
def test_core_imports_no_io_modules(path: Path) -> None:
    bad = [
        f"{_where(path, line)} imports {name}"
        for line, name in _imports(_parse(path))
        if name.partition(".")[0] in DENIED
    ]
    assert not bad, "core/ must stay sans-IO:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", core_files(), ids=lambda p: p.name)
def test_core_imports_only_allowed_modules(path: Path) -> None:
    bad = [
        f"{_where(path, line)} imports {name}"
        for line, name in _imports(_parse(path))
        if name.partition(".")[0] not in ALLOWED
    ]
    assert not bad, "core/ may import only " + ", ".join(sorted(ALLOWED)) + ":\n" + "\n".join(bad)


@pytest.mark.parametrize("path", core_files(), ids=lambda p: p.name)
def test_core_imports_only_core_from_durox(path: Path) -> None:
    # Layering: providers and drivers build on core, never the other way round.
    bad = [
        f"{_where(path, line)} imports {name}"
        for line, name in _imports(_parse(path))
        if name.partition(".")[0] == "durox"
        and name != "durox.core"
        and not name.startswith("durox.core.")
    ]
    assert not bad, "core/ may import only durox.core from durox:\n" + "\n".join(bad)


def _dotted(node: ast.expr) -> list[str]:
    """``a.b.c`` as ``["a", "b", "c"]``; an empty list for anything else."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return []


def _impure_uses(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in BANNED_BUILTIN_CALLS:
                yield node.lineno, f"{node.func.id}()"
        elif isinstance(node, ast.Attribute):
            # Referencing counts as using: `field(factory=datetime.now)` reads the
            # clock just as surely as calling it.
            dotted = _dotted(node)
            if len(dotted) >= 2 and (dotted[-2], dotted[-1]) in BANNED_ATTRIBUTES:
                yield node.lineno, ".".join(dotted)
        elif isinstance(node, ast.ImportFrom) and node.module in BANNED_FROM_IMPORTS:
            for alias in node.names:
                if alias.name in BANNED_FROM_IMPORTS[node.module]:
                    yield node.lineno, f"from {node.module} import {alias.name}"


@pytest.mark.parametrize("path", core_files(), ids=lambda p: p.name)
def test_core_reads_no_clock_randomness_or_files(path: Path) -> None:
    bad = [f"{_where(path, line)} uses {what}" for line, what in _impure_uses(_parse(path))]
    assert not bad, (
        "core/ gets time and entropy as run_turn inputs and returns traces "
        "instead of printing:\n" + "\n".join(bad)
    )


# --- What importing really loads (fresh interpreter, so nothing is cached) -------

#: Never loaded by `import durox` or any durox.core module.
NOT_LOADED_BY_CORE = ("trio", "asyncio", "sqlite3", "psycopg", "socket", "selectors")
#: Never loaded by `import durox.providers` (SQLite is allowed: it is the default).
NOT_LOADED_BY_PROVIDERS = ("trio", "asyncio", "psycopg")


def _loaded_after(script: str, watched: tuple[str, ...]) -> list[str]:
    """Run ``script`` in a fresh interpreter; return which ``watched`` modules it loaded."""
    probe = (
        f"{script}\n"
        "import json, sys\n"
        f"print(json.dumps(sorted(m for m in {list(watched)!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_durox_and_core_loads_no_io_framework() -> None:
    script = (
        "import importlib, pkgutil\n"
        "import durox, durox.core, durox.errors\n"
        "for info in pkgutil.walk_packages(durox.core.__path__, 'durox.core.'):\n"
        "    importlib.import_module(info.name)\n"
    )
    assert _loaded_after(script, NOT_LOADED_BY_CORE) == []


def test_importing_providers_loads_no_async_framework_or_psycopg() -> None:
    assert _loaded_after("import durox.providers", NOT_LOADED_BY_PROVIDERS) == []


def test_embedded_providers_do_not_load_psycopg() -> None:
    # Using the memory or SQLite provider must not cost a PostgreSQL driver import.
    script = "from durox.providers import MemoryProvider, SqliteProvider"
    assert _loaded_after(script, NOT_LOADED_BY_PROVIDERS) == []
