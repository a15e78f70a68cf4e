"""The Client, once: validation, encoding, status mapping, waits and management pass-through.

:class:`ClientCore` is the blocking client (``durox.drivers.threads.Client``
is it). The async clients of the trio and asyncio drivers subclass
:class:`AsyncClientBase`, which runs the very same methods on a worker thread
(the provider is synchronous) and the waits' polling plans on their loop, so
the three clients cannot drift apart.

Waits are written once as *plans*: generators that yield either a
zero-argument callable to run (a provider read, run on a thread by async
clients) or a :class:`Sleep`, and return the final value. A blocking runner
and an async runner drive them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from typing import Any, Protocol, TypeVar, Union, cast

import attrs

from durox.core import codec, history
from durox.core.codec import DEFAULT_MAX_PAYLOAD_BYTES
from durox.core.commit import ExecutionStatus
from durox.core.errors import (
    ErrorDetails,
    InstanceNotFound,
    InvalidArgument,
    ProviderError,
    WaitTimeout,
)
from durox.core.limits import check_id
from durox.core.messages import CancelInstance, ExternalRaised, QueueMessage, StartOrchestration
from durox.core.registry import parse_version
from durox.core.status import Completed, Failed, NotFound, OrchestrationStatus, Running
from durox.drivers import _hub
from durox.providers.base import (
    DeleteResult,
    ExecutionInfo,
    InstanceInfo,
    InstanceStatus,
    OrchestrationStats,
    Provider,
    ProviderAdmin,
    PruneResult,
    QueueDepths,
    SystemMetrics,
)

__all__ = [
    "AsyncClientBase",
    "ChangeSignal",
    "ClientCore",
    "Sleep",
    "run_plan",
    "status_from_provider",
]

T = TypeVar("T")

_FIRST_POLL = 0.005
_MAX_POLL = 0.1
_STATUSES = ("Running", "Completed", "Failed", "ContinuedAsNew")


@attrs.frozen
class Sleep:
    """A plan step: wait this many seconds."""

    seconds: float


Step = Union[Callable[[], Any], Sleep]
Plan = Generator[Step, Any, T]


class _ChangeWatch:
    """Calls ``on_change`` at the next in-process turn of ``instance`` on ``provider``.

    Armed *before* each read of a wait, so a turn committed between the read
    and the following sleep still ends that sleep at once.
    """

    def __init__(self, provider: object, instance: str, on_change: Callable[[], object]) -> None:
        self._provider = provider
        self._instance = instance
        self._on_change = on_change
        self._cancel = _hub.on_next_change(provider, instance, on_change)

    def rearm(self) -> None:
        """Listen for the next turn again (after a sleep ended)."""
        self._cancel()
        self._cancel = _hub.on_next_change(self._provider, self._instance, self._on_change)

    def close(self) -> None:
        """Stop listening."""
        self._cancel()


def run_plan(plan: Plan[T], provider: object = None, instance: str = "") -> T:
    """Drive a plan with blocking calls.

    Sleeps end early when a runtime in this process commits a turn of
    ``instance`` on ``provider``.
    """
    changed = threading.Event()
    watch = _ChangeWatch(provider, instance, changed.set)
    value: Any = None
    try:
        while True:
            try:
                step = plan.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            if isinstance(step, Sleep):
                changed.wait(step.seconds)
                changed.clear()
                watch.rearm()
                value = None
            else:
                value = step()
    finally:
        watch.close()


class ChangeSignal(Protocol):
    """How an async client waits, on its loop, for a change another thread reports."""

    def set_threadsafe(self) -> None:
        """Report a change (called from any thread)."""

    async def wait(self, seconds: float) -> None:
        """Return after a change or ``seconds``, whichever comes first."""

    def reset(self) -> None:
        """Forget reported changes."""


def status_from_provider(record: InstanceStatus | None) -> OrchestrationStatus:
    """Map the provider's status record to a client status object, decoding the output."""
    if record is None:
        return NotFound()
    custom_status, version = record.custom_status, record.custom_status_version
    if record.status == "Completed":
        output = codec.decode_payload(record.output) if record.output is not None else None
        return Completed(output, custom_status=custom_status, custom_status_version=version)
    if record.status == "Failed":
        details = record.error or ErrorDetails(
            category="infrastructure",
            kind="unknown",
            message=record.output or "failed (no details stored)",
        )
        return Failed(details, custom_status=custom_status, custom_status_version=version)
    # ContinuedAsNew is the instant between two executions: the instance still runs.
    return Running(custom_status=custom_status, custom_status_version=version)


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise InvalidArgument(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    return float(timeout)


def _poll_plan(
    read: Callable[[], T], done: Callable[[T], bool], timeout: float | None, what: Callable[[], str]
) -> Plan[T]:
    """Read until ``done``; polls back off from 5 ms to 100 ms."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = _FIRST_POLL
    while True:
        value: T = yield read
        if done(value):
            return value
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(f"{what()} after {timeout:g}s")
            delay = min(delay, remaining)
        yield Sleep(delay)
        delay = min(delay * 2, _MAX_POLL)


class ClientCore:
    """Start, signal, inspect and manage orchestrations through a provider (blocking API).

    Needs no running runtime: it only reads and writes the provider. A client
    and a runtime in one process that share the provider object wake each
    other directly, so a start is picked up at once.
    """

    def __init__(
        self, provider: Provider, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    ) -> None:
        if not isinstance(provider, Provider):
            raise InvalidArgument(f"Client needs a durox provider, got {type(provider).__name__}")
        self.provider = provider
        self.max_payload_bytes = max_payload_bytes

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.provider!r})"

    # -- starting and signalling -------------------------------------------------------------

    def start_orchestration(
        self, instance_id: str, name: str, input: object = None, *, version: str | None = None
    ) -> None:
        """Create ``instance_id`` running orchestration ``name`` with ``input``.

        Raises :class:`~durox.errors.InstanceAlreadyExists` if the id is taken,
        :class:`~durox.errors.InvalidArgument` for a bad id, name or version,
        :class:`~durox.errors.PayloadError` if the input is not JSON-serializable
        or too large. The latest registered version runs unless ``version`` pins one.
        """
        check_id(instance_id, "instance id")
        check_id(name, "orchestration name")
        if version is not None:
            parse_version(version)
        text = codec.encode_payload(
            input, max_bytes=self.max_payload_bytes, what=f"input of {instance_id!r}"
        )
        self.provider.create_instance(
            StartOrchestration(instance=instance_id, name=name, input=text, version=version)
        )
        _hub.work_enqueued(self.provider, orchestrator=1)

    def raise_event(self, instance_id: str, event_name: str, data: object = None) -> None:
        """Deliver external event ``event_name`` to ``instance_id`` (the Nth wait gets the Nth raise).

        An event no ``schedule_wait`` is subscribed to when it arrives is
        dropped (with a warning in the orchestration log).
        """
        check_id(instance_id, "instance id")
        check_id(event_name, "event name")
        text = codec.encode_payload(
            data, max_bytes=self.max_payload_bytes, what=f"event {event_name!r}"
        )
        self._enqueue(ExternalRaised(instance=instance_id, name=event_name, data=text))

    def enqueue_event(self, instance_id: str, queue: str, data: object = None) -> None:
        """Put ``data`` on ``instance_id``'s event queue ``queue`` (FIFO; kept until dequeued)."""
        check_id(instance_id, "instance id")
        check_id(queue, "queue name")
        text = codec.encode_payload(
            data, max_bytes=self.max_payload_bytes, what=f"message for queue {queue!r}"
        )
        self._enqueue(QueueMessage(instance=instance_id, name=queue, data=text))

    def cancel_instance(self, instance_id: str, reason: str = "cancelled by client") -> None:
        """Cancel ``instance_id``: it fails with kind ``cancelled``; children and activities are cancelled too."""
        check_id(instance_id, "instance id")
        if not isinstance(reason, str):
            raise InvalidArgument(f"reason must be a string, got {type(reason).__name__}")
        self._enqueue(CancelInstance(instance=instance_id, reason=reason))

    def _enqueue(self, message: ExternalRaised | QueueMessage | CancelInstance) -> None:
        self.provider.enqueue_orchestrator(message)  # InstanceNotFound for an unknown id
        _hub.work_enqueued(self.provider, orchestrator=1)

    # -- status ----------------------------------------------------------------------------

    def get_orchestration_status(self, instance_id: str) -> OrchestrationStatus:
        """``Running``, ``Completed(output)``, ``Failed(details)`` or ``NotFound``."""
        check_id(instance_id, "instance id")
        return status_from_provider(self.provider.get_instance_status(instance_id))

    def _existing_status(self, instance_id: str) -> OrchestrationStatus:
        """The status of an instance that must exist (``InstanceNotFound`` otherwise)."""
        status = self.get_orchestration_status(instance_id)
        if isinstance(status, NotFound):
            raise InstanceNotFound(f"instance {instance_id!r} does not exist")
        return status

    def plan_wait_for_orchestration(
        self, instance_id: str, timeout: float | None
    ) -> Plan[OrchestrationStatus]:
        """Plan of :meth:`wait_for_orchestration`."""
        check_id(instance_id, "instance id")
        timeout = _check_timeout(timeout)

        def read() -> OrchestrationStatus:
            return self._existing_status(instance_id)

        return _poll_plan(
            read,
            lambda s: s.is_terminal,
            timeout,
            lambda: f"instance {instance_id!r} did not finish",
        )

    def wait_for_orchestration(
        self, instance_id: str, timeout: float | None = None
    ) -> OrchestrationStatus:
        """Block until ``instance_id`` completes or fails and return that status.

        Raises :class:`~durox.errors.WaitTimeout` after ``timeout`` seconds
        (``None``: wait forever), :class:`~durox.errors.InstanceNotFound` if no
        such instance exists.
        """
        return run_plan(
            self.plan_wait_for_orchestration(instance_id, timeout), self.provider, instance_id
        )

    def plan_wait_for_status_change(
        self, instance_id: str, last_seen_version: int, timeout: float | None
    ) -> Plan[OrchestrationStatus]:
        """Plan of :meth:`wait_for_status_change`."""
        check_id(instance_id, "instance id")
        if isinstance(last_seen_version, bool) or not isinstance(last_seen_version, int):
            raise InvalidArgument(f"last_seen_version must be an int, got {last_seen_version!r}")
        timeout = _check_timeout(timeout)

        def read() -> OrchestrationStatus:
            return self._existing_status(instance_id)

        return _poll_plan(
            read,
            lambda s: s.is_terminal or s.custom_status_version > last_seen_version,
            timeout,
            lambda: (
                f"custom status of {instance_id!r} did not change past version {last_seen_version}"
            ),
        )

    def wait_for_status_change(
        self, instance_id: str, last_seen_version: int, timeout: float | None = None
    ) -> OrchestrationStatus:
        """Block until the custom status version exceeds ``last_seen_version`` (or the instance ends).

        Returns the status then; :class:`~durox.errors.WaitTimeout` when time runs out.
        """
        return run_plan(
            self.plan_wait_for_status_change(instance_id, last_seen_version, timeout),
            self.provider,
            instance_id,
        )

    # -- KV ------------------------------------------------------------------------------------

    def get_kv_value(self, instance_id: str, key: str) -> Any:
        """The latest value of KV ``key`` of ``instance_id`` (decoded), or ``None``."""
        check_id(instance_id, "instance id")
        check_id(key, "KV key")
        text = self.provider.get_kv_value(instance_id, key)
        return None if text is None else codec.decode_payload(text)

    def get_kv_all_values(self, instance_id: str) -> dict[str, Any]:
        """Every KV value of ``instance_id``, decoded (``{}`` if none)."""
        check_id(instance_id, "instance id")
        return {
            key: codec.decode_payload(text)
            for key, text in self.provider.get_kv_all_values(instance_id).items()
        }

    def plan_wait_for_kv_value(
        self, instance_id: str, key: str, timeout: float | None
    ) -> Plan[Any]:
        """Plan of :meth:`wait_for_kv_value`."""
        check_id(instance_id, "instance id")
        check_id(key, "KV key")
        timeout = _check_timeout(timeout)

        def read() -> str | None:
            text: str | None = self.provider.get_kv_value(instance_id, key)
            return text

        def plan() -> Plan[Any]:
            text = yield from _poll_plan(
                read,
                lambda t: t is not None,
                timeout,
                lambda: f"KV key {key!r} of {instance_id!r} was not set",
            )
            assert text is not None  # the poll only stops on a value
            return codec.decode_payload(text)

        return plan()

    def wait_for_kv_value(self, instance_id: str, key: str, timeout: float | None = None) -> Any:
        """Block until KV ``key`` of ``instance_id`` has a value; return it (decoded)."""
        return run_plan(
            self.plan_wait_for_kv_value(instance_id, key, timeout), self.provider, instance_id
        )

    # -- management ---------------------------------------------------------------------------

    def has_management_capability(self) -> bool:
        """True when the provider supports listing, history, metrics, deletion and pruning."""
        return isinstance(self.provider, ProviderAdmin)

    def _admin(self) -> ProviderAdmin:
        if not isinstance(self.provider, ProviderAdmin):
            raise ProviderError(
                f"provider {type(self.provider).__name__} has no management capability (ProviderAdmin)"
            )
        return self.provider

    def list_all_instances(self) -> list[str]:
        """Every instance id, newest first."""
        return list(self._admin().list_instances())

    def list_instances_by_status(self, status: str) -> list[str]:
        """Instance ids whose current execution has ``status`` ("Running", "Completed", "Failed")."""
        if status not in _STATUSES:
            raise InvalidArgument(f"status must be one of {', '.join(_STATUSES)}; got {status!r}")
        return list(self._admin().list_instances(cast(ExecutionStatus, status)))

    def get_instance_info(self, instance_id: str) -> InstanceInfo:
        """Metadata of an instance; :class:`~durox.errors.InstanceNotFound` if unknown."""
        check_id(instance_id, "instance id")
        return self._admin().get_instance_info(instance_id)

    def list_executions(self, instance_id: str) -> list[int]:
        """Execution ids of an instance, oldest first."""
        check_id(instance_id, "instance id")
        return list(self._admin().list_executions(instance_id))

    def get_execution_info(self, instance_id: str, execution_id: int) -> ExecutionInfo:
        """Metadata of one execution."""
        check_id(instance_id, "instance id")
        _check_execution_id(execution_id)
        return self._admin().get_execution_info(instance_id, execution_id)

    def read_execution_history(
        self, instance_id: str, execution_id: int | None = None
    ) -> list[history.Event]:
        """History events of one execution (the current one by default)."""
        check_id(instance_id, "instance id")
        if execution_id is None:
            if self.provider.get_instance_status(instance_id) is None:
                raise InstanceNotFound(f"instance {instance_id!r} does not exist")
            return list(self.provider.read_history(instance_id))
        _check_execution_id(execution_id)
        if isinstance(self.provider, ProviderAdmin):
            self.provider.get_execution_info(
                instance_id, execution_id
            )  # InstanceNotFound if unknown
        elif self.provider.get_instance_status(instance_id) is None:
            raise InstanceNotFound(f"instance {instance_id!r} does not exist")
        return list(self.provider.read_history(instance_id, execution_id))

    def get_system_metrics(self) -> SystemMetrics:
        """Counts of instances and executions by status."""
        return self._admin().get_system_metrics()

    def get_queue_depths(self) -> QueueDepths:
        """Messages waiting in the orchestrator and worker queues."""
        return self._admin().get_queue_depths()

    def get_orchestration_stats(self, instance_id: str) -> OrchestrationStats:
        """History and KV size figures of an instance; ``InstanceNotFound`` if unknown."""
        check_id(instance_id, "instance id")
        stats = self._admin().get_orchestration_stats(instance_id)
        if stats is None:
            raise InstanceNotFound(f"instance {instance_id!r} does not exist")
        return stats

    def delete_instance(self, instance_id: str, *, force: bool = False) -> DeleteResult:
        """Delete an instance with its sub-orchestrations; a running one only with ``force=True``."""
        check_id(instance_id, "instance id")
        return self._admin().delete_instance(instance_id, force=force)

    def prune_executions(
        self,
        instance_id: str,
        *,
        keep_last: int | None = None,
        completed_before_ms: int | None = None,
    ) -> PruneResult:
        """Delete old finished executions of an instance (never the current one; KV is kept)."""
        check_id(instance_id, "instance id")
        if keep_last is not None and (
            isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1
        ):
            raise InvalidArgument(f"keep_last must be a whole number >= 1, got {keep_last!r}")
        if completed_before_ms is not None and (
            isinstance(completed_before_ms, bool) or not isinstance(completed_before_ms, int)
        ):
            raise InvalidArgument(
                f"completed_before_ms must be epoch milliseconds (int), got {completed_before_ms!r}"
            )
        return self._admin().prune_executions(
            instance_id, keep_last=keep_last, completed_before_ms=completed_before_ms
        )


def _check_execution_id(execution_id: object) -> None:
    if isinstance(execution_id, bool) or not isinstance(execution_id, int) or execution_id < 1:
        raise InvalidArgument(f"execution_id must be a whole number >= 1, got {execution_id!r}")


class AsyncClientBase:
    """The async Client: every :class:`ClientCore` method, awaited. Subclasses pick the loop.

    Provider calls run on a worker thread; waits poll on the loop.
    """

    def __init__(
        self, provider: Provider, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    ) -> None:
        self._core = ClientCore(provider, max_payload_bytes=max_payload_bytes)

    @property
    def provider(self) -> Provider:
        """The provider this client talks to."""
        return self._core.provider

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._core.provider!r})"

    # Subclasses provide these two.
    async def _to_thread(self, fn: Callable[[], T]) -> T:
        raise NotImplementedError

    def _change_signal(self) -> ChangeSignal:
        """A signal bound to the running loop."""
        raise NotImplementedError

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._to_thread(lambda: fn(*args, **kwargs))

    async def _drive(self, plan: Plan[T], instance: str) -> T:
        """Run a wait plan: reads on a thread, sleeps on the loop (ended by local turns)."""
        signal = self._change_signal()
        watch = _ChangeWatch(self.provider, instance, signal.set_threadsafe)
        value: Any = None
        try:
            while True:
                try:
                    step = plan.send(value)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                if isinstance(step, Sleep):
                    await signal.wait(step.seconds)
                    signal.reset()
                    watch.rearm()
                    value = None
                else:
                    value = await self._to_thread(step)
        finally:
            watch.close()

    async def start_orchestration(
        self, instance_id: str, name: str, input: object = None, *, version: str | None = None
    ) -> None:
        """See :meth:`ClientCore.start_orchestration`."""
        await self._call(self._core.start_orchestration, instance_id, name, input, version=version)

    async def raise_event(self, instance_id: str, event_name: str, data: object = None) -> None:
        """See :meth:`ClientCore.raise_event`."""
        await self._call(self._core.raise_event, instance_id, event_name, data)

    async def enqueue_event(self, instance_id: str, queue: str, data: object = None) -> None:
        """See :meth:`ClientCore.enqueue_event`."""
        await self._call(self._core.enqueue_event, instance_id, queue, data)

    async def cancel_instance(self, instance_id: str, reason: str = "cancelled by client") -> None:
        """See :meth:`ClientCore.cancel_instance`."""
        await self._call(self._core.cancel_instance, instance_id, reason)

    async def get_orchestration_status(self, instance_id: str) -> OrchestrationStatus:
        """See :meth:`ClientCore.get_orchestration_status`."""
        return await self._call(self._core.get_orchestration_status, instance_id)

    async def wait_for_orchestration(
        self, instance_id: str, timeout: float | None = None
    ) -> OrchestrationStatus:
        """See :meth:`ClientCore.wait_for_orchestration`."""
        return await self._drive(
            self._core.plan_wait_for_orchestration(instance_id, timeout), instance_id
        )

    async def wait_for_status_change(
        self, instance_id: str, last_seen_version: int, timeout: float | None = None
    ) -> OrchestrationStatus:
        """See :meth:`ClientCore.wait_for_status_change`."""
        return await self._drive(
            self._core.plan_wait_for_status_change(instance_id, last_seen_version, timeout),
            instance_id,
        )

    async def get_kv_value(self, instance_id: str, key: str) -> Any:
        """See :meth:`ClientCore.get_kv_value`."""
        return await self._call(self._core.get_kv_value, instance_id, key)

    async def get_kv_all_values(self, instance_id: str) -> dict[str, Any]:
        """See :meth:`ClientCore.get_kv_all_values`."""
        return await self._call(self._core.get_kv_all_values, instance_id)

    async def wait_for_kv_value(
        self, instance_id: str, key: str, timeout: float | None = None
    ) -> Any:
        """See :meth:`ClientCore.wait_for_kv_value`."""
        return await self._drive(
            self._core.plan_wait_for_kv_value(instance_id, key, timeout), instance_id
        )

    def has_management_capability(self) -> bool:
        """See :meth:`ClientCore.has_management_capability` (no I/O, so not async)."""
        return self._core.has_management_capability()

    async def list_all_instances(self) -> list[str]:
        """See :meth:`ClientCore.list_all_instances`."""
        return await self._call(self._core.list_all_instances)

    async def list_instances_by_status(self, status: str) -> list[str]:
        """See :meth:`ClientCore.list_instances_by_status`."""
        return await self._call(self._core.list_instances_by_status, status)

    async def get_instance_info(self, instance_id: str) -> InstanceInfo:
        """See :meth:`ClientCore.get_instance_info`."""
        return await self._call(self._core.get_instance_info, instance_id)

    async def list_executions(self, instance_id: str) -> list[int]:
        """See :meth:`ClientCore.list_executions`."""
        return await self._call(self._core.list_executions, instance_id)

    async def get_execution_info(self, instance_id: str, execution_id: int) -> ExecutionInfo:
        """See :meth:`ClientCore.get_execution_info`."""
        return await self._call(self._core.get_execution_info, instance_id, execution_id)

    async def read_execution_history(
        self, instance_id: str, execution_id: int | None = None
    ) -> list[history.Event]:
        """See :meth:`ClientCore.read_execution_history`."""
        return await self._call(self._core.read_execution_history, instance_id, execution_id)

    async def get_system_metrics(self) -> SystemMetrics:
        """See :meth:`ClientCore.get_system_metrics`."""
        return await self._call(self._core.get_system_metrics)

    async def get_queue_depths(self) -> QueueDepths:
        """See :meth:`ClientCore.get_queue_depths`."""
        return await self._call(self._core.get_queue_depths)

    async def get_orchestration_stats(self, instance_id: str) -> OrchestrationStats:
        """See :meth:`ClientCore.get_orchestration_stats`."""
        return await self._call(self._core.get_orchestration_stats, instance_id)

    async def delete_instance(self, instance_id: str, *, force: bool = False) -> DeleteResult:
        """See :meth:`ClientCore.delete_instance`."""
        return await self._call(self._core.delete_instance, instance_id, force=force)

    async def prune_executions(
        self,
        instance_id: str,
        *,
        keep_last: int | None = None,
        completed_before_ms: int | None = None,
    ) -> PruneResult:
        """See :meth:`ClientCore.prune_executions`."""
        return await self._call(
            self._core.prune_executions,
            instance_id,
            keep_last=keep_last,
            completed_before_ms=completed_before_ms,
        )
