"""The replay engine: runs orchestration code against its history, one turn at a time.

Theory of operation. Everything that affects replay lives in this file.

Rule 1 — code runs only when history moves it. The generator is resumed
(a *poll*) at the start, and again after each history event that completes
something it may be waiting for; never otherwise.

Rule 2 — one completion at a time, in history order. Events are applied one
by one and the code is polled after each delivery, so a ``select`` is won by
the completion history recorded first and ``join`` sees the same partial
states on every replay.

Rule 3 — commands are emitted at call time and matched in order. Each
``ctx.schedule_*`` call appends an action to a FIFO. Each schedule event in
history pops the FIFO and must match it (:data:`durox.core.actions.MATCHING`);
a mismatch, an empty FIFO, or history left over when the code finished is
nondeterminism. Actions still in the FIFO after the last event are new: they
become this turn's new events and work.

Rule 4 — values that must not change are read back, never recomputed. GUIDs,
``utc_now`` and KV timestamps: the Nth call receives the Nth recorded value;
only calls beyond what history holds make new ones (from ``now_ms`` and
``entropy``, the turn's only sources of time and randomness).

Rule 5 — cancellation is the code's decision. A ``select`` cancels its losers
when it resolves, at the same point on every replay. The end of the turn
records a breadcrumb for each new cancellation (and asks the provider to drop
the activity, or the child to cancel); a recorded breadcrumb the code did not
repeat is nondeterminism.

Rule 6 — failures are results. User exceptions and nondeterminism end the
turn with a ``Fail`` outcome; :func:`run_turn` raises only for its own misuse.

Rule 7 — the engine is resumable. The state after a turn (suspended generator
included) can be fed the next turn's events directly — the sticky cache —
which is by construction the same as replaying the whole history again.
"""

from __future__ import annotations

import hashlib
import inspect
import uuid
from collections import deque
from collections.abc import Callable, Generator, Sequence
from typing import Any, Literal

import attrs

from durox.core import actions, codec, history, outcome
from durox.core.commit import ActivityRef, KvOp, OutgoingMessage
from durox.core.context import (
    BlockFuture,
    DurableFuture,
    OrchestrationContext,
    ScheduledFuture,
    _ImmediateFuture,
)
from durox.core.errors import ErrorDetails, InvalidArgument, NondeterminismError
from durox.core.items import KvEntry
from durox.core.limits import MAX_CARRY_FORWARD_EVENTS
from durox.core.messages import (
    ActivityResult,
    CancelInstance,
    ContinueAsNew,
    ExecuteActivity,
    ExternalRaised,
    OrchestratorMessage,
    QueueMessage,
    StartOrchestration,
    SubOrchestrationResult,
    TimerDue,
)
from durox.core.turn import Trace, TraceLevel

__all__ = ["ReplayState", "TurnResult", "run_turn"]

SELECT_LOSER = "select_loser"
"""Breadcrumb reason for work the code cancelled (a select loser, an abandoned block)."""

TERMINAL_REASON = "orchestration_terminal"
"""Breadcrumb reason for work left running when the execution ended."""

_COMPLETION_SOURCES: dict[type, type] = {
    history.ActivityCompleted: history.ActivityScheduled,
    history.ActivityFailed: history.ActivityScheduled,
    history.TimerFired: history.TimerCreated,
    history.SubOrchestrationCompleted: history.SubOrchestrationScheduled,
    history.SubOrchestrationFailed: history.SubOrchestrationScheduled,
}

_BREADCRUMBS = (
    history.ActivityCancelRequested,
    history.SubOrchestrationCancelRequested,
    history.ExternalSubscriptionCancelled,
    history.QueueSubscriptionCancelled,
)


@attrs.frozen(kw_only=True)
class TurnResult:
    """What one turn decided: events to append, work to dispatch, and the outcome.

    ``state`` is the resumable engine state (``None`` when the execution
    ended); pass it back as ``run_turn(..., state=...)`` for the next turn of
    the same execution to skip replaying the history it already processed.
    """

    new_events: tuple[history.Event, ...]
    outcome: outcome.Outcome
    worker_items: tuple[ExecuteActivity, ...] = ()
    orchestrator_items: tuple[OutgoingMessage, ...] = ()
    cancelled_activities: tuple[ActivityRef, ...] = ()
    kv_ops: tuple[KvOp, ...] = ()
    custom_status_changed: bool = False
    custom_status: str | None = None
    traces: tuple[Trace, ...] = ()
    state: ReplayState | None = None


class _Nondeterminism(Exception):
    """Internal: stops processing the moment divergence is found."""


