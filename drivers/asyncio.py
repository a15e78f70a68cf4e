"""The asyncio driver: ``async with Runtime(...)`` and an awaitable Client.

Dispatcher slots are tasks on the running loop. Provider calls (fetch, ack,
a whole orchestration turn) run on a small private thread pool so they never
block the loop. ``async def`` activities run on the loop; ``def`` activities
run on a thread of their own. Cancellation: ``await ctx.cancelled()`` or
``ctx.is_cancelled()``; past the grace period an ``async def`` activity's task
is cancelled, and a ``def`` activity's thread is abandoned (its result dropped).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
from collections.abc import Callable
from typing import Any, TypeVar

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
    """The asyncio client: every Client method, awaited."""

    def __init__(
        self, provider: Provider, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    ) -> None:
        super().__init__(provider, max_payload_bytes=max_payload_bytes)

    async def _to_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, fn)

    def _change_signal(self) -> _Signal:
        return _Signal()


class _Signal:
    """A :class:`~durox.drivers._client_core.ChangeSignal` on the running asyncio loop."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def set_threadsafe(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)

    def reset(self) -> None:
        self._event.clear()


class _Wake:
    """Wakes idle slot tasks of a pool; ``notify`` may be called from any thread.

    ``generation`` counts notifies so a notify during a fetch is never lost
    (see the threads driver's ``_Wake``).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._sleepers: collections.deque[asyncio.Future[None]] = collections.deque()
        self.generation = 0

    def notify(self, count: int = WAKE_ALL) -> None:
        """Wake up to ``count`` sleeping slots."""
        # A closed loop has nobody left to wake.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._notify, count)

    def _notify(self, count: int) -> None:
        self.generation += 1
        while count > 0 and self._sleepers:
            sleeper = self._sleepers.popleft()
            if not sleeper.done():
                sleeper.set_result(None)
                count -= 1

    async def wait(self, seen: int, timeout: float) -> None:
        """Sleep up to ``timeout`` unless a notify happened since ``seen`` was read."""
        if self.generation != seen or timeout <= 0:
            return
        sleeper: asyncio.Future[None] = self._loop.create_future()
        self._sleepers.append(sleeper)
        timer = self._loop.call_later(timeout, _resolve, sleeper)
        try:
            await sleeper
        finally:
            timer.cancel()
            with contextlib.suppress(ValueError):  # already taken by a notify
                self._sleepers.remove(sleeper)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def wait_cancelled(cancellation: Cancellation) -> None:
    """Wait on the running asyncio loop until ``cancellation`` fires (from any thread)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    def fire() -> None:
        loop.call_soon_threadsafe(resolve)

    cancellation.add_callback(fire)
    await future


class _Hop:
    """One worker hop on the activity pool; its job's abort handler stops waiting for it.

    A ``def`` activity that ignores cancellation keeps its pool thread, so
    the runtime switches later activities to a fresh pool.
    """

    def __init__(self, runtime: Runtime, executor: concurrent.futures.ThreadPoolExecutor) -> None:
        self.runtime = runtime
        self.executor = executor
        self.future: asyncio.Future[Any] | None = None
        self.aborted = False

    async def run(self, core: RuntimeCore) -> ActivityJob | float | None:
        loop = self.runtime._loop
        self.future = loop.run_in_executor(
            self.executor, functools.partial(core.fetch_and_run, self._on_job)
        )
        result: ActivityJob | float | None = await self.future
        return result

    def _on_job(self, job: ActivityJob) -> None:
        # Called on the pool thread before the function runs.
        job.set_abort_handler(lambda: self.runtime._loop.call_soon_threadsafe(self._abort))

    def _abort(self) -> None:
        self.aborted = True
        self.runtime._abandon_activity_thread(self.executor)
        if self.future is not None:
            self.future.cancel()


