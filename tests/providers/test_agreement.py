"""MemoryProvider, SqliteProvider and a small reference model must agree, step by step.

A hypothesis ``RuleBasedStateMachine`` drives random sequences of provider
calls — creates, enqueues (some delayed, some for unknown instances), fetches,
acks with small random commits (events, activities, timers, child starts,
cancels, status, custom status, KV, continue-as-new, clashing event ids),
abandons, renews, worker fetches with tags and sessions, clock advances and
deletes — against both providers at once, each on its own manual clock moved
in step. After every call the results (items modulo lock tokens, errors by
type) must be equal, and after every step the observable state must be too:
statuses, histories, KV, queue depths, metrics, next visible time.

The reference model (:class:`Model`) is an independent, deliberately naive
rendering of the queue, lock and history rules in ``providers/base.py``; it
predicts which instance and messages a fetch returns, which activity a worker
gets, which acks and renewals fail, and how long each history is.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from durox.core import history
from durox.core.codec import dumps_record
from durox.core.commit import ActivityRef, Commit, ExecutionStatus, OutgoingMessage
from durox.core.errors import DuroxError, ErrorDetails
from durox.core.items import ActivityItem, OrchestrationItem
from durox.core.messages import (
    ActivityResult,
    CancelInstance,
    ContinueAsNew,
    ExecuteActivity,
    ExternalRaised,
    OrchestratorMessage,
    QueueMessage,
    StartOrchestration,
    TimerDue,
)
from durox.core.tags import TagFilter
from durox.providers.base import SessionClaim
from durox.providers.memory import MemoryProvider
from durox.providers.sqlite import SqliteProvider
from durox.providers.testing import ManualClock

INSTANCES = ("a", "b", "c", "d")
KEYS = ("k0", "k1", "k2")
TAGS = (None, "gpu")
SESSIONS = (None, "s1", "s2")
OWNERS = ("owner-1", "owner-2")
FILTERS = (
    TagFilter.default_only(),
    TagFilter.any(),
    TagFilter.tags(["gpu"]),
    TagFilter.default_and(["gpu"]),
    TagFilter.none(),
)
LOCK_TIMEOUTS = (1.0, 5.0)
DELAYS = (0, 0, 300, 2_000)
ADVANCES_MS = (1, 300, 1_000, 5_000)
FAILURE = ErrorDetails(category="application", kind="orchestration_failed", message="boom")
START_MS = 1_700_000_000_000

# How many examples ran, reported by the test after the run.
EXAMPLES_RUN = itertools.count()


# -- the reference model ------------------------------------------------------------------


@attrs.define
class MInstance:
    name: str
    version: str | None
    parent: str | None
    current: int = 1
    histories: dict[int, list[history.Event]] = attrs.field(factory=lambda: {1: []})
    statuses: dict[int, str] = attrs.field(factory=lambda: {1: "Running"})
    custom_status: str | None = None
    custom_version: int = 0
    kv_base: dict[str, str] = attrs.field(factory=dict)
    kv_delta: dict[str, str | None] = attrs.field(factory=dict)

    def kv_latest(self) -> dict[str, str]:
        merged = dict(self.kv_base)
        for key, value in self.kv_delta.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return merged


@attrs.define
class MMessage:
    seq: int
    instance: str
    message: OrchestratorMessage
    visible_at: int
    attempts: int = 0
    token: int | None = None


@attrs.define
class MActivity:
    seq: int
    message: ExecuteActivity
    visible_at: int
    attempts: int = 0
    token: int | None = None
    locked_until: int = 0


@attrs.define
class MSession:
    owner: str
    locked_until: int
    last_activity: int


class ModelError(Exception):
    """What the model predicts a provider raises; ``kind`` is the durox exception class name."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Model:
    """The provider contract as the simplest code that could possibly be right."""

    def __init__(self) -> None:
        self.now = START_MS
        self.seq = itertools.count(1)
        self.tokens = itertools.count(1)
        self.instances: dict[str, MInstance] = {}
        self.queue: list[MMessage] = []
        self.locks: dict[str, tuple[int, int]] = {}  # instance -> (token, locked_until)
        self.activities: list[MActivity] = []
        self.sessions: dict[str, MSession] = {}

    # queues and locks

    def live_lock(self, instance: str) -> tuple[int, int] | None:
        lock = self.locks.get(instance)
        return lock if lock is not None and lock[1] > self.now else None

    def held(self, token: int) -> str:
        for instance, (held_token, until) in self.locks.items():
            if held_token == token and until > self.now:
                return instance
        raise ModelError("LockLost")

    def enqueue(self, message: OrchestratorMessage, delay_ms: int = 0) -> None:
        self.queue.append(MMessage(next(self.seq), message.instance, message, self.now + delay_ms))

    def create(self, start: StartOrchestration) -> None:
        if start.instance in self.instances:
            raise ModelError("InstanceAlreadyExists")
        self.instances[start.instance] = MInstance(start.name, start.version, start.parent_instance)
        self.enqueue(start)

    def fetch(self, timeout_ms: int) -> tuple[int, str, list[MMessage]] | None:
        for row in list(self.queue):
            if row not in self.queue or row.visible_at > self.now or self.live_lock(row.instance):
                continue
            if row.instance not in self.instances:
                self.queue = [r for r in self.queue if r.instance != row.instance]
                continue
            token = next(self.tokens)
            self.locks[row.instance] = (token, self.now + timeout_ms)
            batch = [
                r for r in self.queue if r.instance == row.instance and r.visible_at <= self.now
            ]
            for r in batch:
                r.token = token
                r.attempts += 1
            return token, row.instance, batch
        return None

    def ack(self, token: int, commit: Commit) -> None:
        instance = self.held(token)
        row = self.instances[instance]
        stored = {e.event_id for e in row.histories.get(commit.execution_id, [])}
        new_ids = [e.event_id for e in commit.new_events]
        if len(set(new_ids)) != len(new_ids) or stored & set(new_ids):
            raise ModelError("ProviderError")
        self.queue = [r for r in self.queue if not (r.instance == instance and r.token == token)]
        row.histories.setdefault(commit.execution_id, [])
        row.statuses.setdefault(commit.execution_id, "Running")
        row.current = max(row.current, commit.execution_id)
        row.name, row.version = commit.orchestration_name, commit.orchestration_version
        row.histories[commit.execution_id].extend(commit.new_events)
        if commit.status is not None:
            row.statuses[commit.execution_id] = commit.status
        if commit.custom_status_changed:
            row.custom_status = commit.custom_status
            row.custom_version += 1
        for op in commit.kv_ops:
            if isinstance(op, history.KeyValueSet):
                row.kv_delta[op.key] = op.value
            elif isinstance(op, history.KeyValueCleared):
                row.kv_delta[op.key] = None
            else:
                row.kv_delta = dict.fromkeys([*row.kv_base, *row.kv_delta])
        if commit.is_terminal:
            row.kv_base, row.kv_delta = row.kv_latest(), {}
        for activity in commit.worker_items:
            self.activities.append(MActivity(next(self.seq), activity, self.now))
        cancelled = {(c.instance, c.execution_id, c.id) for c in commit.cancelled_activities}
        self.activities = [
            a
            for a in self.activities
            if (a.message.instance, a.message.execution_id, a.message.id) not in cancelled
        ]
        for item in commit.orchestrator_items:
            message = item.message
            if isinstance(message, StartOrchestration) and message.instance not in self.instances:
                self.instances[message.instance] = MInstance(
                    message.name, message.version, message.parent_instance
                )
            self.enqueue(message, item.delay_ms)
        del self.locks[instance]

    def abandon(self, token: int, delay_ms: int, ignore_attempt: bool) -> None:
        instance = self.held(token)
        for r in self.queue:
            if r.instance == instance and r.token == token:
                r.token = None
                r.visible_at = self.now + delay_ms
                if ignore_attempt:
                    r.attempts = max(0, r.attempts - 1)
        del self.locks[instance]

    def renew(self, token: int, timeout_ms: int) -> None:
        instance = self.held(token)
        self.locks[instance] = (token, self.now + timeout_ms)

    # activities

    def fetch_work(
        self, tag_filter: TagFilter, claim: tuple[str, int] | None, timeout_ms: int
    ) -> tuple[int, MActivity] | None:
        if tag_filter.mode == "none":
            return None
        for a in self.activities:
            if a.visible_at > self.now or (a.token is not None and a.locked_until > self.now):
                continue
            if not tag_filter.matches(a.message.tag):
                continue
            session_id = a.message.session_id
            if session_id is not None:
                if claim is None:
                    continue
                owner, session_ms = claim
                current = self.sessions.get(session_id)
                if (
                    current is not None
                    and current.locked_until > self.now
                    and current.owner != owner
                ):
                    continue
                self.sessions[session_id] = MSession(owner, self.now + session_ms, self.now)
            a.token = next(self.tokens)
            a.locked_until = self.now + timeout_ms
            a.attempts += 1
            return a.token, a
        return None

    def held_activity(self, token: int) -> MActivity:
        for a in self.activities:
            if a.token == token and a.locked_until > self.now:
                return a
        raise ModelError("LockLost")

    def touch(self, a: MActivity) -> None:
        session = self.sessions.get(a.message.session_id) if a.message.session_id else None
        if session is not None and session.locked_until > self.now:
            session.last_activity = self.now

    def ack_work(self, token: int, result: ActivityResult | None) -> None:
        a = self.held_activity(token)
        self.touch(a)
        self.activities.remove(a)
        if result is not None:
            self.enqueue(result)

    def abandon_work(self, token: int, delay_ms: int, ignore_attempt: bool) -> None:
        a = self.held_activity(token)
        a.token = None
        a.locked_until = 0
        a.visible_at = self.now + delay_ms
        if ignore_attempt:
            a.attempts = max(0, a.attempts - 1)

    def renew_work(self, token: int, timeout_ms: int) -> None:
        a = self.held_activity(token)
        a.locked_until = self.now + timeout_ms
        self.touch(a)

    def delete(self, instance: str) -> None:
        row = self.instances.get(instance)
        if row is None:
            raise ModelError("InstanceNotFound")
        if row.parent is not None:
            raise ModelError("InvalidArgument")
        doomed = [instance]
        for iid in doomed:
            doomed.extend(i for i, r in self.instances.items() if r.parent == iid)
        for iid in doomed:
            del self.instances[iid]
            self.locks.pop(iid, None)
        self.queue = [r for r in self.queue if r.instance not in doomed]
        self.activities = [a for a in self.activities if a.message.instance not in doomed]

    # observations

    def depths(self) -> tuple[int, int]:
        orchestrator = 0
        for r in self.queue:
            lock = self.live_lock(r.instance)
            if lock is None or r.token != lock[0]:
                orchestrator += 1
        worker = sum(1 for a in self.activities if a.token is None or a.locked_until <= self.now)
        return orchestrator, worker