class Coroutine:
    """Drives one generator (the orchestration, or a block) as far as history allows."""

    __slots__ = (
        "block",
        "error",
        "finished",
        "generator",
        "replay",
        "result",
        "started",
        "waiting",
    )

    def __init__(
        self, replay: Replay, generator: Generator[Any, Any, Any], block: BlockFuture[Any] | None
    ) -> None:
        self.replay = replay
        self.generator = generator
        self.block = block
        self.started = False
        self.finished = False
        self.waiting: DurableFuture[Any] | None = None
        self.result: Any = None
        self.error: BaseException | None = None

    def advance(self) -> bool:
        """Resume while what the generator waits for is resolved; True once it finished."""
        while not self.finished:
            if not self.started:
                self.started = True
                value, error = None, None
            else:
                assert self.waiting is not None
                if not self.waiting._poll():
                    return False
                value, error = self.waiting._outcome()
                self.waiting._observe()
            self._step(value, error)
        return True

    def _step(self, value: Any, error: BaseException | None) -> None:
        self.replay.owners.append(self.block)
        self.replay.progress += 1
        try:
            yielded = self.generator.send(value) if error is None else self.generator.throw(error)
        except StopIteration as stop:
            self.finished, self.result = True, stop.value
        except Exception as exc:  # user code failed: a result, never an engine crash
            self.finished, self.error = True, exc
        else:
            self.waiting = self.replay.as_future(yielded)
        finally:
            self.replay.owners.pop()

    def close(self) -> None:
        """Abandon the generator (runs its ``finally`` blocks)."""
        if self.finished:
            return
        self.finished = True
        self.replay.owners.append(self.block)
        try:
            self.generator.close()
        except Exception as exc:  # a finally block that yields or raises
            self.replay.trace("warning", f"abandoned block raised while closing: {exc!r}")
        finally:
            self.replay.owners.pop()


