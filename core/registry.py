"""Registry: the orchestrations and activities a runtime can run, by name and version.

>>> registry = Registry()
>>> @registry.activity("Greet")
... def greet(ctx, name: str) -> str:
...     return f"Hello, {name}!"
>>> @registry.orchestration("Hello")
... def hello(ctx, name: str):
...     return (yield ctx.schedule_activity("Greet", name))
>>> registry.resolve_orchestration("Hello").version
'1.0.0'
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from durox.core.errors import InvalidArgument
from durox.core.limits import check_id

__all__ = [
    "SYSTEM_PREFIX",
    "ActivityDefinition",
    "OrchestrationDefinition",
    "Registry",
    "parse_version",
]

SYSTEM_PREFIX = "__durox:"
"""Names starting with this are reserved for durox's own system activities."""

F = TypeVar("F", bound=Callable[..., Any])

_VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


def parse_version(version: str) -> tuple[int, int, int]:
    """Parse ``"MAJOR.MINOR.PATCH"``; :class:`InvalidArgument` otherwise.

    >>> parse_version("1.10.0") > parse_version("1.9.3")
    True
    """
    match = _VERSION.match(version) if isinstance(version, str) else None
    if match is None:
        raise InvalidArgument(
            f"version {version!r} is not of the form MAJOR.MINOR.PATCH (like '1.0.0')"
        )
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


@attrs.frozen(kw_only=True)
class OrchestrationDefinition:
    """One registered orchestration version.

    ``input_type`` is the annotation of the function's second parameter
    (``None`` when absent): the input is structured to it before the call.
    """

    name: str
    version: str
    fn: Callable[..., Any]
    input_type: Any = None


@attrs.frozen(kw_only=True)
class ActivityDefinition:
    """One registered activity; ``is_async`` when it is an ``async def``."""

    name: str
    fn: Callable[..., Any]
    input_type: Any = None
    is_async: bool = False


class Registry:
    """Names → code. Orchestrations are versioned; the latest runs unless a version is pinned."""

    def __init__(self) -> None:
        self._orchestrations: dict[str, dict[tuple[int, int, int], OrchestrationDefinition]] = {}
        self._activities: dict[str, ActivityDefinition] = {}

    # -- registration ------------------------------------------------------------

    def orchestration(self, name: str | None = None, *, version: str = "1.0.0") -> Callable[[F], F]:
        """Decorator: register a generator function as orchestration ``name`` (default: its ``__name__``)."""

        def register(fn: F) -> F:
            self.add_orchestration(name or fn.__name__, fn, version=version)
            return fn

        return register

    def activity(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator: register a ``def`` or ``async def`` as activity ``name`` (default: its ``__name__``)."""

        def register(fn: F) -> F:
            self.add_activity(name or fn.__name__, fn)
            return fn

        return register

    def add_orchestration(
        self, name: str, fn: Callable[..., Any], *, version: str = "1.0.0"
    ) -> None:
        """Register ``fn`` as version ``version`` of orchestration ``name``."""
        _check_user_name(name, "orchestration name")
        key = parse_version(version)
        if not callable(fn):
            raise InvalidArgument(
                f"orchestration {name!r} must be a function, got {type(fn).__name__}"
            )
        versions = self._orchestrations.setdefault(name, {})
        if key in versions:
            raise InvalidArgument(f"orchestration {name!r} version {version} is registered already")
        versions[key] = OrchestrationDefinition(
            name=name, version=version, fn=fn, input_type=_input_type(fn)
        )

    def add_activity(self, name: str, fn: Callable[..., Any]) -> None:
        """Register ``fn`` as activity ``name``."""
        _check_user_name(name, "activity name")
        if not callable(fn):
            raise InvalidArgument(f"activity {name!r} must be a function, got {type(fn).__name__}")
        if name in self._activities:
            raise InvalidArgument(f"activity {name!r} is registered already")
        self._activities[name] = ActivityDefinition(
            name=name, fn=fn, input_type=_input_type(fn), is_async=inspect.iscoroutinefunction(fn)
        )

    def include(self, other: Registry) -> Registry:
        """Add every orchestration version and activity of ``other``; clashes raise. Returns ``self``."""
        for versions in other._orchestrations.values():
            for definition in versions.values():
                self.add_orchestration(definition.name, definition.fn, version=definition.version)
        for activity in other._activities.values():
            self.add_activity(activity.name, activity.fn)
        return self

    # -- lookup --------------------------------------------------------------------

    def resolve_orchestration(
        self, name: str, version: str | None = None
    ) -> OrchestrationDefinition | None:
        """The exact ``version`` of ``name``, or its latest when ``version`` is ``None``."""
        versions = self._orchestrations.get(name)
        if not versions:
            return None
        if version is None:
            return versions[max(versions)]
        try:
            return versions.get(parse_version(version))
        except InvalidArgument:
            return None

    def get_activity(self, name: str) -> ActivityDefinition | None:
        """The activity registered as ``name``, if any."""
        return self._activities.get(name)

    def orchestration_names(self) -> list[str]:
        """Registered orchestration names, sorted."""
        return sorted(self._orchestrations)

    def orchestration_versions(self, name: str) -> list[str]:
        """Registered versions of ``name``, oldest first."""
        return [
            self._orchestrations[name][key].version
            for key in sorted(self._orchestrations.get(name, {}))
        ]

    def activity_names(self) -> list[str]:
        """Registered activity names, sorted."""
        return sorted(self._activities)


def _check_user_name(name: str, what: str) -> None:
    check_id(name, what)
    if name.startswith(SYSTEM_PREFIX):
        raise InvalidArgument(
            f"{what} {name!r} uses the prefix {SYSTEM_PREFIX!r}, reserved for durox"
        )


def _input_type(fn: Callable[..., Any]) -> Any:
    """The annotation of ``fn``'s second parameter, or ``None``."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if len(parameters) < 2:
        return None
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to raw JSON values
        return None
    hint = hints.get(parameters[1].name)
    return None if hint is Any else hint