# -- the machine ------------------------------------------------------------------------------


def _call(fn: Callable[[], Any]) -> tuple[str, Any]:
    """Run one provider call; its outcome as ("ok", value) or ("error", exception class name)."""
    try:
        return "ok", fn()
    except DuroxError as exc:
        return "error", type(exc).__name__


def _model_call(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except ModelError as exc:
        return "error", exc.kind


def _read(provider: Any, index: int, *, method: str, instance: str) -> Any:
    return getattr(provider, method)(instance)


def _untokened(item: OrchestrationItem | ActivityItem | None) -> Any:
    return None if item is None else attrs.evolve(item, lock_token="")


@attrs.define
class Handle:
    """One fetched orchestration item, as each side knows it."""

    tokens: tuple[str, str]
    model_token: int
    item: OrchestrationItem


@attrs.define
class WorkHandle:
    tokens: tuple[str, str]
    model_token: int
    item: ActivityItem


class ProviderAgreement(RuleBasedStateMachine):
    """Memory and SQLite side by side, checked against each other and the model after every call."""

    directory: Path  # set by the test before the run

    def __init__(self) -> None:
        super().__init__()
        next(EXAMPLES_RUN)
        self.clocks = (ManualClock(START_MS), ManualClock(START_MS))
        self.providers: tuple[MemoryProvider, SqliteProvider] | tuple[()] = ()
        self.model = Model()
        self.handles: list[Handle] = []
        self.work_handles: list[WorkHandle] = []
        self.events_sent = itertools.count(1)

    def teardown(self) -> None:
        for provider in self.providers:
            provider.close()

    @property
    def memory(self) -> MemoryProvider:
        assert self.providers
        return self.providers[0]

    @property
    def sqlite(self) -> SqliteProvider:
        assert self.providers
        return self.providers[1]

    # -- helpers

    def both(self, call: Callable[[Any, int], Any]) -> tuple[str, Any]:
        """Run ``call`` on both providers (index given for tokens); assert equal outcomes; return one."""
        outcomes = [_call(functools.partial(call, p, i)) for i, p in enumerate(self.providers)]
        assert outcomes[0] == outcomes[1], (
            f"memory and sqlite disagree: {outcomes[0]!r} != {outcomes[1]!r}"
        )
        return outcomes[0]

    def both_fetch(self, call: Callable[[Any], Any]) -> tuple[str, Any, list[Any]]:
        """Like :meth:`both` for fetches: compare modulo lock tokens; also return the raw items."""
        raw = [_call(functools.partial(call, p)) for p in self.providers]
        shown = [(kind, _untokened(value) if kind == "ok" else value) for kind, value in raw]
        assert shown[0] == shown[1], (
            f"memory and sqlite fetched differently:\n{shown[0]!r}\n{shown[1]!r}"
        )
        return shown[0][0], shown[0][1], [value for _, value in raw]

    # -- instances and messages

    @initialize(on_file=st.booleans())
    def open_stores_with_two_instances(self, on_file: bool) -> None:
        """Open both stores (SQLite on a file or in memory) and give them work to do."""
        sqlite = (
            SqliteProvider(
                self.directory / f"agreement-{next(_FILES)}.db",
                clock=self.clocks[1].now_ms,
                synchronous="OFF",
            )
            if on_file
            else SqliteProvider.in_memory(clock=self.clocks[1].now_ms)
        )
        self.providers = (MemoryProvider(clock=self.clocks[0].now_ms), sqlite)
        self.create_instance("a", "Flow")
        self.create_instance("b", "Flow")

    @rule(instance=st.sampled_from(INSTANCES), name=st.sampled_from(["Flow", "Other"]))
    def create_instance(self, instance: str, name: str) -> None:
        start = StartOrchestration(instance=instance, name=name, input=f'"{instance}"')
        outcome = self.both(lambda p, i: p.create_instance(start))
        assert outcome == _model_call(lambda: self.model.create(start))

    @rule(
        instance=st.sampled_from(INSTANCES),
        kind=st.sampled_from(["external", "queue", "timer", "cancel", "result"]),
        delay_ms=st.sampled_from(DELAYS),
    )
    def enqueue(self, instance: str, kind: str, delay_ms: int) -> None:
        n = next(self.events_sent)
        message: OrchestratorMessage
        if kind == "external":
            message = ExternalRaised(instance=instance, name="go", data=f"{n}")
        elif kind == "queue":
            message = QueueMessage(instance=instance, name="inbox", data=f"{n}")
        elif kind == "timer":
            message = TimerDue(
                instance=instance, execution_id=1, id=n, fire_at_ms=self.model.now + delay_ms
            )
        elif kind == "cancel":
            message = CancelInstance(instance=instance, reason=f"r{n}")
        else:
            message = ActivityResult(instance=instance, execution_id=1, id=n, result=f"{n}")
        outcome = self.both(lambda p, i: p.enqueue_orchestrator(message, delay_ms=delay_ms))

        def model() -> None:
            if instance not in self.model.instances:
                raise ModelError("InstanceNotFound")
            self.model.enqueue(message, delay_ms)

        assert outcome == _model_call(model)

    @rule(
        instance=st.sampled_from(INSTANCES),
        tag=st.sampled_from(TAGS),
        session=st.sampled_from(SESSIONS),
    )
    def enqueue_worker(self, instance: str, tag: str | None, session: str | None) -> None:
        activity = ExecuteActivity(
            instance=instance,
            execution_id=1,
            id=next(self.events_sent),
            name="Act",
            input="null",
            session_id=session,
            tag=tag,
        )
        outcome = self.both(lambda p, i: p.enqueue_worker(activity))
        assert outcome == ("ok", None)
        self.model.activities.append(MActivity(next(self.model.seq), activity, self.model.now))

    @rule(ms=st.sampled_from(ADVANCES_MS))
    def advance_clock(self, ms: int) -> None:
        for clock in self.clocks:
            clock.advance(ms / 1000)
        self.model.now += ms

    # -- orchestration turns

    @rule(timeout=st.sampled_from(LOCK_TIMEOUTS), use_known=st.booleans())
    def fetch_orchestration_item(self, timeout: float, use_known: bool) -> None:
        # A cache that holds exactly the stored history of every instance it saw,
        # so the tail rule is exercised both ways.
        def known(instance: str, execution_id: int) -> int:
            row = self.model.instances.get(instance)
            if not use_known or row is None:
                return 0
            return len(row.histories.get(execution_id, []))

        kind, item, raw = self.both_fetch(
            lambda p: p.fetch_orchestration_item(lock_timeout=timeout, known_history=known)
        )
        assert kind == "ok"
        predicted = self.model.fetch(round(timeout * 1000))
        if predicted is None:
            assert item is None
            return
        token, instance, batch = predicted
        assert item is not None, f"model fetched {instance!r}, providers fetched nothing"
        row = self.model.instances[instance]
        assert item.instance == instance
        assert item.messages == tuple(r.message for r in batch)
        assert item.attempt_count == max(r.attempts for r in batch)
        assert item.execution_id == row.current
        stored = row.histories[row.current]
        assert item.history_len == len(stored)
        if use_known and stored:
            assert (item.history, item.history_offset) == ((), len(stored))
        else:
            assert (item.history, item.history_offset) == (tuple(stored), 0)
        assert {k: e.value for k, e in item.kv_snapshot.items()} == row.kv_base
        self.handles.append(Handle((raw[0].lock_token, raw[1].lock_token), token, item))

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    def ack_orchestration_item(self, data: st.DataObject) -> None:
        handle = data.draw(st.sampled_from(self.handles))
        self._ack(handle, data.draw(commits(handle.item, self.model)))

    def _ack(self, handle: Handle, commit: Commit) -> None:
        outcome = self.both(lambda p, i: p.ack_orchestration_item(handle.tokens[i], commit))
        assert outcome == _model_call(lambda: self.model.ack(handle.model_token, commit))
        if outcome[0] == "ok":
            self.handles.remove(handle)

    @rule(data=st.data())
    def turn(self, data: st.DataObject) -> None:
        """Fetch and ack at once: the common path, so histories grow and executions end."""
        self.fetch_orchestration_item(timeout=5.0, use_known=data.draw(st.booleans()))
        if self.handles:
            handle = self.handles[-1]
            commit = data.draw(commits(handle.item, self.model))
            self._ack(handle, commit)

    @precondition(lambda self: self.handles)
    @rule(data=st.data(), delay_ms=st.sampled_from(DELAYS), ignore_attempt=st.booleans())
    def abandon_orchestration_item(
        self, data: st.DataObject, delay_ms: int, ignore_attempt: bool
    ) -> None:
        handle = data.draw(st.sampled_from(self.handles))
        outcome = self.both(
            lambda p, i: p.abandon_orchestration_item(
                handle.tokens[i], delay_ms=delay_ms, ignore_attempt=ignore_attempt
            )
        )
        assert outcome == _model_call(
            lambda: self.model.abandon(handle.model_token, delay_ms, ignore_attempt)
        )
        self.handles.remove(handle)

    @precondition(lambda self: self.handles)
    @rule(data=st.data(), timeout=st.sampled_from(LOCK_TIMEOUTS))
    def renew_orchestration_lock(self, data: st.DataObject, timeout: float) -> None:
        handle = data.draw(st.sampled_from(self.handles))
        outcome = self.both(
            lambda p, i: p.renew_orchestration_lock(handle.tokens[i], lock_timeout=timeout)
        )
        assert outcome == _model_call(
            lambda: self.model.renew(handle.model_token, round(timeout * 1000))
        )

    # -- activities

    @rule(
        tag_filter=st.sampled_from(FILTERS),
        owner=st.sampled_from((None, *OWNERS)),
        timeout=st.sampled_from(LOCK_TIMEOUTS),
    )
    def fetch_work_item(self, tag_filter: TagFilter, owner: str | None, timeout: float) -> None:
        claim = None if owner is None else SessionClaim(owner_id=owner, lock_timeout=3.0)
        kind, item, raw = self.both_fetch(
            lambda p: p.fetch_work_item(lock_timeout=timeout, tag_filter=tag_filter, session=claim)
        )
        assert kind == "ok"
        predicted = self.model.fetch_work(
            tag_filter, None if owner is None else (owner, 3_000), round(timeout * 1000)
        )
        if predicted is None:
            assert item is None
            return
        token, activity = predicted
        assert item is not None, (
            f"model fetched activity {activity.message.id}, providers fetched nothing"
        )
        assert (item.message, item.attempt_count) == (activity.message, activity.attempts)
        self.work_handles.append(WorkHandle((raw[0].lock_token, raw[1].lock_token), token, item))

    @precondition(lambda self: self.work_handles)
    @rule(data=st.data(), with_result=st.booleans())
    def ack_work_item(self, data: st.DataObject, with_result: bool) -> None:
        self._ack_work(data.draw(st.sampled_from(self.work_handles)), with_result)

    def _ack_work(self, handle: WorkHandle, with_result: bool) -> None:
        activity = handle.item.message
        result = (
            ActivityResult(
                instance=activity.instance,
                execution_id=activity.execution_id,
                id=activity.id,
                result='"ok"',
            )
            if with_result
            else None
        )
        outcome = self.both(lambda p, i: p.ack_work_item(handle.tokens[i], result))
        assert outcome == _model_call(lambda: self.model.ack_work(handle.model_token, result))
        self.work_handles.remove(handle)

    @rule(
        tag_filter=st.sampled_from(FILTERS[:4]),
        owner=st.sampled_from(OWNERS),
        finish=st.sampled_from(["ack", "ack", "abandon", "abandon_ignoring_attempt"]),
    )
    def activity_round(self, tag_filter: TagFilter, owner: str, finish: str) -> None:
        """Fetch an activity and finish it at once, as a worker does: ack, or give it back."""
        before = len(self.work_handles)
        self.fetch_work_item(tag_filter=tag_filter, owner=owner, timeout=5.0)
        if len(self.work_handles) == before:
            return
        handle = self.work_handles[-1]
        if finish == "ack":
            self._ack_work(handle, with_result=True)
        else:
            self._abandon_work(handle, 0, finish == "abandon_ignoring_attempt")

    @precondition(lambda self: self.work_handles)
    @rule(data=st.data(), delay_ms=st.sampled_from(DELAYS), ignore_attempt=st.booleans())
    def abandon_work_item(self, data: st.DataObject, delay_ms: int, ignore_attempt: bool) -> None:
        self._abandon_work(data.draw(st.sampled_from(self.work_handles)), delay_ms, ignore_attempt)

    def _abandon_work(self, handle: WorkHandle, delay_ms: int, ignore_attempt: bool) -> None:
        outcome = self.both(
            lambda p, i: p.abandon_work_item(
                handle.tokens[i], delay_ms=delay_ms, ignore_attempt=ignore_attempt
            )
        )
        assert outcome == _model_call(
            lambda: self.model.abandon_work(handle.model_token, delay_ms, ignore_attempt)
        )
        self.work_handles.remove(handle)

    @precondition(lambda self: self.work_handles)
    @rule(data=st.data(), timeout=st.sampled_from(LOCK_TIMEOUTS))
    def renew_work_item_lock(self, data: st.DataObject, timeout: float) -> None:
        handle = data.draw(st.sampled_from(self.work_handles))
        outcome = self.both(
            lambda p, i: p.renew_work_item_lock(handle.tokens[i], lock_timeout=timeout)
        )
        assert outcome == _model_call(
            lambda: self.model.renew_work(handle.model_token, round(timeout * 1000))
        )

    @rule(data=st.data())
    def maintenance(self, data: st.DataObject) -> None:
        """The rarer calls, one at a time, so they do not crowd out turns."""
        chosen = data.draw(st.sampled_from(["sessions", "cleanup", "delete"]))
        if chosen == "sessions":
            owners = data.draw(st.sampled_from([(OWNERS[0],), OWNERS]))
            self.renew_session_locks(owners, data.draw(st.sampled_from([0.5, 10.0])))
        elif chosen == "cleanup":
            self.cleanup_orphaned_sessions()
        else:
            self.delete_instance(data.draw(st.sampled_from(INSTANCES)))

    def renew_session_locks(self, owners: tuple[str, ...], idle: float) -> None:
        outcome = self.both(
            lambda p, i: p.renew_session_locks(owners, lock_timeout=3.0, idle_timeout=idle)
        )
        expected = 0
        for session in self.model.sessions.values():
            live = session.locked_until > self.model.now
            busy = session.last_activity > self.model.now - round(idle * 1000)
            if session.owner in owners and live and busy:
                session.locked_until = self.model.now + 3_000
                expected += 1
        assert outcome == ("ok", expected)

    def cleanup_orphaned_sessions(self) -> None:
        outcome = self.both(lambda p, i: p.cleanup_orphaned_sessions())
        used = {a.message.session_id for a in self.model.activities}
        stale = [
            s
            for s, v in self.model.sessions.items()
            if v.locked_until <= self.model.now and s not in used
        ]
        for session_id in stale:
            del self.model.sessions[session_id]
        assert outcome == ("ok", len(stale))

    def delete_instance(self, instance: str) -> None:
        outcome = self.both(lambda p, i: p.delete_instance(instance, force=True))
        model = _model_call(lambda: self.model.delete(instance))
        assert outcome[0] == model[0] and (outcome[0] == "ok" or outcome[1] == model[1])

    # -- what every step must leave equal

    @invariant()
    def observable_state_agrees(self) -> None:
        for instance in INSTANCES:
            for method in (
                "get_instance_status",
                "read_history",
                "get_kv_all_values",
                "get_orchestration_stats",
            ):
                self.both(functools.partial(_read, method=method, instance=instance))
            row = self.model.instances.get(instance)
            status = self.memory.get_instance_status(instance)
            if row is None:
                assert status is None
                continue
            assert status is not None
            assert (status.execution_id, status.status) == (row.current, row.statuses[row.current])
            assert (status.custom_status, status.custom_status_version) == (
                row.custom_status,
                row.custom_version,
            )
            assert self.sqlite.get_kv_all_values(instance) == row.kv_latest()
            assert self.sqlite.read_history(instance) == row.histories[row.current]
        depths = self.both(lambda p, i: p.get_queue_depths())
        assert (depths[1].orchestrator_queue, depths[1].worker_queue) == self.model.depths()
        self.both(lambda p, i: p.next_orchestrator_visible_ms())
        self.both(lambda p, i: p.get_system_metrics())
        self.both(lambda p, i: p.list_instances())


_FILES = itertools.count()


# -- commits ------------------------------------------------------------------------------------


@st.composite
def commits(draw: st.DrawFn, item: OrchestrationItem, model: Model) -> Commit:
    """A small random commit for ``item``, shaped like what a turn writes (sometimes clashing)."""
    execution_id = item.execution_id
    for message in item.messages:
        if isinstance(message, ContinueAsNew):
            execution_id = message.execution_id
    row = model.instances.get(item.instance)
    stored = len(row.histories.get(execution_id, [])) if row is not None else 0
    next_id = stored + 1
    events: list[history.Event] = []
    workers: list[ExecuteActivity] = []
    outgoing: list[OutgoingMessage] = []
    kv_ops: list[history.KeyValueSet | history.KeyValueCleared | history.KeyValuesCleared] = []
    now = model.now
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(
            st.sampled_from(["activity", "timer", "external", "kv_set", "kv_clear", "kv_clear_all"])
        )
        event_id = next_id
        next_id += 1
        if kind == "activity":
            tag = draw(st.sampled_from(TAGS))
            session = draw(st.sampled_from(SESSIONS))
            events.append(
                history.ActivityScheduled(
                    event_id=event_id,
                    timestamp_ms=now,
                    name="Act",
                    input="1",
                    session_id=session,
                    tag=tag,
                )
            )
            workers.append(
                ExecuteActivity(
                    instance=item.instance,
                    execution_id=execution_id,
                    id=event_id,
                    name="Act",
                    input="1",
                    orchestration_name=item.orchestration_name,
                    orchestration_version="1.0.0",
                    session_id=session,
                    tag=tag,
                )
            )
        elif kind == "timer":
            delay = draw(st.sampled_from(DELAYS))
            events.append(
                history.TimerCreated(event_id=event_id, timestamp_ms=now, fire_at_ms=now + delay)
            )
            message = TimerDue(
                instance=item.instance,
                execution_id=execution_id,
                id=event_id,
                fire_at_ms=now + delay,
            )
            outgoing.append(OutgoingMessage(message=message, delay_ms=delay))
        elif kind == "external":
            events.append(
                history.ExternalSubscribed(event_id=event_id, timestamp_ms=now, name="go")
            )
        elif kind == "kv_set":
            key, value = draw(st.sampled_from(KEYS)), f'"{event_id}"'
            op: Any = history.KeyValueSet(
                event_id=event_id, timestamp_ms=now, key=key, value=value, updated_at_ms=now
            )
            events.append(op)
            kv_ops.append(op)
        elif kind == "kv_clear":
            op = history.KeyValueCleared(
                event_id=event_id, timestamp_ms=now, key=draw(st.sampled_from(KEYS))
            )
            events.append(op)
            kv_ops.append(op)
        else:
            op = history.KeyValuesCleared(event_id=event_id, timestamp_ms=now)
            events.append(op)
            kv_ops.append(op)
    if stored and draw(st.integers(0, 9)) == 0:
        # A second turn writing over the first: the history key rejects the whole commit.
        events.append(
            history.ExternalSubscribed(
                event_id=draw(st.integers(1, stored)), timestamp_ms=now, name="dup"
            )
        )
    if draw(st.integers(0, 4)) == 0:
        child = draw(st.sampled_from(INSTANCES))
        outgoing.append(
            OutgoingMessage(
                message=StartOrchestration(
                    instance=child,
                    name="Child",
                    input="null",
                    parent_instance=item.instance,
                    parent_execution_id=execution_id,
                    parent_id=1,
                )
            )
        )
    if draw(st.integers(0, 4)) == 0:
        target = draw(st.sampled_from(INSTANCES))
        outgoing.append(
            OutgoingMessage(message=ExternalRaised(instance=target, name="ping", data="1"))
        )
    cancelled: list[ActivityRef] = []
    mine = [a for a in model.activities if a.message.instance == item.instance]
    cancel_one: bool = draw(st.booleans())
    if mine and cancel_one:
        victim = draw(st.sampled_from(mine)).message
        cancelled.append(
            ActivityRef(instance=victim.instance, execution_id=victim.execution_id, id=victim.id)
        )
    if workers and draw(st.integers(0, 3)) == 0:
        # Scheduled and cancelled in one turn (a select loser): no row may remain.
        cancelled.append(
            ActivityRef(instance=item.instance, execution_id=execution_id, id=workers[0].id)
        )
    statuses: list[ExecutionStatus | None] = [
        None,
        None,
        "Running",
        "Completed",
        "Failed",
        "ContinuedAsNew",
    ]
    status = draw(st.sampled_from(statuses))
    output = None
    if status == "Completed":
        output = '"done"'
        events.append(
            history.OrchestrationCompleted(event_id=next_id, timestamp_ms=now, output=output)
        )
    elif status == "Failed":
        output = dumps_record(FAILURE)
        events.append(
            history.OrchestrationFailed(event_id=next_id, timestamp_ms=now, details=FAILURE)
        )
    elif status == "ContinuedAsNew":
        output = '"again"'
        events.append(
            history.OrchestrationContinuedAsNew(event_id=next_id, timestamp_ms=now, input=output)
        )
        outgoing.append(
            OutgoingMessage(
                message=ContinueAsNew(
                    instance=item.instance,
                    execution_id=execution_id + 1,
                    name=item.orchestration_name,
                    input=output,
                )
            )
        )
    custom_changed = draw(st.integers(0, 3)) == 0
    return Commit(
        instance=item.instance,
        execution_id=execution_id,
        orchestration_name=item.orchestration_name,
        orchestration_version="1.0.0",
        new_events=tuple(events),
        worker_items=tuple(workers),
        orchestrator_items=tuple(outgoing),
        cancelled_activities=tuple(cancelled),
        status=status,
        output=output,
        custom_status_changed=custom_changed,
        custom_status=draw(st.sampled_from([None, "half", "done"])) if custom_changed else None,
        kv_ops=tuple(kv_ops),
    )


# -- the tests ----------------------------------------------------------------------------------


def _run(tmp_path: Path, *, examples: int, steps: int) -> int:
    ProviderAgreement.directory = tmp_path
    before = next(EXAMPLES_RUN)
    machine = ProviderAgreement.TestCase
    machine.settings = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    machine().runTest()
    return next(EXAMPLES_RUN) - before - 1


def test_memory_sqlite_and_model_agree(tmp_path: Path) -> None:
    ran = _run(tmp_path, examples=600, steps=50)
    print(f"agreement: {ran} examples")
    assert ran >= 1


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_memory_sqlite_and_model_agree_long(tmp_path: Path) -> None:
    ran = _run(tmp_path, examples=3_000, steps=80)
    print(f"agreement (long): {ran} examples")
    assert ran >= 1
