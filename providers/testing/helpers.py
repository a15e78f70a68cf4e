"""Builders the checks share: messages, events and commits made by hand, and whole turns.

The checks talk to the :class:`~durox.providers.base.Provider` API directly,
playing the runtime's part themselves: fetch, build a :class:`Commit`, ack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from durox.core import codec, history
from durox.core.commit import ActivityRef, Commit, ExecutionStatus, KvOp, OutgoingMessage
from durox.core.errors import ErrorDetails
from durox.core.items import ActivityItem, OrchestrationItem
from durox.core.messages import (
    ActivityResult,
    ContinueAsNew,
    ExecuteActivity,
    ExternalRaised,
    StartOrchestration,
)
from durox.core.tags import TagFilter
from durox.providers.base import Provider, SessionClaim

__all__ = [
    "LOCK",
    "ORCH",
    "VERSION",
    "activity",
    "cancel_ref",
    "complete_instance",
    "continue_as_new",
    "create",
    "drain_work",
    "fail_instance",
    "fetch",
    "fetch_work",
    "make_commit",
    "next_event_id",
    "poke",
    "raises",
    "result",
    "start_instance",
    "start_message",
    "started_event",
    "turn",
]

ORCH = "TestOrch"
"""The orchestration name every check uses."""
VERSION = "1.0.0"
"""The orchestration version every check uses."""
LOCK = 30.0
"""Default lock timeout of the checks, seconds: long enough that real time never expires it."""

FAILURE = ErrorDetails(
    category="application", kind="orchestration_failed", message="boom", error_type="ValueError"
)


def start_message(
    instance: str, *, input: str = '"in"', version: str | None = None, **parent: Any
) -> StartOrchestration:
    """A ``StartOrchestration`` for :data:`ORCH`."""
    return StartOrchestration(instance=instance, name=ORCH, input=input, version=version, **parent)


def started_event(
    event_id: int = 1, *, input: str = '"in"', **extra: Any
) -> history.OrchestrationStarted:
    """The ``OrchestrationStarted`` event that opens an execution."""
    return history.OrchestrationStarted(
        event_id=event_id, timestamp_ms=0, name=ORCH, version=VERSION, input=input, **extra
    )


def make_commit(
    instance: str,
    *,
    execution_id: int = 1,
    events: Sequence[history.Event] = (),
    worker_items: Sequence[ExecuteActivity] = (),
    orchestrator_items: Sequence[OutgoingMessage] = (),
    cancelled: Sequence[ActivityRef] = (),
    status: ExecutionStatus | None = None,
    output: str | None = None,
    custom_status: str | None = None,
    custom_status_changed: bool = False,
    kv_ops: Sequence[KvOp] = (),
    parent_instance: str | None = None,
) -> Commit:
    """A commit for :data:`ORCH` / :data:`VERSION` with the given effects."""
    return Commit(
        instance=instance,
        execution_id=execution_id,
        orchestration_name=ORCH,
        orchestration_version=VERSION,
        parent_instance=parent_instance,
        new_events=tuple(events),
        worker_items=tuple(worker_items),
        orchestrator_items=tuple(orchestrator_items),
        cancelled_activities=tuple(cancelled),
        status=status,
        output=output,
        custom_status=custom_status,
        custom_status_changed=custom_status_changed,
        kv_ops=tuple(kv_ops),
    )


def activity(
    instance: str,
    id: int,
    *,
    execution_id: int = 1,
    name: str = "Act",
    input: str = '"x"',
    session_id: str | None = None,
    tag: str | None = None,
) -> ExecuteActivity:
    """An ``ExecuteActivity`` for the activity scheduled at event ``id``."""
    return ExecuteActivity(
        instance=instance,
        execution_id=execution_id,
        id=id,
        name=name,
        input=input,
        orchestration_name=ORCH,
        orchestration_version=VERSION,
        session_id=session_id,
        tag=tag,
    )


def cancel_ref(instance: str, id: int, *, execution_id: int = 1) -> ActivityRef:
    """The reference that cancels the activity scheduled at ``id``."""
    return ActivityRef(instance=instance, execution_id=execution_id, id=id)


def result(instance: str, id: int, *, value: str = '"ok"', execution_id: int = 1) -> ActivityResult:
    """A successful ``ActivityResult``."""
    return ActivityResult(instance=instance, execution_id=execution_id, id=id, result=value)


def create(provider: Provider, instance: str, **kwargs: Any) -> None:
    """``create_instance`` with a start message for :data:`ORCH`."""
    provider.create_instance(start_message(instance, **kwargs))


def fetch(provider: Provider, *, lock_timeout: float = LOCK, **kwargs: Any) -> OrchestrationItem:
    """Fetch an orchestration item that must exist."""
    item = provider.fetch_orchestration_item(lock_timeout=lock_timeout, **kwargs)
    assert item is not None, "expected an orchestration item, the fetch returned None"
    return item


def fetch_work(
    provider: Provider,
    *,
    lock_timeout: float = LOCK,
    tag_filter: TagFilter | None = None,
    session: SessionClaim | None = None,
) -> ActivityItem | None:
    """Fetch a work item (``None`` allowed) with the default-only filter unless told otherwise."""
    return provider.fetch_work_item(
        lock_timeout=lock_timeout,
        tag_filter=tag_filter or TagFilter.default_only(),
        session=session,
    )


def poke(
    provider: Provider, instance: str, *, name: str = "poke", data: str = "null", delay_ms: int = 0
) -> None:
    """Give ``instance`` a reason to take a turn: an external event."""
    provider.enqueue_orchestrator(
        ExternalRaised(instance=instance, name=name, data=data), delay_ms=delay_ms
    )


def next_event_id(provider: Provider, instance: str, execution_id: int | None = None) -> int:
    """The event id the next appended event gets."""
    return len(provider.read_history(instance, execution_id)) + 1


def start_instance(provider: Provider, instance: str, **commit_kwargs: Any) -> None:
    """Create ``instance`` and run its first turn: fetch, ack ``OrchestrationStarted`` (+ effects)."""
    create(provider, instance)
    item = fetch(provider)
    assert item.instance == instance, f"expected to fetch {instance!r}, got {item.instance!r}"
    events = [started_event(1), *commit_kwargs.pop("events", ())]
    provider.ack_orchestration_item(
        item.lock_token, make_commit(instance, events=events, **commit_kwargs)
    )


def turn(
    provider: Provider, instance: str, *, execution_id: int | None = None, **commit_kwargs: Any
) -> OrchestrationItem:
    """Run one more turn of an existing, idle ``instance``: poke it, fetch it, ack the given effects.

    ``events`` are appended as given (use :func:`next_event_id` for their ids).
    Returns the fetched item.
    """
    poke(provider, instance)
    item = fetch(provider)
    assert item.instance == instance, f"expected to fetch {instance!r}, got {item.instance!r}"
    exec_id = item.execution_id if execution_id is None else execution_id
    provider.ack_orchestration_item(
        item.lock_token, make_commit(instance, execution_id=exec_id, **commit_kwargs)
    )
    return item


def complete_instance(
    provider: Provider, instance: str, *, output: str = '"done"', **commit_kwargs: Any
) -> None:
    """A turn that completes the current execution with ``output``."""
    exec_id = provider.get_instance_status(instance).execution_id  # type: ignore[union-attr]
    eid = next_event_id(provider, instance)
    events = [
        *commit_kwargs.pop("events", ()),
        history.OrchestrationCompleted(event_id=eid, timestamp_ms=0, output=output),
    ]
    turn(
        provider,
        instance,
        execution_id=exec_id,
        events=events,
        status="Completed",
        output=output,
        **commit_kwargs,
    )


def fail_instance(provider: Provider, instance: str, *, details: ErrorDetails = FAILURE) -> None:
    """A turn that fails the current execution with ``details``."""
    eid = next_event_id(provider, instance)
    events = [history.OrchestrationFailed(event_id=eid, timestamp_ms=0, details=details)]
    turn(provider, instance, events=events, status="Failed", output=codec.dumps_record(details))


def continue_as_new(
    provider: Provider, instance: str, *, input: str = '"next"', **commit_kwargs: Any
) -> int:
    """End the current execution with continue-as-new and run the new execution's first turn.

    ``commit_kwargs`` go to the ending turn. Returns the new execution id.
    """
    status = provider.get_instance_status(instance)
    assert status is not None
    old, new = status.execution_id, status.execution_id + 1
    eid = next_event_id(provider, instance)
    nxt = ContinueAsNew(
        instance=instance, execution_id=new, name=ORCH, input=input, version=VERSION
    )
    turn(
        provider,
        instance,
        execution_id=old,
        events=[
            *commit_kwargs.pop("events", ()),
            history.OrchestrationContinuedAsNew(
                event_id=eid, timestamp_ms=0, input=input, version=VERSION
            ),
        ],
        orchestrator_items=[OutgoingMessage(message=nxt)],
        status="ContinuedAsNew",
        output=input,
        **commit_kwargs,
    )
    item = fetch(provider)
    assert item.instance == instance and isinstance(item.messages[0], ContinueAsNew), item
    provider.ack_orchestration_item(
        item.lock_token,
        make_commit(instance, execution_id=new, events=[started_event(1, input=input)]),
    )
    return new


def raises(
    expected: type[BaseException] | tuple[type[BaseException], ...],
    fn: Any,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """Call ``fn`` and return the exception it raised, which must be an ``expected`` one."""
    try:
        fn(*args, **kwargs)
    except expected as exc:
        return exc
    name = getattr(fn, "__name__", repr(fn))
    raise AssertionError(f"{name} should have raised {expected}, it returned normally")


def drain_work(provider: Provider, tag_filter: TagFilter | None = None) -> list[ExecuteActivity]:
    """Fetch and ack (without result) every fetchable activity; return them in fetch order."""
    taken = []
    while (item := fetch_work(provider, tag_filter=tag_filter)) is not None:
        provider.ack_work_item(item.lock_token, None)
        taken.append(item.message)
    return taken
