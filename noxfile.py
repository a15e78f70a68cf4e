"""Developer and CI tasks for durox.

``nox -s ci`` is what CI runs (``.ci/run``) and what the README tells you to run:
it queues the ``tests``, ``lint`` and ``typecheck`` sessions. ``soak`` runs the long
tests that the default run excludes, and ``bench`` measures durox against the two
peer engines (the Rust-backed ``duroxide`` package and ``dbos``) in one run.

Every session installs what it needs into its own virtualenv (plain ``venv``, so
nothing beyond a working ``python3`` is assumed) and reuses it on the next run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
# `nox` with no arguments runs what CI runs.
nox.options.sessions = ["ci"]

ROOT = Path(__file__).resolve().parent
PYPROJECT = ROOT / "pyproject.toml"

# Where `tests` writes a JUnit report when asked to (`.ci/run` asks, then checks that
# the PostgreSQL tests really ran instead of being skipped).
JUNIT_ENV = "DUROX_JUNIT_XML"

# Checkers are pinned so that CI and a developer's `nox` agree on every rule.
RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"


@nox.session
def ci(session: nox.Session) -> None:
    """Run everything CI checks: tests, lint and typecheck (each in its own session)."""
    for name in ("lint", "typecheck", "tests"):
        session.notify(name)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the default test suite (everything except ``@pytest.mark.slow``).

    Extra arguments go to pytest: ``nox -s tests -- tests/core -x``.
    """
    session.install("-e", ".[test]")
    args = ["-q", "-p", "no:cacheprovider", "-m", "not slow"]
    junit = os.environ.get(JUNIT_ENV)
    if junit:
        args.append(f"--junitxml={junit}")
    session.run("pytest", *args, *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """Run the long soak and stress tests (``@pytest.mark.slow``) only."""
    session.install("-e", ".[test]")
    session.run(
        "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow", "--timeout=3600", *session.posargs
    )


@nox.session
def lint(session: nox.Session) -> None:
    """Check style with ruff: lint rules and formatting (nothing is rewritten)."""
    session.install(RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package, the noxfile and the benchmark with mypy.

    The folders ``core/``, ``drivers/`` and ``providers/`` are the subpackages
    ``durox.core``, ``durox.drivers`` and ``durox.providers`` through setuptools'
    ``package-dir`` mapping. mypy has no such mapping and cannot see through the
    import hook of an editable install, so this session lays the package out as
    Python imports it, a tree of symlinks (see :func:`_link_tree`), and checks
    ``-p durox`` from there: every module is checked under its real name and
    errors are reported as ``durox/core/<file>.py``.
    """
    session.install("-e", ".[test]", MYPY, "nox")
    tree = _link_tree(Path(session.create_tmp()) / "mypy-tree")
    config = str(PYPROJECT)
    with session.chdir(tree):
        session.run("mypy", "--config-file", config, "-p", "durox", *session.posargs)
    # Tooling scripts import durox too; MYPYPATH puts the linked package ahead of
    # the facade folder durox/ in the repository root.
    session.run(
        "mypy",
        "--config-file",
        config,
        "noxfile.py",
        "bench",
        env={"MYPYPATH": str(tree)},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark durox against duroxide and DBOS; writes ``bench-results/peers.md``.

    Extra arguments go to ``bench/peers.py``: ``nox -s bench -- --repeats 1 --only W1``.
    """
    session.install("-e", ".[trio]", "duroxide", "dbos")
    out = ROOT / "bench-results" / "peers.md"
    session.run("python", "bench/peers.py", "--output", str(out), *session.posargs)


def _link_tree(dest: Path) -> Path:
    """Mirror ``[tool.setuptools] package-dir`` as a directory of symlinks.

    Each mapped package becomes a directory under ``dest`` whose files link back to
    the sources, so what mypy reads is always the working tree. The tree is rebuilt
    on every run, which picks up added and deleted modules.
    """
    mapping: dict[str, str] = nox.project.load_toml(PYPROJECT)["tool"]["setuptools"]["package-dir"]
    if dest.exists():
        shutil.rmtree(dest)
    for package, folder in mapping.items():
        target = dest.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted((ROOT / folder).iterdir()):
            # Subpackages have their own entry in the mapping; only files are linked.
            if source.is_file() and source.suffix in {".py", ".pyi", ".typed"}:
                (target / source.name).symlink_to(source)
    return dest