class Replay:
    """The engine state of one execution. Private: use :func:`run_turn`.

    Lives across turns only through the sticky cache (as :class:`ReplayState`).
    """

    def __init__(
        self,
        *,
        instance: str,
        execution_id: int,
        orchestration_fn: Callable[..., Any],
        input_type: Any,
        kv_snapshot: dict[str, KvEntry],
        recorded: Sequence[history.Event],
        max_payload_bytes: int,
    ) -> None:
        self.instance = instance
        self.execution_id = execution_id
        self.orchestration_fn = orchestration_fn
        self.input_type = input_type
        self.max_payload_bytes = max_payload_bytes
        self.orchestration_name = ""
        self.orchestration_version = ""
        self.started: history.OrchestrationStarted | None = None
        self.now_ms = 0
        self.entropy = b""
        self.is_replaying = False
        self.history_len = 0
        self.persisted_len = 0

        self.fifo: deque[tuple[actions.Action, ScheduledFuture[Any] | None]] = deque()
        self.by_schedule_id: dict[int, ScheduledFuture[Any]] = {}
        self.schedule_kinds: dict[int, type] = {}
        self.completed_ids: set[int] = set()
        self.breadcrumb_ids: set[int] = set()
        self.loser_breadcrumbs: dict[int, int] = {}  # schedule id -> position, for the subset check
        self.cancelled_order: list[ScheduledFuture[Any]] = []
        self.matched: list[tuple[int, history.Event, actions.Action]] = []

        self.pending_waits: dict[str, deque[ScheduledFuture[Any]]] = {}
        self.returned_events: dict[str, deque[str]] = {}  # taken by a wait that then lost
        self.pending_dequeues: dict[str, deque[ScheduledFuture[Any]]] = {}
        self.queue_buffer: dict[str, deque[str]] = {}

        # Rule 4: values recorded by earlier turns, handed out by call order.
        self.recorded_syscalls = [e for e in recorded if isinstance(e, history.SystemCallRecorded)]
        self.recorded_kv_sets = [e for e in recorded if isinstance(e, history.KeyValueSet)]
        self.syscall_count = 0
        self.kv_set_count = 0

        self.kv = {key: entry.value for key, entry in sorted(kv_snapshot.items())}
        self.kv_updated = {key: entry.updated_at_ms for key, entry in sorted(kv_snapshot.items())}
        self.custom_status: str | None = None

        self.cancel_requested: str | None = None
        self.continue_as_new: tuple[str, str | None] | None = None
        self.failure: ErrorDetails | None = None
        self.main: Coroutine | None = None
        self.owners: list[BlockFuture[Any] | None] = []
        self.progress = 0  # counts generator steps and resolutions, to detect quiescence
        self.traces: list[Trace] = []

    # -- feeding history ---------------------------------------------------------------

    def feed(self, event: history.Event, *, persisted: bool) -> None:
        """Apply one history event (Rule 2); polls the code if it completed something."""
        position = self.history_len
        self.history_len += 1
        if persisted:
            self.persisted_len = self.history_len
        if self.failure is not None:
            return
        self.is_replaying = persisted
        try:
            self._apply(event, position)
        except _Nondeterminism:
            return

    def _apply(self, event: history.Event, position: int) -> None:
        if isinstance(event, history.OrchestrationStarted):
            if position != 0:
                self._diverged(
                    position, event, None, "OrchestrationStarted may only be the first event"
                )
            self._start(event)
        elif position == 0:
            self._diverged(
                position,
                event,
                None,
                "corrupted history: the first event must be OrchestrationStarted",
            )
        elif isinstance(event, actions.SCHEDULE_EVENTS):
            self._match(event, position)
        elif type(event) in _COMPLETION_SOURCES:
            self._complete(event, position)
        elif isinstance(event, history.ExternalEvent):
            self._external_arrived(event)
        elif isinstance(event, history.QueueEventDelivered):
            self._queue_arrived(event.name, event.data)
        elif isinstance(event, _BREADCRUMBS):
            self.breadcrumb_ids.add(event.source_id)
            if event.reason == SELECT_LOSER:
                self.loser_breadcrumbs[event.source_id] = position
        elif isinstance(event, history.OrchestrationCancelRequested):
            self.cancel_requested = event.reason
        # Terminal events never reach a running replay: decide_turn stops first.

    def _start(self, event: history.OrchestrationStarted) -> None:
        self.started = event
        self.orchestration_name = event.name
        self.orchestration_version = event.version
        self.custom_status = event.initial_custom_status
        for carried in event.carry_forward:
            self.queue_buffer.setdefault(carried.name, deque()).append(carried.data)
        ctx = OrchestrationContext(self)
        try:
            value = codec.decode_payload(event.input, self.input_type)
            result = self.orchestration_fn(ctx, value)
        except Exception as exc:
            result = _raise_later(exc)
        if inspect.iscoroutine(result):
            result.close()
            result = _raise_later(
                InvalidArgument(
                    f"orchestration {event.name!r} is an async function; orchestrations are generator "
                    "functions that `yield` tasks (result = yield ctx.schedule_activity(...))"
                )
            )
        elif not isinstance(result, Generator):
            result = _return_later(result)
        self.main = Coroutine(self, result, None)
        self.poll()

    def _match(self, event: history.Event, position: int) -> None:
        if not self.fifo:
            self._diverged(
                position,
                event,
                None,
                "history recorded this command but the code did not produce it",
            )
        action, future = self.fifo.popleft()
        reason = actions.mismatch(action, event)
        if reason is not None:
            self._diverged(position, event, action, reason)
        self.matched.append((position, event, action))
        del self.matched[:-8]
        self._bind(future, event)

    def _bind(self, future: ScheduledFuture[Any] | None, event: history.Event) -> None:
        self.schedule_kinds[event.event_id] = type(event)
        if future is None:
            return
        future.schedule_id = event.event_id
        self.by_schedule_id[event.event_id] = future
        if isinstance(event, history.TimerCreated):
            future.fire_at_ms = event.fire_at_ms
        elif isinstance(event, history.SubOrchestrationScheduled):
            future.child_instance = event.instance

    def _complete(self, event: Any, position: int) -> None:
        source = event.source_id
        expected = _COMPLETION_SOURCES[type(event)]
        recorded = self.schedule_kinds.get(source)
        if recorded is None:
            self._diverged(
                position,
                event,
                None,
                f"completion for event {source}, which history never scheduled",
            )
        elif recorded is not expected:
            self._diverged(
                position,
                event,
                None,
                f"completion kind {type(event).__name__} for a {recorded.__name__} event",
            )
        if source in self.completed_ids:
            self._diverged(position, event, None, f"second completion for event {source}")
        self.completed_ids.add(source)
        future = self.by_schedule_id.get(source)
        if future is None or future.cancelled:
            return  # late completion of cancelled work: recorded, delivered to nobody
        if isinstance(event, (history.ActivityCompleted, history.SubOrchestrationCompleted)):
            future._deliver(event.result, None)
        elif isinstance(event, history.ActivityFailed):
            future._deliver(None, event.details, attempt=event.attempt)
        elif isinstance(event, history.SubOrchestrationFailed):
            future._deliver(None, event.details)
        else:
            future._deliver(None, None)
        self.poll()

    def _external_arrived(self, event: history.ExternalEvent) -> None:
        waiting = self.pending_waits.get(event.name)
        if not waiting:
            self.trace(
                "warning",
                f"external event {event.name!r} dropped: no schedule_wait for it is pending",
            )
            return
        future = waiting.popleft()
        future._deliver(event.data, None)
        self.poll()

    def _queue_arrived(self, name: str, data: str) -> None:
        waiting = self.pending_dequeues.get(name)
        if waiting:
            waiting.popleft()._deliver(data, None)
            self.poll()
        else:
            self.queue_buffer.setdefault(name, deque()).append(data)

    def poll(self) -> None:
        """Resume the orchestration until nothing more can happen (Rule 1).

        One pass can resolve work a block polled earlier in the same pass waits
        for (a select loser giving back its event); passes repeat until quiet.
        """
        while self.main is not None and self.failure is None:
            before = self.progress
            if self.main.advance() or self.progress == before:
                return

    # -- called by the context and futures -----------------------------------------------

    def current_owner(self) -> BlockFuture[Any] | None:
        """The block whose code is running (futures it creates are cancelled with it)."""
        return self.owners[-1] if self.owners else None

    def coroutine(self, generator: Generator[Any, Any, Any], block: BlockFuture[Any]) -> Coroutine:
        """A driver for a block's generator."""
        return Coroutine(self, generator, block)

    def schedule(self, action: actions.Action, result_type: Any = None) -> ScheduledFuture[Any]:
        """Emit ``action`` and return the future it resolves (Rule 3)."""
        future: ScheduledFuture[Any] = ScheduledFuture(self, action, result_type)
        self.fifo.append((action, future))
        return future

    def emit(self, action: actions.Action) -> None:
        """Emit an action nobody waits for (detached start, status, KV)."""
        self.fifo.append((action, None))

    def retag(self, future: ScheduledFuture[Any], tag: str) -> actions.Action:
        """Replace a just-emitted activity action by one carrying ``tag``."""
        for index, (action, owner) in enumerate(self.fifo):
            if owner is future and isinstance(action, actions.ScheduleActivity):
                tagged = attrs.evolve(action, tag=tag)
                self.fifo[index] = (tagged, future)
                return tagged
        raise InvalidArgument(
            "with_tag() must be called right after scheduling the activity, before any yield"
        )

    def subscribe_external(self, future: ScheduledFuture[Any], name: str) -> None:
        """Queue ``future`` for the next external event called ``name``."""
        self.pending_waits.setdefault(name, deque()).append(future)
        self._hand_out(self.returned_events, self.pending_waits, name)

    def subscribe_queue(self, future: ScheduledFuture[Any], name: str) -> None:
        """Hand ``future`` the oldest buffered message of queue ``name``, or queue it."""
        self.pending_dequeues.setdefault(name, deque()).append(future)
        self._hand_out(self.queue_buffer, self.pending_dequeues, name)

    def give_back(self, action: actions.WaitExternal | actions.DequeueEvent, data: str) -> None:
        """Return data a losing wait or dequeue took, ahead of anything newer."""
        if isinstance(action, actions.DequeueEvent):
            self.queue_buffer.setdefault(action.name, deque()).appendleft(data)
            self._hand_out(self.queue_buffer, self.pending_dequeues, action.name)
        else:
            self.returned_events.setdefault(action.name, deque()).appendleft(data)
            self._hand_out(self.returned_events, self.pending_waits, action.name)

    @staticmethod
    def _hand_out(
        available: dict[str, deque[str]], waiting: dict[str, deque[ScheduledFuture[Any]]], name: str
    ) -> None:
        """Pair buffered data with waiting futures, oldest with oldest."""
        data, futures = available.get(name), waiting.get(name)
        while data and futures:
            futures.popleft()._deliver(data.popleft(), None)

    def cancelled(self, future: ScheduledFuture[Any]) -> None:
        """Record that the code cancelled ``future`` (Rule 5)."""
        action = future.action
        if isinstance(action, actions.WaitExternal):
            _discard(self.pending_waits.get(action.name), future)
        elif isinstance(action, actions.DequeueEvent):
            _discard(self.pending_dequeues.get(action.name), future)
        self.cancelled_order.append(future)

    def as_future(self, value: object) -> DurableFuture[Any]:
        """What ``yield value`` waits for; misuse becomes an error raised at that yield."""
        if isinstance(value, DurableFuture):
            return value
        if isinstance(value, Generator):
            return BlockFuture(self, value)
        return _ImmediateFuture(
            self,
            error=InvalidArgument(
                f"orchestration code yielded {value!r}; yield a task from ctx "
                "(ctx.schedule_activity(...), ctx.join([...]), ctx.select(...), ...)"
            ),
        )

    def system_call(self, op: Literal["new_guid", "utc_now"]) -> str:
        """The Nth system call's recorded value, or a new one (Rule 4)."""
        index = self.syscall_count
        self.syscall_count += 1
        if index < len(self.recorded_syscalls):
            value = self.recorded_syscalls[index].value
        elif op == "new_guid":
            digest = hashlib.sha256(
                self.entropy + f"|{self.instance}|{self.execution_id}|{index}".encode()
            ).digest()
            value = str(uuid.UUID(bytes=digest[:16], version=4))
        else:
            value = str(self.now_ms)
        self.emit(actions.RecordSystemCall(op=op, value=value))
        return value

    def set_custom_status(self, status: str | None) -> None:
        """Apply a custom status change and emit it."""
        self.custom_status = status
        self.emit(actions.SetCustomStatus(status=status))

    def set_kv(self, key: str, value: str) -> None:
        """Apply a KV set and emit it, stamped with its recorded time (Rule 4)."""
        index = self.kv_set_count
        self.kv_set_count += 1
        if index < len(self.recorded_kv_sets):
            updated = self.recorded_kv_sets[index].updated_at_ms
        else:
            updated = self.now_ms
        self.kv[key] = value
        self.kv_updated[key] = updated
        self.emit(actions.SetKeyValue(key=key, value=value, updated_at_ms=updated))

    def clear_kv(self, key: str | None) -> None:
        """Remove one key (or all, with ``None``) and emit it."""
        if key is None:
            self.kv.clear()
            self.kv_updated.clear()
            self.emit(actions.ClearKeyValues())
        else:
            self.kv.pop(key, None)
            self.kv_updated.pop(key, None)
            self.emit(actions.ClearKeyValue(key=key))

    def request_continue_as_new(self, input_text: str, version: str | None) -> None:
        """Remember that the code asked to continue as new (the first request wins)."""
        if self.continue_as_new is None:
            self.continue_as_new = (input_text, version)

    def trace(self, level: TraceLevel, message: str) -> None:
        """Keep a log line for the driver, unless it was logged when first run."""
        if self.is_replaying:
            return
        self.traces.append(
            Trace(
                level=level,
                message=str(message),
                instance=self.instance,
                execution_id=self.execution_id,
                orchestration_name=self.orchestration_name,
                orchestration_version=self.orchestration_version,
            )
        )

    # -- divergence ------------------------------------------------------------------

    def _diverged(
        self, position: int, event: history.Event, action: actions.Action | None, reason: str
    ) -> None:
        lines = [f"at history position {position} (event {event.event_id}): {reason}"]
        lines.append(f"    {'pos':>5}  {'history (expected)':<56}  code (produced)")
        for matched_position, matched_event, matched_action in self.matched:
            lines.append(
                f"    {matched_position:>5}  {actions.describe(matched_event):<56}  {actions.describe(matched_action)}"
            )
        produced = actions.describe(action) if action is not None else "(nothing)"
        lines.append(f"  > {position:>5}  {actions.describe(event):<56}  {produced}")
        self._fail_nondeterminism("\n".join(lines))
        raise _Nondeterminism

    def _fail_nondeterminism(self, message: str) -> None:
        self.failure = ErrorDetails(
            category="configuration",
            kind="nondeterminism",
            message=message,
            error_type=NondeterminismError.__name__,
        )
        if self.main is not None:
            self.main.close()


