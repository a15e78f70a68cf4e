"""Registry: names, versions, include, reserved names, typed inputs from annotations."""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from typing import Any

import attrs
import pytest

from durox.core.errors import InvalidArgument
from durox.core.items import OrchestrationItem
from durox.core.messages import StartOrchestration
from durox.core.options import RuntimeOptions
from durox.core.registry import Registry, parse_version
from durox.core.turn import AckTurn, decide_turn

Gen = Generator[Any, Any, Any]


@attrs.frozen
class Point:
    x: int
    y: int


@dataclasses.dataclass(frozen=True)
class Box:
    label: str
    size: float


def orch_point(ctx: Any, p: Point) -> Gen:
    return p.x + p.y
    yield  # pragma: no cover


def orch_box(ctx: Any, box: Box) -> Gen:
    return f"{box.label}:{box.size * 2}"
    yield  # pragma: no cover


def orch_list(ctx: Any, values: list[int]) -> Gen:
    return sum(values)
    yield  # pragma: no cover


def orch_any(ctx: Any, value: Any) -> Gen:
    return value
    yield  # pragma: no cover


def orch_bare(ctx, value):  # type: ignore[no-untyped-def]
    return value
    yield  # pragma: no cover


def orch_no_input(ctx: Any) -> Gen:
    return 1
    yield  # pragma: no cover


def test_versions_resolve_latest_by_number_or_exactly() -> None:
    registry = Registry()
    for version in ("1.9.0", "1.10.0", "1.2.3"):
        registry.add_orchestration("O", orch_any, version=version)
    assert registry.orchestration_versions("O") == ["1.2.3", "1.9.0", "1.10.0"]
    latest = registry.resolve_orchestration("O")
    assert latest is not None and latest.version == "1.10.0"
    exact = registry.resolve_orchestration("O", "1.9.0")
    assert exact is not None and exact.version == "1.9.0"
    assert registry.resolve_orchestration("O", "2.0.0") is None
    assert registry.resolve_orchestration("O", "not a version") is None
    assert registry.resolve_orchestration("Missing") is None
    assert registry.orchestration_versions("Missing") == []


def test_default_version_and_decorator_names() -> None:
    registry = Registry()

    def named_by_function(ctx: Any, _: Any) -> Gen:
        yield ctx.schedule_timer(1)

    registry.orchestration()(named_by_function)
    registry.orchestration("Explicit", version="2.0.0")(named_by_function)
    registry.activity()(orch_any)
    assert registry.orchestration_names() == ["Explicit", "named_by_function"]
    definition = registry.resolve_orchestration("named_by_function")
    assert definition is not None and definition.version == "1.0.0"
    assert registry.activity_names() == ["orch_any"]


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "01.0.0", "1.0.0-beta", "", "1.0.0 "])
def test_bad_versions_are_rejected(version: str) -> None:
    with pytest.raises(InvalidArgument, match=r"MAJOR\.MINOR\.PATCH"):
        Registry().add_orchestration("O", orch_any, version=version)


def test_parse_version() -> None:
    assert parse_version("0.0.0") == (0, 0, 0)
    assert parse_version("10.20.30") == (10, 20, 30)
    with pytest.raises(InvalidArgument):
        parse_version(1)


def test_duplicates_are_rejected() -> None:
    registry = Registry()
    registry.add_orchestration("O", orch_any)
    registry.add_orchestration("O", orch_any, version="1.0.1")
    with pytest.raises(InvalidArgument, match=r"version 1\.0\.0 is registered already"):
        registry.add_orchestration("O", orch_any)
    registry.add_activity("A", orch_any)
    with pytest.raises(InvalidArgument, match="'A' is registered already"):
        registry.add_activity("A", orch_any)


