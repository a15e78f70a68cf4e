"""The trio driver: ``async with Runtime(...)`` and an awaitable Client.

The runtime opens its own nursery in ``__aenter__``: dispatcher slots are
tasks in it. Provider calls (fetch, ack, a whole orchestration turn) run
through ``trio.to_thread`` with a private capacity limiter. ``async def``
activities run in the nursery; ``def`` activities on a thread. Cancellation:
``await ctx.cancelled()`` or ``ctx.is_cancelled()``; past the grace period an
``async def`` activity's cancel scope is cancelled and a ``def`` activity's
thread is abandoned (``abandon_on_cancel``; its result is dropped).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from durox.core.codec import DEFAULT_MAX_PAYLOAD_BYTES
from durox.core.options import RuntimeOptions
from durox.core.registry import Registry
from durox.drivers._activity import Cancellation
from durox.drivers._client_core import AsyncClientBase
from durox.drivers._metrics import RuntimeMetrics
from durox.drivers._steps import WAKE_ALL, ActivityJob, RuntimeCore, check_runtime_arguments
from durox.providers.base import Provider

__all__ = ["Client", "Runtime"]

T = TypeVar("T")


class Client(AsyncClientBase):  # type: ignore[misc, unused-ignore]
    """The trio client: every Client method, awaited."""

    def __init__(
        self, provider: Provider, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    ) -> None:
        super().__init__(provider, max_payload_bytes=max_payload_bytes)

    async def _to_thread(self, fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn)

    def _change_signal(self) -> _Signal:
        return _Signal()


class _Signal:
    """A :class:`~durox.drivers._client_core.ChangeSignal` in the running trio run."""

    def __init__(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._event = trio.Event()

    def set_threadsafe(self) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._set)

    def _set(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            await self._event.wait()

    def reset(self) -> None:
        if self._event.is_set():
            self._event = trio.Event()  # trio events cannot be cleared


class _Wake:
    """Wakes idle slot tasks of a pool; ``notify`` may be called from any thread.

    ``generation`` counts notifies so a notify during a fetch is never lost
    (see the threads driver's ``_Wake``).
    """

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token
        self._sleepers: collections.deque[trio.Event] = collections.deque()
        self.generation = 0

    def notify(self, count: int = WAKE_ALL) -> None:
        """Wake up to ``count`` sleeping slots."""
        # A finished run has nobody left to wake.
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._notify, count)

    def _notify(self, count: int = WAKE_ALL) -> None:
        self.generation += 1
        while count > 0 and self._sleepers:
            sleeper = self._sleepers.popleft()
            if not sleeper.is_set():
                sleeper.set()
                count -= 1

    async def wait(self, seen: int, timeout: float) -> None:
        """Sleep up to ``timeout`` unless a notify happened since ``seen`` was read."""
        if self.generation != seen or timeout <= 0:
            return
        sleeper = trio.Event()
        self._sleepers.append(sleeper)
        try:
            with trio.move_on_after(timeout):
                await sleeper.wait()
        finally:
            with contextlib.suppress(ValueError):  # already taken by a notify
                self._sleepers.remove(sleeper)


async def _waiter(cancellation: Cancellation) -> None:
    event = trio.Event()
    token = trio.lowlevel.current_trio_token()
    cancellation.add_callback(lambda: token.run_sync_soon(event.set))
    await event.wait()


class Runtime:
    """Runs orchestrations and activities as tasks of its own trio nursery.

    ``async with Runtime(provider, registry, options=...) as rt:``.
    """

    def __init__(
        self, provider: Provider, registry: Registry, *, options: RuntimeOptions | None = None
    ) -> None:
        self.options = options if options is not None else RuntimeOptions()
        check_runtime_arguments(provider, registry, self.options)
        self._provider = provider
        self._registry = registry
        self._core: RuntimeCore | None = None
        self._stopping = False
        self._nursery_manager: Any = None
        self._slots_done: trio.Event | None = None

    @property
    def runtime_id(self) -> str:
        """A short random id of this runtime."""
        return str(self._require_core().runtime_id)

    def _require_core(self) -> RuntimeCore:
        if self._core is None:
            raise RuntimeError("the Runtime is not started; use `async with Runtime(...)`")
        return self._core

    def metrics(self) -> RuntimeMetrics:
        """A frozen snapshot of this runtime's counters."""
        return self._require_core().snapshot()

    async def __aenter__(self) -> Runtime:
        if self._core is not None:
            raise RuntimeError("this Runtime was started already; create a new one")
        self._nursery_manager = trio.open_nursery()
        nursery = await self._nursery_manager.__aenter__()
        try:
            self._start(nursery)
        except BaseException as exc:
            await self._nursery_manager.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> bool:
        try:
            await self.shutdown()
        finally:
            # The body's exception is not the nursery's business: hand it an
            # empty exit so it only waits for the (stopped) slots, and the body's
            # exception propagates as itself rather than inside an ExceptionGroup.
            await self._nursery_manager.__aexit__(None, None, None)
        return False

    def _start(self, nursery: trio.Nursery) -> None:
        token = trio.lowlevel.current_trio_token()
        self._token = token
        self._nursery = nursery
        self._orch_wake = _Wake(token)
        self._work_wake = _Wake(token)
        provider, options = self._provider, self.options
        from durox.drivers.threads import Client as BlockingClient

        self._core = RuntimeCore(
            provider,
            self._registry,
            options,
            driver="trio",
            wake_orchestrator=self._orch_wake.notify,
            wake_worker=self._work_wake.notify,
            sync_client_factory=lambda: BlockingClient(
                provider, max_payload_bytes=options.max_payload_bytes
            ),
            async_client_factory=lambda: Client(
                provider, max_payload_bytes=options.max_payload_bytes
            ),
            async_waiter=_waiter,
        )
        self._limiter = trio.CapacityLimiter(
            options.orchestration_concurrency + options.worker_concurrency + 2
        )
        # Activity threads are bounded by the worker slots already; an abandoned
        # one keeps its token until it returns, so it must not eat the pool.
        self._activity_limiter = trio.CapacityLimiter(math.inf)
        self._slots_done = trio.Event()
        self._slots_scope = trio.CancelScope()
        self._core.start()
        slots = [self._orchestration_loop] * options.orchestration_concurrency
        if options.worker_tag_filter.mode != "none":
            slots += [self._worker_loop] * options.worker_concurrency
        nursery.start_soon(self._run_slots, slots)

    async def _run_slots(self, slots: list[Callable[[], Any]]) -> None:
        assert self._slots_done is not None
        try:
            with self._slots_scope:
                async with trio.open_nursery() as slot_nursery:
                    for slot in slots:
                        slot_nursery.start_soon(slot)
        finally:
            self._slots_done.set()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop fetching, let in-flight work finish (``timeout`` seconds; ``None``: the grace period), then stop.

        Activities still running at the deadline are cancelled and requeued.
        """
        core = self._core
        if core is None or self._stopping:
            return
        self._stopping = True
        self._orch_wake._notify()
        self._work_wake._notify()
        budget = (
            self.options.activity_cancellation_grace_period
            if timeout is None
            else max(timeout, 0.0)
        )
        assert self._slots_done is not None
        try:
            with trio.move_on_after(budget) as graceful:
                await self._slots_done.wait()
            if graceful.cancelled_caught:
                await trio.to_thread.run_sync(core.hard_stop)
                with trio.move_on_after(max(1.0, self.options.orchestrator_lock_timeout)):
                    await self._slots_done.wait()
                self._slots_scope.cancel()
                await self._slots_done.wait()
        finally:
            core.close()

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)

    async def _orchestration_loop(self) -> None:
        core = self._require_core()
        while not self._stopping:
            seen = self._orch_wake.generation
            delay = await self._in_thread(core.run_orchestration_once)
            if delay is not None and not self._stopping:
                await self._orch_wake.wait(seen, delay)

    async def _worker_loop(self) -> None:
        core, token = self._require_core(), self._token
        while not self._stopping:
            seen = self._work_wake.generation
            # Fetch, a def activity and its ack in one thread hop, abandoned (not
            # awaited) if the runtime gives up on the activity.
            with trio.CancelScope() as scope:

                def on_job(job: ActivityJob, scope: trio.CancelScope = scope) -> None:
                    job.set_abort_handler(lambda: token.run_sync_soon(scope.cancel))

                got = await trio.to_thread.run_sync(
                    functools.partial(core.fetch_and_run, on_job),
                    abandon_on_cancel=True,
                    limiter=self._activity_limiter,
                )
            if scope.cancelled_caught:
                continue
            if isinstance(got, float):
                if not self._stopping:
                    await self._work_wake.wait(seen, got)
            elif got is not None:
                await self._run_async(core, got)

    async def _run_async(self, core: RuntimeCore, job: ActivityJob) -> None:
        token = self._token
        outcome: tuple[bool, Any] | None = None
        with trio.CancelScope() as scope:
            job.set_abort_handler(lambda: token.run_sync_soon(scope.cancel))
            try:
                outcome = (True, await job.definition.fn(job.context, job.input))
            except Exception as exc:
                outcome = (False, exc)
        if outcome is None:
            return  # aborted: the runtime gave up on it and dropped it
        ok, payload = outcome
        if ok:
            await self._in_thread(lambda: core.complete_activity(job, payload))
        else:
            await self._in_thread(lambda: core.fail_activity(job, payload))