@attrs.define
class _Turn:
    """The pieces of one turn's result, assembled by :func:`_finish_turn`."""

    replay: Replay
    next_event_id: int
    new_events: list[history.Event] = attrs.Factory(list)
    worker_items: list[ExecuteActivity] = attrs.Factory(list)
    orchestrator_items: list[OutgoingMessage] = attrs.Factory(list)
    cancelled_activities: list[ActivityRef] = attrs.Factory(list)
    kv_ops: list[KvOp] = attrs.Factory(list)
    custom_status_changed: bool = False

    def append(self, event: history.Event) -> None:
        self.new_events.append(event)
        self.replay.history_len += 1
        self.next_event_id += 1

    def ids(self) -> dict[str, int]:
        return {"event_id": self.next_event_id, "timestamp_ms": self.replay.now_ms}


ReplayState = Replay
"""The resumable engine state a turn returns (opaque to drivers)."""


def run_turn(
    history_events: Sequence[history.Event],
    messages: Sequence[OrchestratorMessage],
    orchestration_fn: Callable[..., Any],
    *,
    instance: str,
    now_ms: int,
    execution_id: int = 1,
    entropy: bytes = b"",
    started: history.OrchestrationStarted | None = None,
    input: Any = None,
    name: str = "orchestration",
    version: str = "1.0.0",
    input_type: Any = None,
    kv_snapshot: dict[str, KvEntry] | None = None,
    state: ReplayState | None = None,
    history_len: int | None = None,
    max_payload_bytes: int = codec.DEFAULT_MAX_PAYLOAD_BYTES,
) -> TurnResult:
    """Run one turn of an execution: replay ``history_events``, apply ``messages``, decide.

    * ``history_events``: the execution's stored history (empty for a new one).
    * ``messages``: the completions, events and cancels fetched for this turn.
    * For a new execution the first event is ``started``, or one built from
      ``input`` (any JSON value), ``name`` and ``version``.
    * ``now_ms`` and ``entropy`` are the only time and randomness the turn sees.
    * ``state``: the :attr:`TurnResult.state` of the previous turn of this
      execution; used only if it has processed exactly ``history_events``.
      ``history_len`` is the stored history's length when ``history_events``
      holds only its tail (a provider fetch that skipped what ``state`` holds).

    Never raises for anything user code or history contain: failures come back
    as a ``Fail`` outcome. A history that already ended yields no new events.

    >>> def hello(ctx, name):
    ...     return (yield ctx.schedule_activity("Greet", name))
    >>> turn = run_turn([], [], hello, instance="i1", now_ms=0, input="World")
    >>> [type(e).__name__ for e in turn.new_events]
    ['OrchestrationStarted', 'ActivityScheduled']
    """
    if any(history.is_terminal(event) for event in history_events):
        return TurnResult(new_events=(), outcome=_ended_outcome(history_events))
    stored_len = len(history_events) if history_len is None else history_len
    replay = _resume(state, instance, execution_id, stored_len)
    delta: list[history.Event] = []
    if replay is None:
        if stored_len != len(history_events):
            raise InvalidArgument(
                f"run_turn got {len(history_events)} of {stored_len} history events and no matching state; "
                "read the whole history when the cached state does not match"
            )
        replay = Replay(
            instance=instance,
            execution_id=execution_id,
            orchestration_fn=orchestration_fn,
            input_type=input_type,
            kv_snapshot=dict(kv_snapshot or {}),
            recorded=history_events,
            max_payload_bytes=max_payload_bytes,
        )
        replay.now_ms, replay.entropy = now_ms, entropy
        if not history_events:
            delta.append(
                started
                or history.OrchestrationStarted(
                    event_id=1,
                    timestamp_ms=now_ms,
                    name=name,
                    version=version,
                    input=codec.encode_payload(
                        input, max_bytes=max_payload_bytes, what="orchestration input"
                    ),
                )
            )
        for event in history_events:
            replay.feed(event, persisted=True)
    replay.now_ms, replay.entropy, replay.traces = now_ms, entropy, []
    delta.extend(_stage_messages(replay, messages, first_id=stored_len + len(delta) + 1))
    for event in delta:
        replay.feed(event, persisted=False)
    replay.is_replaying = False
    return _finish_turn(replay, delta)


