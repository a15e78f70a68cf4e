"""A driver-neutral harness, so every end-to-end test is written once.

Each test gets a ``harness`` for one combination of driver (threads, asyncio,
trio) × provider (MemoryProvider, SQLite file, PostgreSQL on a fresh schema) ×
sticky cache (on, off). PostgreSQL combinations skip when no server answers
at ``DUROX_TEST_POSTGRES_DSN``, except in CI (``CI`` set), where they fail. The
harness exposes *blocking* methods: for the async drivers it runs an event
loop on a background thread and forwards every call to it, so the async
Runtime and Client are exercised for real, on their own loop.

Activities used by these tests are ``def`` functions or ``async def``
functions that only await ``ctx.cancelled()`` — code that runs unchanged on
every driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from durox import Registry, RuntimeOptions
from durox.providers.memory import MemoryProvider
from durox.providers.sqlite import SqliteProvider

DRIVERS = ("threads", "asyncio", "trio")
PROVIDERS = ("memory", "sqlite", "postgres")
CACHES = ("cache", "nocache")

# Fast defaults: short polls and grace periods keep the matrix quick.
BASE_OPTIONS: dict[str, Any] = {
    "orchestration_concurrency": 2,
    "worker_concurrency": 4,
    "poll_interval": 0.2,
    "activity_cancellation_grace_period": 0.5,
    "unregistered_backoff_base": 0.02,
    "unregistered_backoff_max": 0.05,
}


class _Portal:
    """Runs calls on a driver's event loop (or directly, for threads)."""

    def call(self, fn: Callable[[], Any]) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _DirectPortal(_Portal):
    def call(self, fn: Callable[[], Any]) -> Any:
        return fn()


