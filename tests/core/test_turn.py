"""decide_turn: poison, unregistered names, versions, ended instances, the sticky cache."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import attrs
import pytest

from durox.core import codec, history
from durox.core.errors import InvalidArgument
from durox.core.items import KvEntry, OrchestrationItem
from durox.core.messages import StartOrchestration, SubOrchestrationResult
from durox.core.options import RuntimeOptions
from durox.core.registry import Registry
from durox.core.turn import (
    UNRESOLVED_VERSION,
    AbandonTurn,
    AckTurn,
    decide_turn,
    needs_full_history,
)
from tests.core.builders import T0, act_done, kinds, orch_completed, scheduled, started

Gen = Generator[Any, Any, Any]

OPTIONS = RuntimeOptions(
    max_attempts=3, unregistered_backoff_base=1.0, unregistered_backoff_max=5.0
)

calls: list[str] = []


def greet(ctx: Any, name: Any) -> Gen:
    calls.append("called")
    first = yield ctx.schedule_activity("A", name)
    second = yield ctx.schedule_activity("B", first)
    return [ctx.orchestration_version, second]


def registry() -> Registry:
    reg = Registry()
    reg.add_orchestration("Greet", greet, version="1.0.0")
    reg.add_orchestration("Greet", greet, version="1.2.0")
    return reg


def start(version: str | None = None, **parent: Any) -> StartOrchestration:
    return StartOrchestration(instance="i", name="Greet", input='"x"', version=version, **parent)


def item(
    events: tuple[history.Event, ...] = (),
    messages: tuple[Any, ...] = (),
    *,
    attempt: int = 1,
    offset: int = 0,
    length: int | None = None,
    name: str = "Greet",
    **kw: Any,
) -> OrchestrationItem:
    return OrchestrationItem(
        instance="i",
        lock_token="t",
        execution_id=1,
        orchestration_name=name,
        orchestration_version=None,
        history=events,
        history_offset=offset,
        history_len=len(events) + offset if length is None else length,
        messages=messages,
        attempt_count=attempt,
        **kw,
    )


def decide(it: OrchestrationItem, reg: Registry | None = None, cached: object = None) -> Any:
    return decide_turn(
        it, reg or registry(), options=OPTIONS, now_ms=T0, entropy=b"e", cached=cached
    )


def test_first_turn_creates_a_running_execution_with_the_latest_version() -> None:
    decision = decide(item(messages=(start(),)))
    assert isinstance(decision, AckTurn)
    commit = decision.commit
    assert (commit.status, commit.orchestration_version, commit.execution_id) == (
        "Running",
        "1.2.0",
        1,
    )
    assert kinds(commit.new_events) == ["OrchestrationStarted", "ActivityScheduled"]
    first = commit.new_events[0]
    assert isinstance(first, history.OrchestrationStarted)
    assert (first.version, first.timestamp_ms, first.input) == ("1.2.0", T0, '"x"')
    assert decision.outcome == "continue" and decision.state is not None


def test_pinned_version_is_used_exactly() -> None:
    decision = decide(item(messages=(start("1.0.0"),)))
    assert isinstance(decision, AckTurn) and decision.commit.orchestration_version == "1.0.0"


def test_running_execution_keeps_its_recorded_version_and_writes_no_status() -> None:
    h = (started(1, "Greet", input='"x"', version="1.0.0"), scheduled(2, "A", '"x"'))
    decision = decide(item(h, (act_done(2, '"a"', instance="i"),)))
    assert isinstance(decision, AckTurn)
    assert decision.commit.status is None
    assert decision.commit.orchestration_version == "1.0.0"
    assert kinds(decision.commit.new_events) == ["ActivityCompleted", "ActivityScheduled"]


def test_completion_writes_status_and_output() -> None:
    h = (
        started(1, "Greet", input='"x"', version="1.0.0"),
        scheduled(2, "A", '"x"'),
        history.ActivityCompleted(event_id=3, timestamp_ms=0, source_id=2, result='"a"'),
        scheduled(4, "B", '"a"'),
    )
    decision = decide(item(h, (act_done(4, '"b"', instance="i"),)))
    assert isinstance(decision, AckTurn)
    assert (decision.commit.status, decision.commit.output, decision.outcome) == (
        "Completed",
        '["1.0.0","b"]',
        "completed",
    )
    assert decision.state is None


def test_unregistered_name_is_abandoned_with_growing_backoff() -> None:
    delays = []
    for attempt in (1, 2, 3):
        decision = decide(item(messages=(start(),), attempt=attempt), Registry())
        assert isinstance(decision, AbandonTurn)
        assert decision.reason == "orchestration 'Greet' is not registered in this runtime"
        delays.append(decision.delay_ms)
    assert delays[0] < delays[1] < delays[2] <= 5000
    assert delays[0] == 1000


def test_unregistered_version_is_abandoned_naming_the_version() -> None:
    decision = decide(item(messages=(start("9.0.0"),)))
    assert isinstance(decision, AbandonTurn)
    assert "'Greet' version 9.0.0 is not registered" in decision.reason


def test_poison_after_max_attempts_synthesizes_the_start_and_tells_the_parent() -> None:
    message = start(parent_instance="mom", parent_execution_id=2, parent_id=6)
    assert isinstance(decide(item(messages=(message,), attempt=3)), AckTurn)  # at the limit: runs
    decision = decide(item(messages=(message,), attempt=4), Registry())
    assert isinstance(decision, AckTurn)
    assert decision.poisoned and decision.outcome == "failed"
    details = decision.failure
    assert details is not None
    assert (details.category, details.kind) == ("infrastructure", "poison")
    assert details.message == "orchestration 'i' exceeded 3 attempts (max 3)"
    commit = decision.commit
    assert kinds(commit.new_events) == ["OrchestrationStarted", "OrchestrationFailed"]
    assert commit.new_events[0] == history.OrchestrationStarted(
        event_id=1,
        timestamp_ms=T0,
        name="Greet",
        version=UNRESOLVED_VERSION,  # never chosen: the start was never processed
        input='"x"',
        parent_instance="mom",
        parent_execution_id=2,
        parent_id=6,
    )
    assert (commit.status, commit.output) == ("Failed", codec.dumps_record(details))
    assert [m.message for m in commit.orchestrator_items] == [
        SubOrchestrationResult(
            instance="mom", execution_id=2, id=6, child_instance="i", error=details
        )
    ]
    assert commit.parent_instance == "mom"


def test_poison_of_a_running_execution_appends_only_the_failure() -> None:
    h = (started(1, "Greet", input='"x"'), scheduled(2, "A", '"x"'))
    decision = decide(item(h, (act_done(2, instance="i"),), attempt=9))
    assert isinstance(decision, AckTurn) and decision.poisoned
    assert kinds(decision.commit.new_events) == ["OrchestrationFailed"]
    assert decision.commit.new_events[0].event_id == 3
    assert decision.commit.orchestrator_items == ()


def test_messages_for_an_ended_instance_are_discarded() -> None:
    h = (started(1, "Greet"), orch_completed(2))
    decision = decide(item(h, (act_done(2, instance="i"), start())))
    assert isinstance(decision, AckTurn) and decision.outcome == "discarded"
    commit = decision.commit
    assert commit.new_events == () and commit.status is None and commit.worker_items == ()


def test_needs_full_history_for_a_tail_without_matching_state() -> None:
    tail = item((scheduled(2, "A", '"x"'),), (act_done(2, instance="i"),), offset=1)
    assert needs_full_history(tail, None)
    with pytest.raises(InvalidArgument, match="read the whole history"):
        decide(tail)
    assert not needs_full_history(attrs.evolve(tail, history_offset=0), None)


def test_sticky_state_is_used_only_when_it_matches() -> None:
    calls.clear()
    first = decide(item(messages=(start(),)))
    assert isinstance(first, AckTurn) and calls == ["called"]
    events = first.commit.new_events
    # a tail fetch (only what the cache lacks: nothing) continues from the cached state
    tail = item((), (act_done(2, '"a"', instance="i"),), offset=len(events), length=len(events))
    assert not needs_full_history(tail, first.state)
    second = decide(tail, cached=first.state)
    assert isinstance(second, AckTurn) and calls == ["called"]  # resumed, not re-run
    assert kinds(second.commit.new_events) == ["ActivityCompleted", "ActivityScheduled"]
    # a state that processed less history than stored does not match: full replay instead
    full = item(events + second.commit.new_events, (act_done(4, '"b"', instance="i"),))
    stale = decide(item(messages=(start(),))).state
    full_tail = attrs.evolve(full, history_offset=1, history=full.history[1:])
    assert needs_full_history(full_tail, stale)
    assert not needs_full_history(full_tail, second.state)
    calls.clear()
    third = decide(full, cached=stale)
    assert isinstance(third, AckTurn) and third.outcome == "completed"
    assert third.commit.output == '["1.2.0","b"]'
    assert calls == ["called"]  # replayed from the start
    # another instance's state never matches
    other = decide(attrs.evolve(item(messages=(start(),)), instance="other"))
    assert needs_full_history(full_tail, other.state)


def test_kv_snapshot_reaches_the_code() -> None:
    reg = Registry()

    def reader(ctx: Any, _: Any) -> Gen:
        return ctx.get_kv_value("k")
        yield  # pragma: no cover

    reg.add_orchestration("Greet", reader)
    decision = decide(
        item(messages=(start(),), kv_snapshot={"k": KvEntry(value="7", updated_at_ms=1)}), reg
    )
    assert isinstance(decision, AckTurn) and decision.commit.output == "7"


def test_poison_of_a_tail_fetch_still_tells_the_parent() -> None:
    message = start(parent_instance="mom", parent_execution_id=1, parent_id=2)
    first = decide(item(messages=(message,)))
    assert isinstance(first, AckTurn)
    count = len(first.commit.new_events)
    tail = item((), (act_done(2, instance="i"),), offset=count, length=count, attempt=4)
    decision = decide(tail, cached=first.state)
    assert isinstance(decision, AckTurn) and decision.poisoned
    assert decision.commit.parent_instance == "mom"
    (notice,) = [m.message for m in decision.commit.orchestrator_items]
    assert isinstance(notice, SubOrchestrationResult) and notice.instance == "mom"


def test_cancel_before_start_in_the_same_batch() -> None:
    from tests.core.builders import cancel

    decision = decide(item(messages=(start(), cancel(instance="i"))))
    assert isinstance(decision, AckTurn)
    assert kinds(decision.commit.new_events) == [
        "OrchestrationStarted",
        "OrchestrationCancelRequested",
        "OrchestrationFailed",
    ]
    assert decision.commit.status == "Failed" and decision.outcome == "failed"


def test_messages_without_a_start_for_a_new_instance_are_discarded() -> None:
    from tests.core.builders import cancel, event

    decision = decide(item(messages=(cancel(instance="i"), event("E", instance="i"))))
    assert isinstance(decision, AckTurn) and decision.outcome == "discarded"
    assert decision.commit.new_events == () and decision.commit.status is None


def test_duplicate_start_of_a_running_instance_changes_nothing() -> None:
    h = (started(1, "Greet", input='"x"', version="1.0.0"), scheduled(2, "A", '"x"'))
    decision = decide(item(h, (start("1.2.0"),)))
    assert isinstance(decision, AckTurn)
    assert decision.commit.new_events == () and decision.commit.orchestrator_items == ()
    assert decision.commit.orchestration_version == "1.0.0"


def test_poisoned_message_for_an_ended_instance_is_discarded() -> None:
    h = (started(1, "Greet"), orch_completed(2, '"done"'))
    decision = decide(item(h, (act_done(2, instance="i"),), attempt=9))
    assert isinstance(decision, AckTurn) and decision.outcome == "discarded"
    assert decision.commit.new_events == () and decision.commit.status is None


def test_poisoned_continue_as_new_fails_the_new_execution() -> None:
    from durox.core.messages import ContinueAsNew
    from tests.core.builders import continued

    restart = ContinueAsNew(instance="i", execution_id=2, name="Greet", input='"y"')
    h = (started(1, "Greet"), continued(2, '"y"'))
    decision = decide(item(h, (restart,), attempt=9))
    assert isinstance(decision, AckTurn) and decision.poisoned
    assert decision.commit.execution_id == 2
    assert kinds(decision.commit.new_events) == ["OrchestrationStarted", "OrchestrationFailed"]


def test_running_instance_whose_version_is_gone_is_abandoned() -> None:
    h = (started(1, "Greet", input='"x"', version="0.9.0"), scheduled(2, "A", '"x"'))
    decision = decide(item(h, (act_done(2, instance="i"),)))
    assert isinstance(decision, AbandonTurn)
    assert "'Greet' version 0.9.0 is not registered" in decision.reason