def _resume(
    state: ReplayState | None, instance: str, execution_id: int, history_len: int
) -> Replay | None:
    """The cached state, if it has processed exactly this history (else a full replay)."""
    if state is None or state.failure is not None or state.main is None or state.main.finished:
        return None
    if (state.instance, state.execution_id, state.history_len) != (
        instance,
        execution_id,
        history_len,
    ):
        return None
    return state


def _ended_outcome(events: Sequence[history.Event]) -> outcome.Outcome:
    last = next(event for event in reversed(events) if history.is_terminal(event))
    if isinstance(last, history.OrchestrationCompleted):
        return outcome.Complete(output=last.output)
    if isinstance(last, history.OrchestrationFailed):
        return outcome.Fail(details=last.details)
    assert isinstance(last, history.OrchestrationContinuedAsNew)
    return outcome.ContinueAsNew(input=last.input, version=last.version)


def _stage_messages(
    replay: Replay, messages: Sequence[OrchestratorMessage], *, first_id: int
) -> list[history.Event]:
    """Turn fetched messages into history events; drop stale, duplicate and foreign ones."""
    events: list[history.Event] = []
    seen: set[int] = set()
    cancel_seen = replay.cancel_requested is not None

    def fresh(message_id: int, execution: int, kind: type) -> bool:
        if execution != replay.execution_id or replay.schedule_kinds.get(message_id) is not kind:
            return False  # an older execution's work, or not scheduled by this history
        if message_id in replay.completed_ids or message_id in seen:
            return False  # at-least-once delivery: the first completion counts
        seen.add(message_id)
        return True

    for message in messages:
        common = {"event_id": first_id + len(events), "timestamp_ms": replay.now_ms}
        if isinstance(message, ActivityResult):
            if fresh(message.id, message.execution_id, history.ActivityScheduled):
                if message.error is not None:
                    events.append(
                        history.ActivityFailed(
                            **common,
                            source_id=message.id,
                            details=message.error,
                            attempt=message.attempt,
                        )
                    )
                else:
                    events.append(
                        history.ActivityCompleted(
                            **common, source_id=message.id, result=message.result or "null"
                        )
                    )
        elif isinstance(message, TimerDue):
            if fresh(message.id, message.execution_id, history.TimerCreated):
                events.append(
                    history.TimerFired(
                        **common, source_id=message.id, fire_at_ms=message.fire_at_ms
                    )
                )
        elif isinstance(message, SubOrchestrationResult):
            if fresh(message.id, message.execution_id, history.SubOrchestrationScheduled):
                if message.error is not None:
                    events.append(
                        history.SubOrchestrationFailed(
                            **common, source_id=message.id, details=message.error
                        )
                    )
                else:
                    events.append(
                        history.SubOrchestrationCompleted(
                            **common, source_id=message.id, result=message.result or "null"
                        )
                    )
        elif isinstance(message, ExternalRaised):
            events.append(history.ExternalEvent(**common, name=message.name, data=message.data))
        elif isinstance(message, QueueMessage):
            events.append(
                history.QueueEventDelivered(**common, name=message.name, data=message.data)
            )
        elif isinstance(message, CancelInstance) and not cancel_seen:
            cancel_seen = True
            events.append(history.OrchestrationCancelRequested(**common, reason=message.reason))
    return events


