"""Write docs/reference.md from the live docstrings and signatures of durox's public names.

Run it after changing a public docstring or signature::

    python docs/gen_reference.py           # rewrite docs/reference.md
    python docs/gen_reference.py --stdout  # print the page instead

The page is a pure function of the importable code (the standard library's
:mod:`inspect`, plus :mod:`ast` to read the docstrings written under module and
class attributes), in a fixed order, so ``tests/test_docs.py`` can check that
the committed page is up to date. A module or name that cannot be imported here
(``PostgresProvider`` without psycopg) is reported in the page, not fatal.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import itertools
import re
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PAGE = Path(__file__).resolve().parent / "reference.md"

# (module, names, intro). ``None`` as names means the module's ``__all__``; the
# order here is the order of the page.
SECTIONS: tuple[tuple[str, tuple[str, ...] | None, str], ...] = (
    (
        "durox",
        None,
        "Everything an application imports: contexts, registry, options, statuses, errors.",
    ),
    ("durox.errors", None, "Every exception durox raises, for `from durox.errors import ...`."),
    (
        "durox.drivers.threads",
        None,
        "The blocking runtime and client. Its `Client` carries the full documentation of every client method; the asyncio and trio clients have the same methods, awaited.",
    ),
    ("durox.drivers.asyncio", None, "The asyncio runtime and client."),
    ("durox.drivers.trio", None, "The trio runtime and client."),
    ("durox.providers", None, "The storage providers and the contract they implement."),
    (
        "durox.providers.base",
        None,
        "The storage contract and the records providers return (see [the provider guide](providers.md)).",
    ),
    (
        "durox.core.commit",
        None,
        "What an orchestration ack writes: the input of `Provider.ack_orchestration_item`.",
    ),
    ("durox.core.messages", None, "The messages the two provider queues carry."),
    (
        "durox.providers.testing",
        None,
        "The provider conformance suite (see [the provider guide](providers.md#running-the-conformance-suite)).",
    ),
)

# Sphinx cross-reference roles read as plain code in Markdown.
_ROLE = re.compile(r":(?:class|meth|func|mod|attr|data|exc|obj):`(~?)([^`]+)`")
_DOUBLE_TICKS = re.compile(r"``([^`]+)``")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


# -- docstrings -----------------------------------------------------------------------


def markdown_doc(doc: str | None) -> str:
    """A cleaned docstring as Markdown: roles and double backticks become code, doctests fenced."""
    if not doc:
        return "*(no docstring)*"
    text = inspect.cleandoc(doc)
    # Sphinx shows ``~a.b.C`` as ``C`` and a plain target with its path.
    text = _ROLE.sub(
        lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text
    )
    text = _DOUBLE_TICKS.sub(r"`\1`", text)
    # reST's "text::" introduces the indented block below it, which Markdown shows as code.
    text = re.sub(r"(?m)^(\s*)::$\n?", "", text)
    text = re.sub(r"(?m)(\S)::$", r"\1:", text)
    return "\n".join(_fence_doctests(text.splitlines()))


def _fence_doctests(lines: list[str]) -> Iterator[str]:
    """Wrap each run of ``>>>`` lines (and their output) in a ``pycon`` fence."""
    in_doctest = False
    for line in lines:
        if line.startswith(">>>") and not in_doctest:
            in_doctest = True
            yield "```pycon"
        elif in_doctest and not line.strip():
            in_doctest = False
            yield "```"
        yield line
    if in_doctest:
        yield "```"


@functools.cache
def _attribute_docs(module_name: str) -> dict[str, str]:
    """``{"Name": doc, "Class.attr": doc}`` for string literals right under an assignment."""
    module = sys.modules.get(module_name)
    try:
        source = inspect.getsource(module) if module is not None else ""
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}

    def scan(body: list[ast.stmt], prefix: str) -> None:
        for stmt, following in itertools.pairwise(body):
            target = None
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target = stmt.targets[0]
            elif isinstance(stmt, ast.AnnAssign):
                target = stmt.target
            if (
                isinstance(target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[prefix + target.id] = following.value.value
        for stmt in body:
            if isinstance(stmt, ast.ClassDef) and not prefix:
                scan(stmt.body, stmt.name + ".")

    scan(ast.parse(source).body, "")
    return docs


def _defining_module_doc(obj: object, name: str) -> str | None:
    """The attribute docstring of a module-level alias, from the durox module that assigns it."""
    for module_name in sorted(m for m in sys.modules if m == "durox" or m.startswith("durox.")):
        module = sys.modules[module_name]
        if getattr(module, "__dict__", {}).get(name) is obj:
            doc = _attribute_docs(module_name).get(name)
            if doc is not None:
                return doc
    return None


# -- signatures -----------------------------------------------------------------------


def _annotation(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation  # postponed annotations are already the source text
    return inspect.formatannotation(annotation)


def _value(value: Any) -> str:
    return _ADDRESS.sub("", repr(value))


def format_signature(fn: Callable[..., Any], *, drop_first: bool) -> str:
    """``(a: int, *, b: str = 'x') -> T`` with annotations as written, without ``self``.

    ``(...)`` when Python knows no signature (a constructor inherited from a builtin).
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return "(...)"
    params = list(signature.parameters.values())
    if drop_first and params and params[0].name in ("self", "cls"):
        params = params[1:]
    parts: list[str] = []
    star_done = False
    for index, param in enumerate(params):
        if param.kind is param.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        if param.kind is param.VAR_POSITIONAL:
            star_done = True
        text = param.name
        if param.kind is param.VAR_POSITIONAL:
            text = "*" + text
        elif param.kind is param.VAR_KEYWORD:
            text = "**" + text
        if param.annotation is not param.empty:
            text += ": " + _annotation(param.annotation)
        if param.default is not param.empty:
            spacer = " = " if param.annotation is not param.empty else "="
            text += spacer + _value(param.default)
        parts.append(text)
        following = params[index + 1] if index + 1 < len(params) else None
        if param.kind is param.POSITIONAL_ONLY and (
            following is None or following.kind is not param.POSITIONAL_ONLY
        ):
            parts.append("/")
    result = f"({', '.join(parts)})"
    if signature.return_annotation is not signature.empty:
        result += " -> " + _annotation(signature.return_annotation)
    return result


