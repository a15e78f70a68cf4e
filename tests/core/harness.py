"""A pure, deterministic in-process world that runs orchestrations end to end.

No provider, no driver, no threads, no clock: a few dicts stand in for
storage, virtual time jumps to the next due timer when nothing else can run,
and every turn goes through the real :func:`durox.core.turn.decide_turn`
(and so :func:`durox.core.replay.run_turn`). Activities are called inline.

A ``chooser`` decides, whenever several things could happen next, which one
does (and how many of an instance's messages its turn takes), so property
tests can explore every interleaving the real system could produce.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import attrs

from durox.core import codec, history, messages
from durox.core.activity import (
    AbandonActivity,
    FinishActivity,
    ReadKvValue,
    RunActivity,
    activity_raised,
    activity_returned,
    prepare_activity,
)
from durox.core.commit import Commit
from durox.core.errors import ErrorDetails
from durox.core.items import ActivityItem, KvEntry, OrchestrationItem
from durox.core.options import RuntimeOptions
from durox.core.registry import Registry
from durox.core.turn import AbandonTurn, AckTurn, decide_turn

Chooser = Callable[[int], int]
"""``chooser(n) -> i`` picks one of ``n`` possibilities (0 <= i < n)."""


def first(n: int) -> int:
    """The default chooser: always the oldest possibility (FIFO)."""
    return 0


@attrs.define
class FakeActivityContext:
    """What harness activities receive: the identity fields of a real ActivityContext."""

    instance_id: str
    execution_id: int
    orchestration_name: str
    activity_name: str
    attempt: int
    session_id: str | None
    tag: str | None

    def is_cancelled(self) -> bool:
        return False

    def trace_info(self, message: str) -> None:
        pass


@attrs.define
class Instance:
    """Everything the world stores about one instance."""

    instance_id: str
    name: str
    version: str | None
    parent: str | None = None
    execution_id: int = 1
    executions: dict[int, list[history.Event]] = attrs.Factory(lambda: {1: []})
    inbox: list[tuple[int, int, messages.OrchestratorMessage]] = attrs.Factory(
        list
    )  # (visible_at, seq, msg)
    status: str = "Running"
    output: str | None = None
    custom_status: str | None = None
    custom_status_version: int = 0
    kv_baseline: dict[str, KvEntry] = attrs.Factory(dict)
    kv_latest: dict[str, KvEntry] = attrs.Factory(dict)
    attempts: int = 0

    @property
    def history(self) -> list[history.Event]:
        return self.executions[self.execution_id]


class World:
    """Runs orchestrations to completion, deterministically, with no I/O."""

    def __init__(
        self,
        registry: Registry,
        *,
        start_ms: int = 1_700_000_000_000,
        chooser: Chooser = first,
        sticky: bool = True,
        options: RuntimeOptions | None = None,
    ) -> None:
        self.registry = registry
        self.now_ms = start_ms
        self.chooser = chooser
        self.sticky = sticky
        self.options = options or RuntimeOptions(max_attempts=5, unregistered_backoff_base=0.01)
        self.instances: dict[str, Instance] = {}
        self.activities: list[tuple[int, messages.ExecuteActivity]] = []  # (seq, item)
        self.cache: dict[str, object] = {}
        self.turns = 0
        self.activity_runs: list[messages.ExecuteActivity] = []
        self.traces: list[str] = []
        self._seq = 0

    # -- client side ----------------------------------------------------------------

    def start(
        self, instance: str, name: str, input: Any = None, *, version: str | None = None
    ) -> None:
        """Create ``instance`` and enqueue its start (like Client.start_orchestration)."""
        assert instance not in self.instances, f"{instance} exists"
        self.instances[instance] = Instance(instance_id=instance, name=name, version=version)
        self._send(
            messages.StartOrchestration(
                instance=instance, name=name, input=codec.encode_payload(input), version=version
            )
        )

    def raise_event(self, instance: str, name: str, data: Any = None) -> None:
        """Raise an external event (positional semantics)."""
        self._send(
            messages.ExternalRaised(instance=instance, name=name, data=codec.encode_payload(data))
        )

    def enqueue_event(self, instance: str, queue: str, data: Any = None) -> None:
        """Put a message on an instance's event queue."""
        self._send(
            messages.QueueMessage(instance=instance, name=queue, data=codec.encode_payload(data))
        )

    def cancel(self, instance: str, reason: str = "cancelled by test") -> None:
        """Cancel an instance."""
        self._send(messages.CancelInstance(instance=instance, reason=reason))

    def status(self, instance: str) -> tuple[str, Any]:
        """``("Completed", output)``, ``("Failed", ErrorDetails)`` or ``("Running", None)``."""
        state = self.instances[instance]
        if state.status == "Completed":
            assert state.output is not None
            return "Completed", codec.decode_payload(state.output)
        if state.status == "Failed":
            assert state.output is not None
            return "Failed", codec.loads_error(state.output)
        return "Running", None

    def output(self, instance: str) -> Any:
        """The output of a completed instance (asserts it completed)."""
        status, value = self.status(instance)
        assert status == "Completed", f"{instance} is {status}: {value}"
        return value

    def failure(self, instance: str) -> ErrorDetails:
        """The failure of a failed instance (asserts it failed)."""
        status, value = self.status(instance)
        assert status == "Failed", f"{instance} is {status}: {value}"
        assert isinstance(value, ErrorDetails)
        return value

    def history(self, instance: str, execution_id: int | None = None) -> list[history.Event]:
        """History of one execution (the current one by default)."""
        state = self.instances[instance]
        return state.executions[execution_id or state.execution_id]

    def kv(self, instance: str) -> dict[str, Any]:
        """Latest KV values (as a client reads them)."""
        return {
            k: codec.decode_payload(e.value) for k, e in self.instances[instance].kv_latest.items()
        }

    # -- running --------------------------------------------------------------------

    def run(self, *, max_steps: int = 20_000, advance_time: bool = True) -> None:
        """Do work until nothing is left (advancing virtual time to due timers)."""
        for _ in range(max_steps):
            if self.step():
                continue
            if not advance_time or not self._advance_to_next_timer():
                return
        raise AssertionError(f"world did not settle within {max_steps} steps")

    def step(self) -> bool:
        """Run one turn or one activity; False if nothing is runnable now."""
        candidates: list[tuple[str, Any]] = [("activity", entry) for entry in self.activities]
        candidates += [("turn", state) for state in self.instances.values() if self._visible(state)]
        if not candidates:
            return False
        kind, target = candidates[self.chooser(len(candidates))]
        if kind == "activity":
            self.activities.remove(target)
            self._run_activity(target[1])
        else:
            self._run_turn(target)
        return True

    def advance(self, seconds: float) -> None:
        """Move virtual time forward."""
        self.now_ms += round(seconds * 1000)

    # -- internals ---------------------------------------------------------------------

    def _send(self, message: messages.OrchestratorMessage, delay_ms: int = 0) -> None:
        state = self.instances.get(message.instance)
        if state is None:
            return  # like a provider: messages for unknown instances are discarded
        self._seq += 1
        state.inbox.append((self.now_ms + delay_ms, self._seq, message))

    def _visible(self, state: Instance) -> list[tuple[int, int, messages.OrchestratorMessage]]:
        return [entry for entry in state.inbox if entry[0] <= self.now_ms]

    def _advance_to_next_timer(self) -> bool:
        due = [
            entry[0]
            for state in self.instances.values()
            for entry in state.inbox
            if entry[0] > self.now_ms
        ]
        if not due:
            return False
        self.now_ms = min(due)
        return True

    def _run_turn(self, state: Instance) -> None:
        visible = sorted(self._visible(state), key=lambda e: e[1])
        # A real provider takes every visible message; a smaller batch is what it
        # would have taken had the rest arrived a moment later.
        batch = visible[: 1 + self.chooser(len(visible))]
        state.attempts += 1
        cached = self.cache.pop(state.instance_id, None) if self.sticky else None
        item = OrchestrationItem(
            instance=state.instance_id,
            lock_token="t",
            execution_id=state.execution_id,
            orchestration_name=state.name,
            orchestration_version=state.version,
            history=tuple(state.history),
            history_len=len(state.history),
            messages=tuple(entry[2] for entry in batch),
            kv_snapshot=dict(state.kv_baseline),
            attempt_count=state.attempts,
        )
        self.turns += 1
        decision = decide_turn(
            item,
            self.registry,
            options=self.options,
            now_ms=self.now_ms,
            entropy=b"harness",
            cached=cached,
        )
        if isinstance(decision, AbandonTurn):
            for entry in batch:
                state.inbox.remove(entry)
                state.inbox.append((self.now_ms + decision.delay_ms, entry[1], entry[2]))
            return
        assert isinstance(decision, AckTurn)
        state.attempts = 0
        for entry in batch:
            state.inbox.remove(entry)
        self._apply(state, decision.commit)
        self.traces.extend(f"{t.level}: {t.message}" for t in decision.traces)
        if self.sticky and decision.state is not None:
            self.cache[state.instance_id] = decision.state

    def _apply(self, state: Instance, commit: Commit) -> None:
        if commit.execution_id != state.execution_id:
            state.execution_id = commit.execution_id
            state.executions[commit.execution_id] = []
        state.version = commit.orchestration_version or state.version
        events = state.executions[commit.execution_id]
        for event in commit.new_events:
            assert event.event_id == len(events) + 1, (
                f"event id {event.event_id} after {len(events)} events"
            )
            events.append(event)
        for item in commit.worker_items:
            self._seq += 1
            self.activities.append((self._seq, item))
        for ref in commit.cancelled_activities:
            self.activities = [
                entry
                for entry in self.activities
                if (entry[1].instance, entry[1].execution_id, entry[1].id)
                != (ref.instance, ref.execution_id, ref.id)
            ]
        for outgoing in commit.orchestrator_items:
            message = outgoing.message
            if (
                isinstance(message, messages.StartOrchestration)
                and message.instance not in self.instances
            ):
                self.instances[message.instance] = Instance(
                    instance_id=message.instance,
                    name=message.name,
                    version=message.version,
                    parent=message.parent_instance,
                )
            self._send(message, outgoing.delay_ms)
        if commit.status is not None:
            state.status, state.output = commit.status, commit.output
        if commit.custom_status_changed:
            state.custom_status = commit.custom_status
            state.custom_status_version += 1
        for op in commit.kv_ops:
            if isinstance(op, history.KeyValueSet):
                state.kv_latest[op.key] = KvEntry(value=op.value, updated_at_ms=op.updated_at_ms)
            elif isinstance(op, history.KeyValueCleared):
                state.kv_latest.pop(op.key, None)
            else:
                state.kv_latest.clear()
        if commit.is_terminal:
            state.kv_baseline = dict(state.kv_latest)

    def _run_activity(self, item: messages.ExecuteActivity) -> None:
        self.activity_runs.append(item)
        plan = prepare_activity(
            ActivityItem(lock_token="w", message=item), self.registry, self.options
        )
        if isinstance(plan, AbandonActivity):
            self._seq += 1
            self.activities.append((self._seq, item))
            return
        if isinstance(plan, FinishActivity):
            self._send(plan.result)
            return
        if isinstance(plan, ReadKvValue):
            target = self.instances.get(plan.instance)
            entry = target.kv_latest.get(plan.key) if target else None
            value = codec.decode_payload(entry.value) if entry else None
            self._send(activity_returned(item, value))
            return
        assert isinstance(plan, RunActivity)
        ctx = FakeActivityContext(
            instance_id=item.instance,
            execution_id=item.execution_id,
            orchestration_name=item.orchestration_name,
            activity_name=item.name,
            attempt=1,
            session_id=item.session_id,
            tag=item.tag,
        )
        assert not inspect.iscoroutinefunction(plan.definition.fn), (
            "the harness runs def activities only"
        )
        try:
            value = plan.definition.fn(ctx, plan.input)
        except Exception as exc:
            self._send(activity_raised(item, exc))
        else:
            self._send(activity_returned(item, value))