def _finish_turn(replay: Replay, delta: list[history.Event]) -> TurnResult:
    """Decide the outcome and assemble events and work (Rules 3, 5 and 6)."""
    turn = _Turn(replay=replay, next_event_id=replay.history_len + 1)
    turn.new_events.extend(delta)
    _check_cancellations_repeated(replay)
    decided = _decide_outcome(replay)
    terminal = not isinstance(decided, outcome.Continue)
    if replay.failure is None and replay.cancel_requested is None:
        _record_new_actions(turn, dispatch=not terminal)
    _record_cancellations(turn)
    if terminal:
        _end_execution(turn, decided)
    return TurnResult(
        new_events=tuple(turn.new_events),
        outcome=decided,
        worker_items=tuple(turn.worker_items),
        orchestrator_items=tuple(turn.orchestrator_items),
        cancelled_activities=tuple(turn.cancelled_activities),
        kv_ops=tuple(turn.kv_ops),
        custom_status_changed=turn.custom_status_changed,
        custom_status=replay.custom_status,
        traces=tuple(replay.traces),
        state=None if terminal else replay,
    )


def _check_cancellations_repeated(replay: Replay) -> None:
    """A recorded select-loser cancellation the code did not repeat is nondeterminism (Rule 5)."""
    if (
        replay.failure is not None
        or replay.cancel_requested is not None
        or not replay.loser_breadcrumbs
    ):
        return
    repeated = {future.schedule_id for future in replay.cancelled_order}
    missing = sorted(source for source in replay.loser_breadcrumbs if source not in repeated)
    if missing:
        replay._fail_nondeterminism(
            f"history records that the code cancelled the work scheduled at event(s) {missing} "
            "(a select loser), but the code no longer cancels it"
        )