# -- classes ----------------------------------------------------------------------------


def _is_durox(cls: type) -> bool:
    return cls.__module__ == "durox" or cls.__module__.startswith("durox.")


def _members(cls: type) -> list[tuple[str, Any, type]]:
    """Public members defined by ``cls`` or its durox bases: (name, raw attribute, owner).

    Own members come first, in definition order, then each base's in MRO order.
    """
    seen: set[str] = set()
    found: list[tuple[str, Any, type]] = []
    for owner in cls.__mro__:
        if not _is_durox(owner):
            continue
        for name, raw in vars(owner).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            found.append((name, raw, owner))
    return found


def _render_member(cls: type, name: str, raw: Any, owner: type) -> list[str] | None:
    heading = f"#### `{cls.__name__}.{name}`"
    where = "" if owner is cls else f"\n\n*Inherited from `{owner.__name__}`.*"
    if isinstance(raw, property):
        returns = ""
        if raw.fget is not None:
            annotation = inspect.signature(raw.fget).return_annotation
            if annotation is not inspect.Signature.empty:
                returns = ": " + _annotation(annotation)
        return [
            heading,
            "",
            f"```\nproperty {name}{returns}\n```",
            "",
            markdown_doc(raw.__doc__) + where,
        ]
    if isinstance(raw, (staticmethod, classmethod)):
        kind = "staticmethod" if isinstance(raw, staticmethod) else "classmethod"
        fn = raw.__func__
        signature = format_signature(fn, drop_first=isinstance(raw, classmethod))
        return [
            heading,
            "",
            f"```\n{kind} {name}{signature}\n```",
            "",
            markdown_doc(fn.__doc__) + where,
        ]
    if callable(raw) and not isinstance(raw, type):
        fn = getattr(raw, "__wrapped__", raw)
        prefix = "async " if inspect.iscoroutinefunction(fn) else ""
        signature = format_signature(raw, drop_first=True)
        return [
            heading,
            "",
            f"```\n{prefix}def {name}{signature}\n```",
            "",
            markdown_doc(inspect.getdoc(raw)) + where,
        ]
    if isinstance(raw, (types.MemberDescriptorType, types.GetSetDescriptorType)):
        return None  # attrs slots: the fields are in the constructor signature
    # A subclass that overrides a documented attribute keeps the base's documentation.
    doc = next(
        (
            found
            for base in cls.__mro__
            if _is_durox(base)
            and (found := _attribute_docs(base.__module__).get(f"{base.__name__}.{name}"))
        ),
        None,
    )
    body = [heading, "", f"```\n{name} = {_value(raw)}\n```"]
    if doc is not None:
        body += ["", markdown_doc(doc)]
    if where:
        body += [where.strip()]
    return body