class Runtime:
    """Runs orchestrations and activities as tasks of the running asyncio loop.

    ``async with Runtime(provider, registry, options=...) as rt:``; or
    ``await rt.start()`` and ``await rt.shutdown()``.
    """

    def __init__(
        self, provider: Provider, registry: Registry, *, options: RuntimeOptions | None = None
    ) -> None:
        self.options = options if options is not None else RuntimeOptions()
        check_runtime_arguments(provider, registry, self.options)
        self._provider = provider
        self._registry = registry
        self._core: RuntimeCore | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

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
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def start(self) -> None:
        """Start the dispatcher tasks on the running loop."""
        if self._core is not None:
            raise RuntimeError("this Runtime was started already; create a new one")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._orch_wake = _Wake(loop)
        self._work_wake = _Wake(loop)
        provider, options = self._provider, self.options
        from durox.drivers.threads import Client as BlockingClient

        self._core = RuntimeCore(
            provider,
            self._registry,
            options,
            driver="asyncio",
            wake_orchestrator=self._orch_wake.notify,
            wake_worker=self._work_wake.notify,
            sync_client_factory=lambda: BlockingClient(
                provider, max_payload_bytes=options.max_payload_bytes
            ),
            async_client_factory=lambda: Client(
                provider, max_payload_bytes=options.max_payload_bytes
            ),
            async_waiter=wait_cancelled,
        )
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=options.orchestration_concurrency + options.worker_concurrency + 2,
            thread_name_prefix=f"durox-{self._core.runtime_id}",
        )
        self._activity_executor = self._new_activity_executor()
        self._core.start()
        for _ in range(options.orchestration_concurrency):
            self._tasks.append(loop.create_task(self._orchestration_loop()))
        if options.worker_tag_filter.mode != "none":
            for _ in range(options.worker_concurrency):
                self._tasks.append(loop.create_task(self._worker_loop()))

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop fetching, let in-flight work finish (``timeout`` seconds; ``None``: the grace period), then stop.

        Activities still running at the deadline are cancelled and requeued.
        """
        core = self._core
        if core is None or self._stopping:
            return
        self._stopping = True
        self._orch_wake.notify()
        self._work_wake.notify()
        budget = (
            self.options.activity_cancellation_grace_period
            if timeout is None
            else max(timeout, 0.0)
        )
        try:
            if self._tasks:
                _, pending = await asyncio.wait(self._tasks, timeout=budget)
                if pending:
                    core.hard_stop()
                    _, pending = await asyncio.wait(
                        pending, timeout=max(1.0, self.options.orchestrator_lock_timeout)
                    )
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending)
            for task in self._tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            core.close()
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._activity_executor.shutdown(wait=False, cancel_futures=True)

    def _new_activity_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(
            max_workers=self.options.worker_concurrency,
            thread_name_prefix=f"durox-activity-{self._require_core().runtime_id}",
        )

    def _abandon_activity_thread(self, executor: concurrent.futures.ThreadPoolExecutor) -> None:
        # A def activity ignored cancellation: its thread stays with it, so later
        # activities get a fresh pool instead of one with a slot fewer.
        if self._activity_executor is executor and not self._stopping:
            self._activity_executor = self._new_activity_executor()
            executor.shutdown(wait=False)

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await self._loop.run_in_executor(self._executor, fn)

    async def _orchestration_loop(self) -> None:
        core = self._require_core()
        while not self._stopping:
            seen = self._orch_wake.generation
            delay = await self._in_thread(core.run_orchestration_once)
            if delay is not None and not self._stopping:
                await self._orch_wake.wait(seen, delay)

    async def _worker_loop(self) -> None:
        core = self._require_core()
        while not self._stopping:
            seen = self._work_wake.generation
            # Fetch, a def activity and its ack in one pool thread (one hop).
            hop = _Hop(self, self._activity_executor)
            try:
                got = await hop.run(core)
            except asyncio.CancelledError:
                if not hop.aborted:
                    raise  # this slot itself is being cancelled
                continue  # the runtime gave up on the activity; the thread stays with it
            if isinstance(got, float):
                if not self._stopping:
                    await self._work_wake.wait(seen, got)
            elif got is not None:
                await self._run_async(core, got)

    async def _run_async(self, core: RuntimeCore, job: ActivityJob) -> None:
        loop = self._loop
        task = asyncio.ensure_future(job.definition.fn(job.context, job.input))
        job.set_abort_handler(lambda: loop.call_soon_threadsafe(task.cancel))
        try:
            result = await task
        except asyncio.CancelledError:
            if job.aborted:
                return  # the runtime gave up on it; the core already dropped it
            raise
        except Exception as exc:
            error = exc
            await self._in_thread(lambda: core.fail_activity(job, error))
        else:
            await self._in_thread(lambda: core.complete_activity(job, result))