class _AsyncioPortal(_Portal):
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="asyncio-portal", daemon=True
        )
        self.thread.start()

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            result = fn()
            return (await result) if inspect.isawaitable(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class _TrioPortal(_Portal):
    def __init__(self) -> None:
        ready = threading.Event()
        self._done: trio.Event | None = None

        async def main() -> None:
            self.token = trio.lowlevel.current_trio_token()
            self._done = trio.Event()
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                ready.set()
                await self._done.wait()
                nursery.cancel_scope.cancel()

        self.thread = threading.Thread(
            target=trio.run, args=(main,), name="trio-portal", daemon=True
        )
        self.thread.start()
        ready.wait(10)

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            result = fn()
            return (await result) if inspect.isawaitable(result) else result

        return trio.from_thread.run(run, trio_token=self.token)

    def close(self) -> None:
        assert self._done is not None
        trio.from_thread.run_sync(self._done.set, trio_token=self.token)
        self.thread.join(10)


class ClientProxy:
    """A blocking view of any driver's Client."""

    def __init__(self, portal: _Portal, client: Any) -> None:
        self._portal = portal
        self.inner = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._portal.call(lambda: attr(*args, **kwargs))

        return call


@attrs.define
class RuntimeHandle:
    """A started runtime of any driver, controlled with blocking calls."""

    harness: Harness
    runtime: Any
    stopper: Callable[[float | None], None]
    stopped: bool = False

    def metrics(self) -> Any:
        return self.runtime.metrics()

    def stop(self, timeout: float | None = None) -> None:
        if not self.stopped:
            self.stopped = True
            self.stopper(timeout)

    def __enter__(self) -> RuntimeHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Harness:
    """One driver × provider × cache combination. See the module docstring."""

    def __init__(self, driver: str, provider_kind: str, cache: str, tmp_path: Path) -> None:
        self.driver = driver
        self.provider_kind = provider_kind
        self.cache = cache
        self.tmp_path = tmp_path
        self.module = __import__(f"durox.drivers.{driver}", fromlist=["Runtime", "Client"])
        self._providers: list[Any] = []
        self.pg_schema = (
            f"durox_e2e_{uuid.uuid4().hex[:8]}" if provider_kind == "postgres" else None
        )
        self.provider = self.new_provider()
        self.portal: _Portal = {
            "threads": _DirectPortal,
            "asyncio": _AsyncioPortal,
            "trio": _TrioPortal,
        }[driver]()
        self.client = self.client_for(self.provider)
        self._runtimes: list[RuntimeHandle] = []
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"Harness({self.driver}, {self.provider_kind}, {self.cache})"

    # -- providers and clients -----------------------------------------------------------

    def new_provider(self) -> Any:
        """A provider on the same store: a second SQLite connection set, or the same MemoryProvider."""
        if self.provider_kind == "memory":
            if self._providers:
                return self._providers[0]
            provider: Any = MemoryProvider()
        elif self.provider_kind == "postgres":
            from durox.providers.postgres import PostgresProvider
            from durox.providers.testing.builtin import postgres_dsn

            provider = PostgresProvider(postgres_dsn(), schema=self.pg_schema)
        else:
            provider = SqliteProvider(self.tmp_path / "durox.db", synchronous="NORMAL")
        self._providers.append(provider)
        return provider

    def client_for(self, provider: Any) -> Any:
        client = self.module.Client(provider)
        return client if self.driver == "threads" else ClientProxy(self.portal, client)

    def unique(self, prefix: str = "inst") -> str:
        return f"{prefix}-{next(self._ids)}"

    # -- runtimes ----------------------------------------------------------------------------

    def options(self, **overrides: Any) -> RuntimeOptions:
        values = dict(BASE_OPTIONS)
        if self.cache == "nocache":
            values["sticky_cache_size"] = 0
        values.update(overrides)
        return RuntimeOptions(**values)

    def runtime(
        self, registry: Registry, *, provider: Any = None, **overrides: Any
    ) -> RuntimeHandle:
        """Start a runtime of this driver; stop it with ``.stop()`` or use it as a context manager."""
        provider = provider if provider is not None else self.provider
        options = self.options(**overrides)
        runtime = self.module.Runtime(provider, registry, options=options)
        if self.driver == "threads":
            runtime.start()
            handle = RuntimeHandle(self, runtime, lambda timeout: runtime.shutdown(timeout))
        elif self.driver == "asyncio":
            self.portal.call(runtime.start)
            handle = RuntimeHandle(
                self, runtime, lambda timeout: self.portal.call(lambda: runtime.shutdown(timeout))
            )
        else:
            handle = self._start_trio_runtime(runtime)
        self._runtimes.append(handle)
        return handle

    def _start_trio_runtime(self, runtime: Any) -> RuntimeHandle:
        portal = self.portal
        assert isinstance(portal, _TrioPortal)
        holder: dict[str, Any] = {}

        async def serve(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            stop = trio.Event()
            finished = trio.Event()
            holder["stop"], holder["finished"] = stop, finished
            try:
                async with runtime:
                    task_status.started()
                    await stop.wait()
                    await runtime.shutdown(holder.get("timeout"))
            finally:
                finished.set()

        portal.call(lambda: portal.nursery.start(serve))

        def stopper(timeout: float | None) -> None:
            holder["timeout"] = timeout

            async def stop_and_wait() -> None:
                holder["stop"].set()
                await holder["finished"].wait()

            portal.call(stop_and_wait)

        return RuntimeHandle(self, runtime, stopper)

    def close(self) -> None:
        for handle in self._runtimes:
            with contextlib.suppress(Exception):
                handle.stop(0.5)
        self.portal.close()
        for provider in self._providers:
            with contextlib.suppress(Exception):
                provider.close()
        if self.pg_schema is not None:
            from durox.providers.testing.builtin import drop_postgres_schema, postgres_dsn

            drop_postgres_schema(postgres_dsn(), self.pg_schema)


@pytest.fixture(
    params=list(itertools.product(DRIVERS, PROVIDERS, CACHES)),
    ids=lambda combo: "-".join(combo),
)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    driver, provider_kind, cache = request.param
    if provider_kind == "postgres":
        _require_postgres()
    h = Harness(driver, provider_kind, cache, tmp_path)
    try:
        yield h
    finally:
        h.close()


_POSTGRES_PROBLEM: list[str | None] = []


def _require_postgres() -> None:
    """Skip (outside CI) or fail (in CI) when no PostgreSQL server answers."""
    if not _POSTGRES_PROBLEM:
        from durox.providers.testing.builtin import postgres_dsn

        try:
            import psycopg

            psycopg.connect(postgres_dsn(), connect_timeout=3).close()
            _POSTGRES_PROBLEM.append(None)
        except Exception as exc:
            _POSTGRES_PROBLEM.append(f"no PostgreSQL server at {postgres_dsn()!r}: {exc}")
    problem = _POSTGRES_PROBLEM[0]
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL must be available in CI: {problem}")
        pytest.skip(problem)


def make_harness(driver: str, provider_kind: str, cache: str, tmp_path: Path) -> Harness:
    """A harness outside the fixture (tests that compare drivers)."""
    return Harness(driver, provider_kind, cache, tmp_path)