def replay_messages(
    events: list[history.Event], instance: str, execution_id: int = 1
) -> list[messages.OrchestratorMessage]:
    """The messages that produced the message events among ``events`` (inverse of staging)."""
    out: list[messages.OrchestratorMessage] = []
    for event in events:
        if isinstance(event, history.ActivityCompleted):
            out.append(
                messages.ActivityResult(
                    instance=instance,
                    execution_id=execution_id,
                    id=event.source_id,
                    result=event.result,
                )
            )
        elif isinstance(event, history.ActivityFailed):
            out.append(
                messages.ActivityResult(
                    instance=instance,
                    execution_id=execution_id,
                    id=event.source_id,
                    error=event.details,
                    attempt=event.attempt,
                )
            )
        elif isinstance(event, history.TimerFired):
            out.append(
                messages.TimerDue(
                    instance=instance,
                    execution_id=execution_id,
                    id=event.source_id,
                    fire_at_ms=event.fire_at_ms,
                )
            )
        elif isinstance(event, history.SubOrchestrationCompleted):
            out.append(
                messages.SubOrchestrationResult(
                    instance=instance,
                    execution_id=execution_id,
                    id=event.source_id,
                    child_instance="?",
                    result=event.result,
                )
            )
        elif isinstance(event, history.SubOrchestrationFailed):
            out.append(
                messages.SubOrchestrationResult(
                    instance=instance,
                    execution_id=execution_id,
                    id=event.source_id,
                    child_instance="?",
                    error=event.details,
                )
            )
        elif isinstance(event, history.ExternalEvent):
            out.append(messages.ExternalRaised(instance=instance, name=event.name, data=event.data))
        elif isinstance(event, history.QueueEventDelivered):
            out.append(messages.QueueMessage(instance=instance, name=event.name, data=event.data))
        elif isinstance(event, history.OrchestrationCancelRequested):
            out.append(messages.CancelInstance(instance=instance, reason=event.reason))
    return out


MESSAGE_EVENTS = (
    history.ActivityCompleted,
    history.ActivityFailed,
    history.TimerFired,
    history.SubOrchestrationCompleted,
    history.SubOrchestrationFailed,
    history.ExternalEvent,
    history.QueueEventDelivered,
    history.OrchestrationCancelRequested,
)

_CLOCK_FIELDS = ("timestamp_ms", "fire_at_ms", "updated_at_ms")


def comparable(event: history.Event) -> tuple[Any, ...]:
    """An event without its clock-derived fields (they legitimately differ between runs)."""
    values = attrs.asdict(event, recurse=False)
    for name in _CLOCK_FIELDS:
        values.pop(name, None)
    if isinstance(event, history.SystemCallRecorded) and event.op == "utc_now":
        values.pop("value")
    return (type(event).__name__, tuple(sorted((k, repr(v)) for k, v in values.items())))
