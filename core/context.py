"""OrchestrationContext and the durable futures orchestration code yields.

Orchestrations are generator functions. Every ``ctx.schedule_*`` call emits
its command *at once* and returns a :class:`DurableFuture`; ``yield`` then
waits for it::

    @registry.orchestration("Checkout")
    def checkout(ctx, order):
        charge = ctx.schedule_activity("Charge", order)        # scheduled now
        ship = ctx.schedule_activity("Reserve", order)         # runs in parallel
        receipt, reservation = yield ctx.join([charge, ship])  # wait for both
        return {"receipt": receipt, "reservation": reservation}

Failures are raised at the ``yield`` (:class:`~durox.errors.ActivityFailed`,
:class:`~durox.errors.SubOrchestrationFailed`). The engine that drives the
generator lives in :mod:`durox.core.replay`; this module holds only what user
code touches.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Generic, TypeVar, Union

from durox.core import actions, codec
from durox.core.errors import (
    ActivityFailed,
    DuroxError,
    ErrorDetails,
    InvalidArgument,
    PayloadError,
    SubOrchestrationFailed,
)
from durox.core.limits import (
    MAX_CUSTOM_STATUS_BYTES,
    MAX_KV_KEYS,
    MAX_KV_VALUE_BYTES,
    check_id,
)
from durox.core.retry import RetryPolicy, seconds

if TYPE_CHECKING:
    from durox.core.replay import Replay

__all__ = ["DurableFuture", "OrchestrationContext", "TaskCancelled"]

T = TypeVar("T")

_PENDING, _DONE, _CANCELLED = "pending", "done", "cancelled"


class TaskCancelled(DuroxError):
    """Raised when code yields a future that was cancelled (for example a ``select`` loser)."""


class DurableFuture(Generic[T]):
    """Work an orchestration waits for. Yield it to get its result.

    Futures are created by :class:`OrchestrationContext` methods only. A
    future is *done* once its outcome is recorded in history, or *cancelled*
    when it lost a ``select`` or its block was abandoned.
    """

    __slots__ = ("_error", "_observed", "_replay", "_state", "_value", "owner")

    def __init__(self, replay: Replay) -> None:
        self._replay = replay
        self._state = _PENDING
        self._value: Any = None
        self._error: BaseException | None = None
        self._observed = False
        self.owner = replay.current_owner()
        if self.owner is not None:
            self.owner.children.append(self)

    @property
    def done(self) -> bool:
        """Whether the outcome is known."""
        return self._state == _DONE

    @property
    def cancelled(self) -> bool:
        """Whether the future was cancelled before it finished."""
        return self._state == _CANCELLED

    # -- engine side -------------------------------------------------------------

    def _poll(self) -> bool:
        """Advance as far as history allows; True once the outcome is known."""
        return self._state != _PENDING

    def _resolve(self, value: Any) -> None:
        if self._state == _PENDING:
            self._state, self._value = _DONE, value
            self._replay.progress += 1

    def _fail(self, error: BaseException) -> None:
        if self._state == _PENDING:
            self._state, self._error = _DONE, error
            self._replay.progress += 1

    def _cancel(self) -> None:
        if self._state == _PENDING:
            self._state = _CANCELLED
            self._on_cancel()

    def _on_cancel(self) -> None:
        """Undo the pending work; the engine records what must be recorded."""

    def _observe(self) -> None:
        """The code received this outcome (so it must never be handed to anyone else)."""
        self._observed = True

    def _release(self) -> None:
        """The code gave up on this future: cancel it, or give back what it took unseen."""
        if self._state == _PENDING:
            self._cancel()
        elif self._state == _DONE and not self._observed:
            self._observed = True
            self._give_back()

    def _give_back(self) -> None:
        """Return an outcome nobody saw to where it came from (events and queue messages)."""

    def _outcome(self) -> tuple[Any, BaseException | None]:
        if self._state == _CANCELLED:
            return None, TaskCancelled(
                f"{self!r} was cancelled (it lost a select, or its block was abandoned)"
            )
        return self._value, self._error

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state}>"


class ScheduledFuture(DurableFuture[T]):
    """A future backed by one history schedule event (activity, timer, wait, dequeue, child)."""

    __slots__ = (
        "action",
        "child_instance",
        "delivered",
        "fire_at_ms",
        "result_type",
        "schedule_id",
    )

    def __init__(self, replay: Replay, action: actions.Action, result_type: Any = None) -> None:
        super().__init__(replay)
        self.action = action
        self.result_type = result_type
        self.schedule_id: int | None = None
        self.fire_at_ms: int | None = None
        self.child_instance: str | None = None
        self.delivered: str | None = None

    def _deliver(
        self, result_text: str | None, error: ErrorDetails | None, *, attempt: int = 1
    ) -> None:
        """Resolve from a completion recorded in history."""
        if error is not None:
            if isinstance(self.action, actions.StartSubOrchestration):
                self._fail(
                    SubOrchestrationFailed(
                        error.display_message(), error_type=error.error_type, details=error
                    )
                )
            else:
                self._fail(
                    ActivityFailed(
                        error.message, error_type=error.error_type, details=error, attempt=attempt
                    )
                )
            return
        if result_text is None:
            self._resolve(None)
            return
        self.delivered = result_text
        try:
            self._resolve(codec.decode_payload(result_text, self.result_type))
        except PayloadError as exc:
            self._fail(exc)

    def _on_cancel(self) -> None:
        self._replay.cancelled(self)

    def _give_back(self) -> None:
        # A wait or dequeue that took its event but lost: the event goes to the next one.
        if isinstance(self.action, (actions.WaitExternal, actions.DequeueEvent)) and self.delivered:
            self._replay.give_back(self.action, self.delivered)

    def with_tag(self, tag: str) -> ScheduledFuture[T]:
        """Route this activity to workers serving ``tag``. Call it right after scheduling.

        >>> # render = ctx.schedule_activity("Render", frame).with_tag("gpu")
        """
        if not isinstance(self.action, actions.ScheduleActivity):
            raise InvalidArgument("with_tag() applies to activities only")
        check_id(tag, "tag")
        self.action = self._replay.retag(self, tag)
        return self

    def __repr__(self) -> str:
        return f"<{actions.describe(self.action)} {self._state}>"


class _ImmediateFuture(DurableFuture[T]):
    """Already resolved at creation (system calls, misuse reported at the yield)."""

    __slots__ = ()

    def __init__(
        self, replay: Replay, value: Any = None, error: BaseException | None = None
    ) -> None:
        super().__init__(replay)
        if error is None:
            self._resolve(value)
        else:
            self._fail(error)


class _NeverFuture(DurableFuture[T]):
    """Never resolves: the yield of ``continue_as_new`` is where the execution ends."""

    __slots__ = ()


class _JoinFuture(DurableFuture[list[Any]]):
    __slots__ = ("futures", "return_exceptions")

    def __init__(
        self, replay: Replay, futures: list[DurableFuture[Any]], return_exceptions: bool
    ) -> None:
        super().__init__(replay)
        self.futures = futures
        self.return_exceptions = return_exceptions

    def _poll(self) -> bool:
        if self._state != _PENDING:
            return True
        # Poll every branch (no short-circuit) so blocks all advance in a fixed order.
        if not all([future._poll() for future in self.futures]):
            return False
        results: list[Any] = []
        for future in self.futures:
            value, error = future._outcome()
            if error is not None and not self.return_exceptions:
                self._fail(error)
                return True
            results.append(error if error is not None else value)
        self._resolve(results)
        return True

    def _observe(self) -> None:
        super()._observe()
        for future in self.futures:
            future._observe()

    def _on_cancel(self) -> None:
        for future in self.futures:
            future._release()

    def _give_back(self) -> None:
        for future in self.futures:
            future._release()


class _SelectFuture(DurableFuture[tuple[int, Any]]):
    __slots__ = ("futures", "winner")

    def __init__(self, replay: Replay, futures: list[DurableFuture[Any]]) -> None:
        super().__init__(replay)
        self.futures = futures
        self.winner: DurableFuture[Any] | None = None

    def _poll(self) -> bool:
        if self._state != _PENDING:
            return True
        for index, future in enumerate(self.futures):
            if future._poll():
                # The earliest completion in history wins; ties go to argument order.
                self.winner = future
                for loser in self.futures:
                    if loser is not future:
                        loser._release()
                value, error = future._outcome()
                if error is not None:
                    self._fail(error)
                else:
                    self._resolve((index, value))
                return True
        return False

    def _observe(self) -> None:
        super()._observe()
        if self.winner is not None:
            self.winner._observe()

    def _on_cancel(self) -> None:
        for future in self.futures:
            future._release()

    def _give_back(self) -> None:
        if self.winner is not None:
            self.winner._release()


class BlockFuture(DurableFuture[T]):
    """A multi-step generator run inline, so it can be joined or raced like one task."""

    __slots__ = ("children", "coroutine")

    def __init__(self, replay: Replay, generator: Generator[Any, Any, Any]) -> None:
        super().__init__(replay)
        self.children: list[DurableFuture[Any]] = []
        self.coroutine = replay.coroutine(generator, self)
        self.coroutine.advance()

    def _poll(self) -> bool:
        if self._state != _PENDING:
            return True
        if self.coroutine.advance():
            if self.coroutine.error is not None:
                self._fail(self.coroutine.error)
            else:
                self._resolve(self.coroutine.result)
            return True
        return False

    def _on_cancel(self) -> None:
        for child in self.children:
            child._release()
        self.coroutine.close()


Yieldable = Union[DurableFuture[Any], Generator[Any, Any, Any]]


class OrchestrationContext:
    """Everything an orchestration may do. Passed as the first argument of every orchestration.

    Methods returning a :class:`DurableFuture` schedule their work immediately;
    ``yield`` the future to wait for its result.
    """

    __slots__ = ("_replay",)

    def __init__(self, replay: Replay) -> None:
        self._replay = replay

    # -- identity ------------------------------------------------------------------

    @property
    def instance_id(self) -> str:
        """The id of this orchestration instance."""
        return self._replay.instance

    @property
    def execution_id(self) -> int:
        """1 for the first execution, +1 after every continue_as_new."""
        return self._replay.execution_id

    @property
    def orchestration_name(self) -> str:
        """The registered name of the running orchestration."""
        return self._replay.orchestration_name

    @property
    def orchestration_version(self) -> str:
        """The version of the running orchestration (chosen at start or continue_as_new)."""
        return self._replay.orchestration_version

    @property
    def is_replaying(self) -> bool:
        """True while the code re-runs decisions history already recorded."""
        return self._replay.is_replaying

    # -- activities -------------------------------------------------------------------

    def schedule_activity(
        self,
        name: str,
        input: Any = None,
        *,
        result_type: Any = None,
        session_id: str | None = None,
        tag: str | None = None,
    ) -> ScheduledFuture[Any]:
        """Schedule activity ``name``; yield the future for its result.

        ``session_id`` pins it (and every activity on that session) to one
        worker; ``tag`` routes it to workers serving that tag; ``result_type``
        structures the result (an attrs class, a dataclass, ``list[int]``...).
        """
        check_id(name, "activity name")
        if session_id is not None:
            check_id(session_id, "session id")
        if tag is not None:
            check_id(tag, "tag")
        action = actions.ScheduleActivity(
            name=name,
            input=self._encode(input, f"input of activity {name!r}"),
            session_id=session_id,
            tag=tag,
        )
        return self._replay.schedule(action, result_type)

    def schedule_activity_on_session(
        self,
        name: str,
        input: Any,
        session_id: str,
        *,
        result_type: Any = None,
        tag: str | None = None,
    ) -> ScheduledFuture[Any]:
        """Schedule an activity on ``session_id``: every activity of a session runs on one worker."""
        return self.schedule_activity(
            name, input, result_type=result_type, session_id=session_id, tag=tag
        )

    def schedule_activity_with_retry(
        self,
        name: str,
        input: Any,
        policy: RetryPolicy,
        *,
        session_id: str | None = None,
        tag: str | None = None,
        result_type: Any = None,
    ) -> BlockFuture[Any]:
        """Schedule an activity retried according to ``policy``; yields its first success.

        Raises :class:`~durox.errors.ActivityFailed` at the yield with the last
        attempt's error once attempts (or ``policy.total_timeout``) run out.
        """
        if not isinstance(policy, RetryPolicy):
            raise InvalidArgument("policy must be a RetryPolicy")
        check_id(name, "activity name")
        attempts = self.block(self._retry_loop(name, input, policy, session_id, tag, result_type))
        if policy.total_timeout is None:
            return attempts
        return self.block(self._with_total_timeout(name, attempts, policy.total_timeout))

    def _retry_loop(
        self,
        name: str,
        input: Any,
        policy: RetryPolicy,
        session_id: str | None,
        tag: str | None,
        result_type: Any,
    ) -> Generator[Any, Any, Any]:
        last: ActivityFailed | None = None
        for attempt in range(1, policy.max_attempts + 1):
            task = self.schedule_activity(
                name, input, result_type=result_type, session_id=session_id, tag=tag
            )
            try:
                if policy.timeout is None:
                    return (yield task)
                index, value = yield self.select(task, self.schedule_timer(policy.timeout))
                if index == 0:
                    return value
                last = ActivityFailed(
                    f"activity {name!r} attempt {attempt} timed out after {policy.timeout:g}s",
                    error_type="Timeout",
                    attempt=attempt,
                )
            except ActivityFailed as failure:
                last = failure
            if attempt < policy.max_attempts:
                self.trace_warn(
                    f"activity {name!r} attempt {attempt}/{policy.max_attempts} failed: {last.message}"
                )
                delay = policy.backoff.delay_for_attempt(attempt)
                if delay > 0:
                    yield self.schedule_timer(delay)
        assert last is not None
        raise last

    def _with_total_timeout(
        self, name: str, attempts: BlockFuture[Any], total_timeout: float
    ) -> Generator[Any, Any, Any]:
        index, value = yield self.select(attempts, self.schedule_timer(total_timeout))
        if index == 1:
            raise ActivityFailed(
                f"activity {name!r} did not succeed within its total timeout of {total_timeout:g}s",
                error_type="Timeout",
            )
        return value

    # -- timers, events, queues -------------------------------------------------------

    def schedule_timer(self, delay: float | timedelta) -> ScheduledFuture[None]:
        """A durable timer; yields ``None`` after ``delay`` seconds (or a ``timedelta``)."""
        delay_s = seconds(delay, "timer delay")
        return self._replay.schedule(
            actions.CreateTimer(fire_at_ms=self._replay.now_ms + round(delay_s * 1000))
        )

    def schedule_wait(self, name: str, *, result_type: Any = None) -> ScheduledFuture[Any]:
        """Wait for external event ``name``; the Nth wait receives the Nth raise.

        An event raised while no wait for its name is pending is dropped.
        """
        check_id(name, "event name")
        future: ScheduledFuture[Any] = self._replay.schedule(
            actions.WaitExternal(name=name), result_type
        )
        self._replay.subscribe_external(future, name)
        return future

    wait_for_event = schedule_wait

    def dequeue_event(self, queue: str, *, result_type: Any = None) -> ScheduledFuture[Any]:
        """Take the next message from event queue ``queue`` (FIFO; messages wait until taken)."""
        check_id(queue, "queue name")
        future: ScheduledFuture[Any] = self._replay.schedule(
            actions.DequeueEvent(name=queue), result_type
        )
        self._replay.subscribe_queue(future, queue)
        return future

    # -- sub-orchestrations -----------------------------------------------------------

    def schedule_sub_orchestration(
        self,
        name: str,
        input: Any = None,
        *,
        instance_id: str | None = None,
        version: str | None = None,
        result_type: Any = None,
    ) -> ScheduledFuture[Any]:
        """Start child orchestration ``name`` and yield its result.

        A child failure raises :class:`~durox.errors.SubOrchestrationFailed`.
        Without ``instance_id`` the child is named ``"<parent>::sub::<event id>"``.
        """
        check_id(name, "orchestration name")
        if instance_id is not None:
            check_id(instance_id, "instance id")
        if version is not None:
            _check_version(version)
        action = actions.StartSubOrchestration(
            name=name,
            input=self._encode(input, f"input of sub-orchestration {name!r}"),
            instance=instance_id,
            version=version,
        )
        return self._replay.schedule(action, result_type)

    def schedule_orchestration(
        self, name: str, instance_id: str, input: Any = None, *, version: str | None = None
    ) -> None:
        """Start orchestration ``name`` as ``instance_id`` and do not wait for it."""
        check_id(name, "orchestration name")
        check_id(instance_id, "instance id")
        if version is not None:
            _check_version(version)
        action = actions.StartDetached(
            name=name,
            instance=instance_id,
            input=self._encode(input, f"input of orchestration {name!r}"),
            version=version,
        )
        self._replay.emit(action)

    # -- composition --------------------------------------------------------------------

    def join(
        self, tasks: Iterable[Yieldable], *, return_exceptions: bool = False
    ) -> DurableFuture[list[Any]]:
        """Wait for all ``tasks``; yields their results in the given order.

        The first failure (in argument order) is raised once all finished,
        unless ``return_exceptions``: then failures appear in the list.
        """
        futures = [self._as_future(task) for task in tasks]
        return _JoinFuture(self._replay, futures, return_exceptions)

    def select(self, *tasks: Yieldable) -> DurableFuture[tuple[int, Any]]:
        """Wait for the first of ``tasks``; yields ``(index, value)`` and cancels the others.

        The winner is the task whose completion history recorded first. If it
        failed, its exception is raised at the yield.
        """
        if len(tasks) == 1 and isinstance(tasks[0], (list, tuple)):
            tasks = tuple(tasks[0])
        if not tasks:
            raise InvalidArgument("select() needs at least one task")
        return _SelectFuture(self._replay, [self._as_future(task) for task in tasks])

    select2 = select
    select3 = select

    def block(self, generator: Generator[Any, Any, T]) -> BlockFuture[T]:
        """Run a multi-step sub-generator inline as one task (no sub-orchestration).

        >>> # def charge_then_ship(): r = yield ctx.schedule_activity("Charge"); return (yield ctx.schedule_activity("Ship", r))
        >>> # index, value = yield ctx.select(ctx.block(charge_then_ship()), ctx.schedule_timer(60))
        """
        if not isinstance(generator, Generator):
            raise InvalidArgument(
                f"block() takes a generator object (call the generator function), got {generator!r}"
            )
        return BlockFuture(self._replay, generator)

    def continue_as_new(
        self, input: Any = None, *, version: str | None = None
    ) -> DurableFuture[Any]:
        """End this execution and start a fresh one with ``input``: ``return (yield ctx.continue_as_new(x))``.

        Without ``version`` the new execution runs the latest registered version.
        KV, custom status and unconsumed queue messages carry over.
        """
        if version is not None:
            _check_version(version)
        self._replay.request_continue_as_new(self._encode(input, "continue_as_new input"), version)
        return _NeverFuture(self._replay)

    # -- deterministic values --------------------------------------------------------

    def new_guid(self) -> DurableFuture[str]:
        """A random GUID, recorded so replay sees the same value: ``guid = yield ctx.new_guid()``."""
        return _ImmediateFuture(self._replay, self._replay.system_call("new_guid"))

    def utc_now(self) -> DurableFuture[datetime]:
        """The current UTC time, recorded so replay sees the same value."""
        millis = int(self._replay.system_call("utc_now"))
        return _ImmediateFuture(
            self._replay, datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
        )

    # -- custom status ------------------------------------------------------------------

    def set_custom_status(self, status: Any) -> None:
        """Publish progress for clients; a non-string value is stored as JSON text."""
        text = status if isinstance(status, str) else self._encode(status, "custom status")
        size = len(text.encode("utf-8"))
        if size > MAX_CUSTOM_STATUS_BYTES:
            raise PayloadError(
                f"custom status is {size} bytes, over the limit of {MAX_CUSTOM_STATUS_BYTES}"
            )
        self._replay.set_custom_status(text)

    def reset_custom_status(self) -> None:
        """Clear the custom status."""
        self._replay.set_custom_status(None)

    def get_custom_status(self) -> str | None:
        """The custom status as last set (it survives continue_as_new)."""
        return self._replay.custom_status

    # -- KV store -----------------------------------------------------------------------

    def set_kv_value(self, key: str, value: Any) -> None:
        """Durably set ``key`` (up to 100 keys, 16 KiB of JSON per value); clients can read it."""
        check_id(key, "KV key")
        text = self._encode(value, f"KV value {key!r}", max_bytes=MAX_KV_VALUE_BYTES)
        if key not in self._replay.kv and len(self._replay.kv) >= MAX_KV_KEYS:
            raise InvalidArgument(
                f"the KV store already holds {MAX_KV_KEYS} keys; clear some before adding {key!r}"
            )
        self._replay.set_kv(key, text)

    def get_kv_value(self, key: str) -> Any:
        """The value of ``key`` in this instance's KV store, or ``None``."""
        text = self._replay.kv.get(key)
        return None if text is None else json.loads(text)

    def get_kv_all_values(self) -> dict[str, Any]:
        """Every KV entry of this instance."""
        return {key: json.loads(text) for key, text in sorted(self._replay.kv.items())}

    def get_kv_all_keys(self) -> list[str]:
        """Every KV key, sorted."""
        return sorted(self._replay.kv)

    def get_kv_length(self) -> int:
        """How many KV keys this instance holds."""
        return len(self._replay.kv)

    def clear_kv_value(self, key: str) -> None:
        """Remove ``key`` (no error if absent)."""
        check_id(key, "KV key")
        self._replay.clear_kv(key)

    def clear_all_kv_values(self) -> None:
        """Remove every key."""
        self._replay.clear_kv(None)

    def prune_kv_values_updated_before(self, cutoff_ms: int) -> int:
        """Remove keys last set before ``cutoff_ms`` (epoch ms); returns how many."""
        stale = sorted(
            key for key, updated in self._replay.kv_updated.items() if updated < cutoff_ms
        )
        for key in stale:
            self._replay.clear_kv(key)
        return len(stale)

    def get_kv_value_from_instance(self, instance_id: str, key: str) -> ScheduledFuture[Any]:
        """Read another instance's KV value (a recorded system activity): ``v = yield ...``."""
        from durox.core.activity import SYSTEM_GET_KV_VALUE

        check_id(instance_id, "instance id")
        check_id(key, "KV key")
        request = self._encode({"instance_id": instance_id, "key": key}, "KV request")
        return self._replay.schedule(
            actions.ScheduleActivity(name=SYSTEM_GET_KV_VALUE, input=request)
        )

    # -- traces ---------------------------------------------------------------------------

    def trace_debug(self, message: str) -> None:
        """Log at DEBUG on ``durox.orchestration`` (not repeated on replay)."""
        self._replay.trace("debug", message)

    def trace_info(self, message: str) -> None:
        """Log at INFO on ``durox.orchestration`` (not repeated on replay)."""
        self._replay.trace("info", message)

    def trace_warn(self, message: str) -> None:
        """Log at WARNING on ``durox.orchestration`` (not repeated on replay)."""
        self._replay.trace("warning", message)

    def trace_error(self, message: str) -> None:
        """Log at ERROR on ``durox.orchestration`` (not repeated on replay)."""
        self._replay.trace("error", message)

    # -- helpers ----------------------------------------------------------------------------

    def _encode(self, value: Any, what: str, *, max_bytes: int | None = None) -> str:
        limit = self._replay.max_payload_bytes if max_bytes is None else max_bytes
        return codec.encode_payload(value, max_bytes=limit, what=what)

    def _as_future(self, task: Yieldable) -> DurableFuture[Any]:
        return self._replay.as_future(task)

    def __repr__(self) -> str:
        return f"<OrchestrationContext {self.instance_id!r} execution {self.execution_id}>"


def _check_version(version: str) -> None:
    from durox.core.registry import parse_version

    parse_version(version)