def _decide_outcome(replay: Replay) -> outcome.Outcome:
    """Cancel beats everything, then nondeterminism, continue_as_new, then what the code returned."""
    if replay.cancel_requested is not None:
        return outcome.Fail(
            details=ErrorDetails(
                category="application", kind="cancelled", message=replay.cancel_requested
            )
        )
    if replay.failure is not None:
        return outcome.Fail(details=replay.failure)
    if replay.continue_as_new is not None:
        input_text, version = replay.continue_as_new
        return outcome.ContinueAsNew(input=input_text, version=version)
    main = replay.main
    if main is None or not main.finished:
        return outcome.Continue()
    if main.error is not None:
        return outcome.Fail(details=ErrorDetails.from_exception(main.error))
    try:
        text = codec.encode_payload(
            main.result, max_bytes=replay.max_payload_bytes, what="orchestration output"
        )
    except Exception as exc:
        return outcome.Fail(details=ErrorDetails.from_exception(exc))
    return outcome.Complete(output=text)


def _record_new_actions(turn: _Turn, *, dispatch: bool) -> None:
    """Actions left in the FIFO are new: record them and dispatch their work (Rule 3)."""
    replay = turn.replay
    while replay.fifo:
        action, future = replay.fifo.popleft()
        event = actions.to_event(
            action, **turn.ids(), instance=replay.instance, execution_id=replay.execution_id
        )
        turn.append(event)
        replay._bind(future, event)
        _dispatch(turn, action, event, dispatch=dispatch)


def _dispatch(turn: _Turn, action: actions.Action, event: history.Event, *, dispatch: bool) -> None:
    replay = turn.replay
    if isinstance(action, (actions.SetKeyValue, actions.ClearKeyValue, actions.ClearKeyValues)):
        assert isinstance(
            event, (history.KeyValueSet, history.KeyValueCleared, history.KeyValuesCleared)
        )
        turn.kv_ops.append(event)
    elif isinstance(action, actions.SetCustomStatus):
        turn.custom_status_changed = True
    elif isinstance(event, history.OrchestrationChained):
        # Detached starts are honoured whatever the outcome: history says they happened.
        start = StartOrchestration(
            instance=event.instance, name=event.name, input=event.input, version=event.version
        )
        turn.orchestrator_items.append(OutgoingMessage(message=start))
    elif not dispatch:
        return
    elif isinstance(event, history.ActivityScheduled):
        turn.worker_items.append(
            ExecuteActivity(
                instance=replay.instance,
                execution_id=replay.execution_id,
                id=event.event_id,
                name=event.name,
                input=event.input,
                orchestration_name=replay.orchestration_name,
                orchestration_version=replay.orchestration_version,
                session_id=event.session_id,
                tag=event.tag,
            )
        )
    elif isinstance(event, history.TimerCreated):
        due = TimerDue(
            instance=replay.instance,
            execution_id=replay.execution_id,
            id=event.event_id,
            fire_at_ms=event.fire_at_ms,
        )
        turn.orchestrator_items.append(
            OutgoingMessage(message=due, delay_ms=max(0, event.fire_at_ms - replay.now_ms))
        )
    elif isinstance(event, history.SubOrchestrationScheduled):
        start = StartOrchestration(
            instance=event.instance,
            name=event.name,
            input=event.input,
            version=event.version,
            parent_instance=replay.instance,
            parent_execution_id=replay.execution_id,
            parent_id=event.event_id,
        )
        turn.orchestrator_items.append(OutgoingMessage(message=start))


def _record_cancellations(turn: _Turn) -> None:
    """Breadcrumbs and side effects for work the code cancelled this turn (Rule 5)."""
    replay = turn.replay
    for future in replay.cancelled_order:
        source = future.schedule_id
        if source is None or source in replay.breadcrumb_ids or source in replay.completed_ids:
            continue
        _cancel_scheduled(turn, future.action, source, future.child_instance, SELECT_LOSER)