def render_class(qualified: str, cls: type) -> list[str]:
    """Heading, constructor signature, class docstring, then every public member."""
    bases = [b.__name__ for b in cls.__bases__ if b is not object]
    header = f"class {cls.__name__}" + (f"({', '.join(bases)})" if bases else "")
    constructor = format_signature(cls, drop_first=False)
    if constructor != "(...)":
        header += f"\n{cls.__name__}{constructor}"
    lines = [f"### `{qualified}`", "", f"```\n{header}\n```", ""]
    lines.append(markdown_doc(cls.__doc__))
    generated_tests = 0
    for name, raw, owner in _members(cls):
        if name.startswith("test_"):
            generated_tests += 1  # one per conformance check; listed in docs/providers.md
            continue
        rendered = _render_member(cls, name, raw, owner)
        if rendered is not None:
            lines += ["", *rendered]
    if generated_tests:
        lines += [
            "",
            f"#### `{cls.__name__}.test_<category>__<check>`",
            "",
            f"{generated_tests} test methods, one per registered conformance check; "
            "their docstrings are the checks' docstrings (see [the provider guide](providers.md#what-the-suite-checks)).",
        ]
    return lines


# -- modules ------------------------------------------------------------------------------


def render_name(qualified: str, obj: object) -> list[str]:
    """One public name: a class, a function or a documented alias."""
    if isinstance(obj, type):
        return render_class(qualified, obj)
    short = qualified.rsplit(".", 1)[1]
    if callable(obj) and not _is_alias(obj):
        return [
            f"### `{qualified}`",
            "",
            f"```\ndef {short}{format_signature(obj, drop_first=False)}\n```",
            "",
            markdown_doc(inspect.getdoc(obj)),
        ]
    value = _annotation(obj) if _is_alias(obj) else _value(obj)
    lines = [f"### `{qualified}`", "", f"```\n{short} = {value}\n```"]
    doc = _defining_module_doc(obj, short)
    if doc is not None:
        lines += ["", markdown_doc(doc)]
    return lines


def _is_alias(obj: object) -> bool:
    # typing constructs (Union[...], Literal[...], Callable[...]) print as their source.
    return type(obj).__module__ == "typing" or isinstance(obj, types.GenericAlias)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def render() -> str:
    """The whole page."""
    sections: list[list[str]] = []
    documented: dict[int, str] = {}  # id(obj) -> where it was first documented
    for module_name, names, intro in SECTIONS:
        lines = [f"## `{module_name}`", "", intro, ""]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            lines.append(f"*Could not import `{module_name}` here ({type(exc).__name__}: {exc}).*")
            sections.append(lines)
            continue
        lines.append(markdown_doc(module.__doc__))
        for name in sorted(names if names is not None else module.__all__):
            qualified = f"{module_name}.{name}"
            try:
                obj = getattr(module, name)
            except ImportError as exc:
                lines += [
                    "",
                    f"### `{qualified}`",
                    "",
                    f"*Could not be imported here ({type(exc).__name__}: {exc}); "
                    "install its optional dependencies and run `python docs/gen_reference.py` again.*",
                ]
                continue
            first = documented.get(id(obj))
            if first is not None:
                lines += [
                    "",
                    f"### `{qualified}`",
                    "",
                    f"The same object as [`{first}`](#{slug(first)}).",
                ]
                continue
            if isinstance(obj, type) or callable(obj) or _is_alias(obj):
                documented[id(obj)] = qualified
            lines += ["", *render_name(qualified, obj)]
        sections.append(lines)
    header = [
        "# API reference",
        "",
        "<!-- Generated by docs/gen_reference.py from the docstrings; do not edit by hand. -->",
        "",
        "Every public name of durox, with its signature and docstring, generated from the code",
        "by `python docs/gen_reference.py` (a test fails when this page is out of date).",
        "Names re-exported in several places are documented once and linked from the others.",
        "",
        "## Contents",
        "",
        *(f"- [`{module}`](#{slug(module)})" for module, _, _ in SECTIONS),
    ]
    body = [line for section in sections for line in ["", *section]]
    return "\n".join(header + body).rstrip() + "\n"


def main(argv: list[str]) -> int:
    """Write the page (or print it with ``--stdout``)."""
    page = render()
    if "--stdout" in argv:
        sys.stdout.write(page)
    else:
        PAGE.write_text(page, encoding="utf-8")
        print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
