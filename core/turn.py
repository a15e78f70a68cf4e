"""One orchestration turn, decided purely: a locked item in, a commit (or an abandon) out.

This is the whole orchestration-side step that every driver shares::

    item = provider.fetch_orchestration_item(lock_timeout=..., known_history=cache.known)
    decision = decide_turn(item, registry, options=options, now_ms=clock(), entropy=os.urandom(16),
                           cached=cache.get(item.instance))
    if isinstance(decision, AbandonTurn):
        provider.abandon_orchestration_item(item.lock_token, delay_ms=decision.delay_ms)
    else:
        provider.ack_orchestration_item(item.lock_token, decision.commit)
        cache.put(decision.state)   # or evict when state is None / the ack failed

It handles poison (too many attempts), unreadable history, unregistered
orchestrations (abandon with backoff), messages for finished instances
(discarded), start/continue-as-new, the replay itself (:func:`run_turn`) and the
translation of the replay's decisions into a :class:`~durox.core.commit.Commit`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Union

import attrs

from durox.core import history, messages, outcome
from durox.core.commit import Commit, ExecutionStatus, OutgoingMessage
from durox.core.errors import ErrorDetails, InvalidArgument
from durox.core.items import OrchestrationItem
from durox.core.options import RuntimeOptions, unregistered_backoff
from durox.core.registry import Registry

if TYPE_CHECKING:
    from durox.core.replay import Replay

__all__ = ["AbandonTurn", "AckTurn", "Trace", "TurnDecision", "decide_turn", "needs_full_history"]

TraceLevel = Literal["debug", "info", "warning", "error"]

UNRESOLVED_VERSION = "0.0.0"
"""Version recorded for an instance that failed before any registered version ran it
(poisoned while its orchestration was not registered anywhere)."""


@attrs.frozen(kw_only=True)
class Trace:
    """A log line the orchestration (``ctx.trace_*``) or the engine asked for.

    Core never logs; drivers write these to the ``durox.orchestration`` logger.
    Replayed traces are never produced again.
    """

    level: TraceLevel
    message: str
    instance: str
    execution_id: int
    orchestration_name: str
    orchestration_version: str


TurnOutcome = Literal["continue", "completed", "failed", "continued_as_new", "discarded"]


@attrs.frozen(kw_only=True)
class AckTurn:
    """Ack the item with ``commit``.

    ``state`` is the in-memory replay state to cache for the instance's next
    turn (``None``: nothing worth caching, evict). ``outcome``/``failure``/
    ``poisoned`` feed metrics and logs.
    """

    commit: Commit
    state: object | None = None
    traces: tuple[Trace, ...] = ()
    outcome: TurnOutcome = "continue"
    failure: ErrorDetails | None = None
    poisoned: bool = False


@attrs.frozen(kw_only=True)
class AbandonTurn:
    """Release the item unprocessed; it becomes visible again after ``delay_ms``."""

    delay_ms: int
    reason: str


TurnDecision = Union[AckTurn, AbandonTurn]


def needs_full_history(item: OrchestrationItem, cached: object | None) -> bool:
    """True when ``item`` holds only a history tail that ``cached`` cannot continue.

    Then the driver must read the whole history (``provider.read_history``)
    and pass ``attrs.evolve(item, history=tuple(events), history_offset=0)``.
    """
    return item.history_offset != 0 and _matching_state(item, cached) is None


def decide_turn(
    item: OrchestrationItem,
    registry: Registry,
    *,
    options: RuntimeOptions,
    now_ms: int,
    entropy: bytes,
    cached: object | None = None,
) -> TurnDecision:
    """Decide what to write for one locked orchestration item.

    Pure, and it never raises for anything stored or user code does; it
    raises :class:`~durox.errors.InvalidArgument` only if a driver passes a
    history tail without the state it belongs to (see :func:`needs_full_history`).
    """
    if item.history_error is not None:
        if item.attempt_count > options.max_attempts:
            return _poison(item, None, registry, now_ms, options)
        return AbandonTurn(
            delay_ms=1000,
            reason=f"history of {item.instance!r} cannot be read: {item.history_error}",
        )
    if needs_full_history(item, cached):
        raise InvalidArgument(
            "decide_turn got a history tail that the cached state does not match; "
            "read the whole history"
        )
    if (
        item.history
        and item.history_offset == 0
        and not isinstance(item.history[0], history.OrchestrationStarted)
    ):
        return _fail_corrupted(item, now_ms)
    plan = _plan_execution(item, _matching_state(item, cached))
    if plan is None:
        # Even a message delivered too often is only dropped: the instance has ended.
        return AckTurn(commit=_discard_commit(item), outcome="discarded")
    if item.attempt_count > options.max_attempts:
        return _poison(item, plan, registry, now_ms, options)
    definition = registry.resolve_orchestration(plan.name, plan.version)
    if definition is None:
        delay = unregistered_backoff(
            item.attempt_count,
            base=options.unregistered_backoff_base,
            maximum=options.unregistered_backoff_max,
        )
        wanted = repr(plan.name) + (f" version {plan.version}" if plan.version else "")
        return AbandonTurn(
            delay_ms=round(delay * 1000),
            reason=f"orchestration {wanted} is not registered in this runtime",
        )
    from durox.core.replay import run_turn

    if plan.started is not None:
        started = plan.started
    else:
        assert plan.new_start is not None
        started = attrs.evolve(plan.new_start, timestamp_ms=now_ms, version=definition.version)
    result = run_turn(
        plan.events,
        item.messages,
        definition.fn,
        instance=item.instance,
        now_ms=now_ms,
        execution_id=plan.execution_id,
        entropy=entropy,
        started=started,
        input_type=definition.input_type,
        kv_snapshot=dict(item.kv_snapshot),
        state=plan.state,
        history_len=plan.history_len,
        max_payload_bytes=options.max_payload_bytes,
    )
    new_status, output, turn_outcome, failure = _status_of(result.outcome)
    # An execution already running needs no status write; a new one is created Running.
    status = None if new_status == "Running" and plan.started is not None else new_status
    commit = Commit(
        instance=item.instance,
        execution_id=plan.execution_id,
        orchestration_name=started.name,
        orchestration_version=started.version,
        parent_instance=started.parent_instance,
        new_events=result.new_events,
        worker_items=result.worker_items,
        orchestrator_items=result.orchestrator_items + _reject_foreign_starts(item, started),
        cancelled_activities=result.cancelled_activities,
        status=status,
        output=output,
        custom_status_changed=result.custom_status_changed,
        custom_status=result.custom_status,
        kv_ops=result.kv_ops,
    )
    return AckTurn(
        commit=commit,
        state=result.state,
        traces=result.traces,
        outcome=turn_outcome,
        failure=failure,
    )


@attrs.frozen(kw_only=True)
class _ExecutionPlan:
    """Which execution a turn runs: the current one (``started`` known) or a new one."""

    execution_id: int
    name: str
    version: str | None
    events: tuple[history.Event, ...] = ()
    history_len: int = 0
    started: history.OrchestrationStarted | None = None
    new_start: history.OrchestrationStarted | None = None
    state: Replay | None = None


def _matching_state(item: OrchestrationItem, cached: object | None) -> Replay | None:
    from durox.core.replay import Replay

    if (
        isinstance(cached, Replay)
        and cached.started is not None
        and (
            cached.instance,
            cached.execution_id,
            cached.history_len,
        )
        == (item.instance, item.execution_id, item.history_len)
    ):
        return cached
    return None


def _plan_execution(item: OrchestrationItem, state: Replay | None) -> _ExecutionPlan | None:
    """Continue the current execution, start the first or next one, or ``None`` to discard."""
    events = item.history
    if events and any(history.is_terminal(event) for event in events):
        return _plan_continue_as_new(item, events[-1])
    if item.history_len > 0:
        first = state.started if state is not None else events[0]
        assert isinstance(first, history.OrchestrationStarted)  # decide_turn checked
        return _ExecutionPlan(
            execution_id=item.execution_id,
            name=first.name,
            version=first.version,
            events=events,
            history_len=item.history_len,
            started=first,
            state=state,
        )
    start = next((m for m in item.messages if isinstance(m, messages.StartOrchestration)), None)
    if start is None:
        return None
    return _new_execution(item.execution_id, start)


def _plan_continue_as_new(item: OrchestrationItem, last: history.Event) -> _ExecutionPlan | None:
    restart = next(
        (
            m
            for m in item.messages
            if isinstance(m, messages.ContinueAsNew) and m.execution_id == item.execution_id + 1
        ),
        None,
    )
    if restart is None or not isinstance(last, history.OrchestrationContinuedAsNew):
        return None  # the instance has ended: late messages are dropped
    return _new_execution(restart.execution_id, restart)


def _new_execution(
    execution_id: int, start: messages.StartOrchestration | messages.ContinueAsNew
) -> _ExecutionPlan:
    """Plan an execution that begins with this turn (its version is resolved by the caller)."""
    restart = start if isinstance(start, messages.ContinueAsNew) else None
    return _ExecutionPlan(
        execution_id=execution_id,
        name=start.name,
        version=start.version,
        new_start=history.OrchestrationStarted(
            event_id=1,
            timestamp_ms=0,
            name=start.name,
            version=start.version or "",
            input=start.input,
            parent_instance=start.parent_instance,
            parent_execution_id=start.parent_execution_id,
            parent_id=start.parent_id,
            carry_forward=restart.carry_forward if restart else (),
            initial_custom_status=restart.initial_custom_status if restart else None,
        ),
    )


def _status_of(
    decided: outcome.Outcome,
) -> tuple[ExecutionStatus, str | None, TurnOutcome, ErrorDetails | None]:
    if isinstance(decided, outcome.Complete):
        return "Completed", decided.output, "completed", None
    if isinstance(decided, outcome.Fail):
        from durox.core.codec import dumps_record

        return "Failed", dumps_record(decided.details), "failed", decided.details
    if isinstance(decided, outcome.ContinueAsNew):
        return "ContinuedAsNew", decided.input, "continued_as_new", None
    return "Running", None, "continue", None


def _discard_commit(item: OrchestrationItem) -> Commit:
    """An ack that only removes the fetched messages (the instance ended, or never started)."""
    first = item.history[0] if item.history else None
    started = first if isinstance(first, history.OrchestrationStarted) else None
    return Commit(
        instance=item.instance,
        execution_id=item.execution_id,
        orchestration_name=item.orchestration_name,
        orchestration_version=item.orchestration_version or UNRESOLVED_VERSION,
        parent_instance=started.parent_instance if started else None,
        orchestrator_items=_reject_foreign_starts(item, started),
    )


def _reject_foreign_starts(
    item: OrchestrationItem, started: history.OrchestrationStarted | None
) -> tuple[OutgoingMessage, ...]:
    """Tell a parent that the child id it chose belongs to another instance already."""
    rejections = []
    for message in item.messages:
        if not isinstance(message, messages.StartOrchestration) or message.parent_instance is None:
            continue
        if started is not None and (
            message.parent_instance,
            message.parent_execution_id,
            message.parent_id,
        ) == (started.parent_instance, started.parent_execution_id, started.parent_id):
            continue  # our own start message
        if message.parent_id is None:
            continue
        error = ErrorDetails(
            category="application",
            kind="instance_exists",
            message=f"instance {item.instance!r} already exists; choose another sub-orchestration instance id",
            error_type="InstanceAlreadyExists",
        )
        result = messages.SubOrchestrationResult(
            instance=message.parent_instance,
            execution_id=message.parent_execution_id or 1,
            id=message.parent_id,
            child_instance=item.instance,
            error=error,
        )
        rejections.append(OutgoingMessage(message=result))
    return tuple(rejections)


def _fail_corrupted(item: OrchestrationItem, now_ms: int) -> TurnDecision:
    """Fail an execution whose stored history does not begin with OrchestrationStarted."""
    if any(history.is_terminal(event) for event in item.history):
        return AckTurn(commit=_discard_commit(item), outcome="discarded")
    details = ErrorDetails(
        category="configuration",
        kind="corrupted_history",
        message=f"corrupted history: the first event is {type(item.history[0]).__name__}, "
        "not OrchestrationStarted",
    )
    from durox.core.codec import dumps_record

    failed = history.OrchestrationFailed(
        event_id=item.history_len + 1, timestamp_ms=now_ms, details=details
    )
    commit = Commit(
        instance=item.instance,
        execution_id=item.execution_id,
        orchestration_name=item.orchestration_name,
        orchestration_version=item.orchestration_version or UNRESOLVED_VERSION,
        new_events=(failed,),
        status="Failed",
        output=dumps_record(details),
    )
    return AckTurn(commit=commit, outcome="failed", failure=details)


def _poison(
    item: OrchestrationItem,
    plan: _ExecutionPlan | None,
    registry: Registry,
    now_ms: int,
    options: RuntimeOptions,
) -> AckTurn:
    """Fail the execution the messages were for: they were delivered more than ``max_attempts`` times.

    ``plan`` is ``None`` when the history cannot even be read; the failure is
    then appended to it blind, with nobody to notify.
    """
    details = ErrorDetails(
        category="infrastructure",
        kind="poison",
        message=(
            f"orchestration {item.instance!r} exceeded {item.attempt_count - 1} attempts "
            f"(max {options.max_attempts})"
            + (f"; history unreadable: {item.history_error}" if item.history_error else "")
        ),
    )
    new_events: list[history.Event] = []
    started = plan.started if plan is not None else None
    if plan is not None and plan.new_start is not None:
        # The execution never began: record its start so the failure has a context.
        latest = registry.resolve_orchestration(plan.name, plan.version)
        version = plan.version or (latest.version if latest else UNRESOLVED_VERSION)
        started = attrs.evolve(plan.new_start, timestamp_ms=now_ms, version=version)
        new_events.append(started)
    execution_id = plan.execution_id if plan is not None else item.execution_id
    next_id = (plan.history_len if plan is not None else item.history_len) + len(new_events) + 1
    new_events.append(
        history.OrchestrationFailed(event_id=next_id, timestamp_ms=now_ms, details=details)
    )
    from durox.core.codec import dumps_record
    from durox.core.replay import parent_notice

    notify = parent_notice(started, item.instance, result=None, error=details)

    commit = Commit(
        instance=item.instance,
        execution_id=execution_id,
        orchestration_name=started.name if started else item.orchestration_name,
        orchestration_version=started.version
        if started
        else (item.orchestration_version or UNRESOLVED_VERSION),
        parent_instance=started.parent_instance if started else None,
        new_events=tuple(new_events),
        orchestrator_items=notify,
        status="Failed",
        output=dumps_record(details),
    )
    return AckTurn(commit=commit, outcome="failed", failure=details, poisoned=True)