def test_include_merges_and_rejects_clashes() -> None:
    base, extra = Registry(), Registry()
    base.add_orchestration("O", orch_any)
    extra.add_orchestration("O", orch_any, version="2.0.0")
    extra.add_orchestration("P", orch_any)
    extra.add_activity("A", orch_any)
    assert base.include(extra) is base
    assert base.orchestration_versions("O") == ["1.0.0", "2.0.0"]
    assert base.orchestration_names() == ["O", "P"]
    assert base.activity_names() == ["A"]
    clash = Registry()
    clash.add_activity("A", orch_any)
    with pytest.raises(InvalidArgument):
        base.include(clash)


@pytest.mark.parametrize("name", ["__durox:mine", "__durox:get_kv_value"])
def test_reserved_prefix_is_rejected(name: str) -> None:
    registry = Registry()
    with pytest.raises(InvalidArgument, match="reserved for durox"):
        registry.add_orchestration(name, orch_any)
    with pytest.raises(InvalidArgument, match="reserved for durox"):
        registry.add_activity(name, orch_any)


@pytest.mark.parametrize("name", ["", "a\nb", "x" * 257, 5])
def test_bad_names_are_rejected(name: Any) -> None:
    with pytest.raises(InvalidArgument):
        Registry().add_activity(name, orch_any)


def test_non_callables_are_rejected() -> None:
    with pytest.raises(InvalidArgument, match="must be a function"):
        Registry().add_orchestration("O", "not code")
    with pytest.raises(InvalidArgument, match="must be a function"):
        Registry().add_activity("A", 42)


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (orch_point, Point),
        (orch_box, Box),
        (orch_list, list[int]),
        (orch_any, None),
        (orch_bare, None),
        (orch_no_input, None),
    ],
)
def test_input_type_comes_from_the_second_parameter(fn: Any, expected: Any) -> None:
    registry = Registry()
    registry.add_orchestration("O", fn)
    registry.add_activity("A", fn)
    definition = registry.resolve_orchestration("O")
    activity = registry.get_activity("A")
    assert definition is not None and activity is not None
    assert definition.input_type == expected
    assert activity.input_type == expected


def test_async_activities_are_marked() -> None:
    async def fetch(ctx: Any, url: str) -> str:
        return url

    registry = Registry()
    registry.add_activity("Fetch", fetch)
    registry.add_activity("Sync", orch_any)
    fetch_def, sync_def = registry.get_activity("Fetch"), registry.get_activity("Sync")
    assert fetch_def is not None and fetch_def.is_async
    assert sync_def is not None and not sync_def.is_async


@pytest.mark.parametrize(
    ("fn", "input_text", "output"),
    [
        (orch_point, '{"x":2,"y":3}', "5"),
        (orch_box, '{"label":"b","size":1.5}', '"b:3.0"'),
        (orch_list, "[1,2,3]", "6"),
    ],
)
def test_typed_inputs_are_structured_before_the_call(fn: Any, input_text: str, output: str) -> None:
    registry = Registry()
    registry.add_orchestration("O", fn)
    item = OrchestrationItem(
        instance="i",
        lock_token="t",
        execution_id=1,
        orchestration_name="O",
        orchestration_version=None,
        history=(),
        messages=(StartOrchestration(instance="i", name="O", input=input_text),),
    )
    decision = decide_turn(item, registry, options=RuntimeOptions(), now_ms=0, entropy=b"")
    assert isinstance(decision, AckTurn)
    assert (decision.commit.status, decision.commit.output) == ("Completed", output)


def test_input_that_does_not_fit_fails_the_orchestration() -> None:
    registry = Registry()
    registry.add_orchestration("O", orch_point)
    item = OrchestrationItem(
        instance="i",
        lock_token="t",
        execution_id=1,
        orchestration_name="O",
        orchestration_version=None,
        history=(),
        messages=(StartOrchestration(instance="i", name="O", input='{"x":"nope"}'),),
    )
    decision = decide_turn(item, registry, options=RuntimeOptions(), now_ms=0, entropy=b"")
    assert isinstance(decision, AckTurn) and decision.failure is not None
    assert decision.failure.error_type == "PayloadError"
    assert "Point" in decision.failure.message