def _cancel_scheduled(
    turn: _Turn, action: actions.Action, source: int, child_instance: str | None, reason: str
) -> None:
    replay = turn.replay
    replay.breadcrumb_ids.add(source)
    if isinstance(action, actions.ScheduleActivity):
        turn.append(history.ActivityCancelRequested(**turn.ids(), source_id=source, reason=reason))
        turn.cancelled_activities.append(
            ActivityRef(instance=replay.instance, execution_id=replay.execution_id, id=source)
        )
    elif isinstance(action, actions.StartSubOrchestration):
        turn.append(
            history.SubOrchestrationCancelRequested(**turn.ids(), source_id=source, reason=reason)
        )
        if child_instance is not None:
            cancel = CancelInstance(
                instance=child_instance,
                reason=f"parent {replay.instance!r} cancelled it ({reason})",
            )
            turn.orchestrator_items.append(OutgoingMessage(message=cancel))
    elif isinstance(action, actions.WaitExternal):
        turn.append(
            history.ExternalSubscriptionCancelled(**turn.ids(), source_id=source, reason=reason)
        )
    elif isinstance(action, actions.DequeueEvent):
        turn.append(
            history.QueueSubscriptionCancelled(**turn.ids(), source_id=source, reason=reason)
        )


def _end_execution(turn: _Turn, decided: outcome.Outcome) -> None:
    """Cancel what is still running, record the terminal event, tell whoever waits."""
    replay = turn.replay
    if replay.main is not None:
        replay.main.close()
    for source, kind in sorted(replay.schedule_kinds.items()):
        if source in replay.completed_ids or source in replay.breadcrumb_ids:
            continue
        if kind is history.ActivityScheduled:
            _cancel_scheduled(
                turn, actions.ScheduleActivity(name="", input=""), source, None, TERMINAL_REASON
            )
        elif kind is history.SubOrchestrationScheduled:
            future = replay.by_schedule_id.get(source)
            child = future.child_instance if future is not None else None
            _cancel_scheduled(
                turn,
                actions.StartSubOrchestration(name="", input=""),
                source,
                child,
                TERMINAL_REASON,
            )
    # A corrupt history may lack OrchestrationStarted: fail it, with nobody to notify.
    started = replay.started or history.OrchestrationStarted(
        event_id=0, timestamp_ms=0, name=replay.orchestration_name, version="", input="null"
    )
    if isinstance(decided, outcome.Complete):
        turn.append(history.OrchestrationCompleted(**turn.ids(), output=decided.output))
        turn.orchestrator_items.extend(
            parent_notice(started, replay.instance, result=decided.output, error=None)
        )
    elif isinstance(decided, outcome.Fail):
        turn.append(history.OrchestrationFailed(**turn.ids(), details=decided.details))
        turn.orchestrator_items.extend(
            parent_notice(started, replay.instance, result=None, error=decided.details)
        )
    elif isinstance(decided, outcome.ContinueAsNew):
        turn.append(
            history.OrchestrationContinuedAsNew(
                **turn.ids(), input=decided.input, version=decided.version
            )
        )
        carried = [
            history.QueuedEvent(name=name, data=data)
            for name, buffered in sorted(replay.queue_buffer.items())
            for data in buffered
        ]
        if len(carried) > MAX_CARRY_FORWARD_EVENTS:
            replay.trace(
                "warning",
                f"{len(carried) - MAX_CARRY_FORWARD_EVENTS} queued events dropped at continue_as_new",
            )
        restart = ContinueAsNew(
            instance=replay.instance,
            execution_id=replay.execution_id + 1,
            name=started.name,
            input=decided.input,
            version=decided.version,
            parent_instance=started.parent_instance,
            parent_execution_id=started.parent_execution_id,
            parent_id=started.parent_id,
            carry_forward=tuple(carried[:MAX_CARRY_FORWARD_EVENTS]),
            initial_custom_status=replay.custom_status,
        )
        turn.orchestrator_items.append(OutgoingMessage(message=restart))


def parent_notice(
    started: history.OrchestrationStarted | None,
    child_instance: str,
    *,
    result: str | None,
    error: ErrorDetails | None,
) -> tuple[OutgoingMessage, ...]:
    """The message telling a sub-orchestration's parent how it ended (none for a root)."""
    if started is None or started.parent_instance is None or started.parent_id is None:
        return ()
    message = SubOrchestrationResult(
        instance=started.parent_instance,
        execution_id=started.parent_execution_id or 1,
        id=started.parent_id,
        child_instance=child_instance,
        result=result,
        error=error,
    )
    return (OutgoingMessage(message=message),)


def _discard(queue: deque[ScheduledFuture[Any]] | None, future: ScheduledFuture[Any]) -> None:
    if queue is not None and future in queue:
        queue.remove(future)


def _raise_later(exc: BaseException) -> Generator[Any, Any, Any]:
    """A generator that fails at its first step: calling the orchestration raised."""
    raise exc
    yield  # pragma: no cover - makes this a generator


def _return_later(value: object) -> Generator[Any, Any, Any]:
    """A generator that returns at once: the orchestration was a plain function."""
    return value
    yield  # pragma: no cover - makes this a generator
