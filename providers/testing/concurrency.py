"""Concurrency: many threads (and processes) on one store never share a lock, lose or duplicate a message."""

from __future__ import annotations

import collections
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from durox.core import history
from durox.core.commit import Commit, OutgoingMessage
from durox.core.errors import InstanceAlreadyExists
from durox.core.items import OrchestrationItem
from durox.core.messages import ActivityResult, ExternalRaised
from durox.core.tags import TagFilter
from durox.providers.base import Provider
from durox.providers.testing.helpers import (
    LOCK,
    ORCH,
    VERSION,
    activity,
    create,
    fetch,
    make_commit,
    poke,
    start_instance,
)
from durox.providers.testing.registry import Env, check

C = "concurrency"

GENERATIONS = 3
"""Each message processed re-enqueues its successor through the ack, this many times in all."""


def _run_threads(count: int, target: Callable[[int], None], *, timeout: float = 30.0) -> None:
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            target(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,), daemon=True) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a worker thread hung"
    if errors:
        raise errors[0]


def build_turn(item: OrchestrationItem) -> tuple[list[str], Commit]:
    """Play one turn: one event per message, each message's successor re-enqueued; return the data seen and the commit."""
    seen: list[str] = []
    outgoing: list[OutgoingMessage] = []
    events: list[history.Event] = []
    next_id = item.history_len + 1
    for message in item.messages:
        if isinstance(message, ExternalRaised):
            seen.append(message.data)
            events.append(
                history.ExternalEvent(
                    event_id=next_id, timestamp_ms=0, name=message.name, data=message.data
                )
            )
            key, generation = message.data.strip('"').rsplit("#", 1)
            if int(generation) + 1 < GENERATIONS:
                successor = ExternalRaised(
                    instance=item.instance, name="e", data=f'"{key}#{int(generation) + 1}"'
                )
                outgoing.append(OutgoingMessage(message=successor))
        else:
            events.append(
                history.OrchestrationStarted(
                    event_id=next_id, timestamp_ms=0, name=ORCH, version=VERSION, input="null"
                )
            )
        next_id += 1
    commit = make_commit(
        item.instance, execution_id=item.execution_id, events=events, orchestrator_items=outgoing
    )
    return seen, commit


def process_item(provider: Provider, item: OrchestrationItem) -> list[str]:
    """Build the item's turn (:func:`build_turn`) and ack it; return the data seen."""
    seen, commit = build_turn(item)
    provider.ack_orchestration_item(item.lock_token, commit)
    return seen


def _seed(provider: Provider, prefix: str, instances: int, per_instance: int) -> set[str]:
    """Create instances with first-generation messages; return every message data the run must see."""
    expected: set[str] = set()
    for i in range(instances):
        name = f"{prefix}{i}"
        create(provider, name)
        for k in range(per_instance):
            provider.enqueue_orchestrator(
                ExternalRaised(instance=name, name="e", data=f'"{name}/{k}#0"')
            )
            expected.update(f'"{name}/{k}#{g}"' for g in range(GENERATIONS))
    return expected


def _check_histories(provider: Provider, names: list[str]) -> None:
    for name in names:
        ids = [e.event_id for e in provider.read_history(name)]
        assert ids == list(range(1, len(ids) + 1)), f"{name}: history ids are not 1..n: {ids}"


def _hammer_round(p: Provider, prefix: str) -> None:
    expected = _seed(p, prefix, instances=12, per_instance=3)
    seen: collections.Counter[str] = collections.Counter()
    active: set[str] = set()
    guard = threading.Lock()
    deadline = time.monotonic() + 20

    def worker(_: int) -> None:
        while time.monotonic() < deadline:
            with guard:
                if sum(seen.values()) >= len(expected):
                    return
            item = p.fetch_orchestration_item(lock_timeout=LOCK)
            if item is None:
                time.sleep(0.001)
                continue
            with guard:
                assert item.instance not in active, (
                    f"{item.instance} fetched while another thread held it"
                )
                active.add(item.instance)
            data, commit = build_turn(item)
            with guard:
                active.discard(item.instance)  # just before the ack releases the lock
            p.ack_orchestration_item(item.lock_token, commit)
            with guard:
                seen.update(data)

    _run_threads(6, worker)
    duplicates = {d: n for d, n in seen.items() if n > 1}
    assert not duplicates, f"messages processed twice: {duplicates}"
    assert set(seen) == expected, f"lost messages: {sorted(expected - set(seen))[:5]}"
    _check_histories(p, [f"{prefix}{i}" for i in range(12)])


@check(C)
def threads_hammering_fetch_and_ack_lose_and_duplicate_nothing(env: Env) -> None:
    """Six threads process 12 instances (3 rounds): no instance is held twice, every message is seen exactly once."""
    for round_no in range(3):
        _hammer_round(env.provider, f"r{round_no}-i")


@check(C)
def racing_fetchers_lock_one_instance_once(env: Env) -> None:
    """Eight threads fetching at once while one instance has work: exactly one gets it (10 rounds)."""
    p = env.provider
    start_instance(p, "i1")
    for _ in range(10):
        poke(p, "i1")
        barrier = threading.Barrier(8)
        got: list[OrchestrationItem] = []

        def racer(
            _: int, barrier: threading.Barrier = barrier, got: list[OrchestrationItem] = got
        ) -> None:
            barrier.wait()
            item = p.fetch_orchestration_item(lock_timeout=LOCK)
            if item is not None:
                got.append(item)

        _run_threads(8, racer)
        assert len(got) == 1, f"{len(got)} threads locked the same instance"
        p.ack_orchestration_item(got[0].lock_token, make_commit("i1"))


@check(C)
def racing_fetchers_each_get_an_instance_while_work_exists(env: Env) -> None:
    """Eight threads fetch at once with eight instances ready: each gets a distinct one, none gets None (15 rounds)."""
    p = env.provider
    names = [f"i{n}" for n in range(8)]
    for name in names:
        start_instance(p, name)
    for _ in range(15):
        for name in names:
            poke(p, name)
        barrier = threading.Barrier(8)
        got: list[OrchestrationItem | None] = []

        def racer(
            _: int, barrier: threading.Barrier = barrier, got: list[OrchestrationItem | None] = got
        ) -> None:
            barrier.wait()
            got.append(p.fetch_orchestration_item(lock_timeout=LOCK))  # list.append is atomic

        _run_threads(8, racer)
        assert None not in got, "a fetch returned None while unlocked work existed"
        assert sorted(i.instance for i in got if i is not None) == names
        for item in got:
            assert item is not None
            p.ack_orchestration_item(item.lock_token, make_commit(item.instance))


@check(C)
def racing_creates_of_one_id_create_it_once(env: Env) -> None:
    """Eight threads create the same id: one succeeds, seven get InstanceAlreadyExists, one start is queued."""
    p = env.provider
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def creator(n: int) -> None:
        barrier.wait()
        try:
            create(p, "same", input=str(n))
            outcomes.append("created")
        except InstanceAlreadyExists:
            outcomes.append("exists")

    _run_threads(8, creator)
    assert sorted(outcomes) == ["created"] + ["exists"] * 7
    assert len(fetch(p).messages) == 1
    assert p.fetch_orchestration_item(lock_timeout=LOCK) is None


@check(C)
def concurrent_enqueues_keep_each_senders_order(env: Env) -> None:
    """Eight threads enqueue 25 messages each to one instance: one batch holds all 200, each sender's in order."""
    p = env.provider
    start_instance(p, "i1")

    def sender(n: int) -> None:
        for k in range(25):
            poke(p, "i1", data=f'"{n}:{k}"')

    _run_threads(8, sender)
    item = fetch(p)
    data = [m.data.strip('"') for m in item.messages if isinstance(m, ExternalRaised)]
    assert len(data) == 200 and len(set(data)) == 200
    for n in range(8):
        assert [int(d.split(":")[1]) for d in data if d.split(":")[0] == str(n)] == list(range(25))


@check(C)
def threads_hammering_the_worker_queue_run_each_activity_once(env: Env) -> None:
    """Six threads fetch and ack 150 activities: each is run once and its one result reaches the instance."""
    p = env.provider
    start_instance(p, "w", worker_items=[activity("w", i) for i in range(2, 152)])
    ran: collections.Counter[int] = collections.Counter()
    guard = threading.Lock()

    def worker(_: int) -> None:
        while (
            item := p.fetch_work_item(lock_timeout=LOCK, tag_filter=TagFilter.any())
        ) is not None:
            with guard:
                ran[item.message.id] += 1
            p.ack_work_item(
                item.lock_token,
                ActivityResult(instance="w", execution_id=1, id=item.message.id, result="1"),
            )

    _run_threads(6, worker)
    assert sorted(ran) == list(range(2, 152)) and set(ran.values()) == {1}
    batch = fetch(p)
    assert sorted(m.id for m in batch.messages if isinstance(m, ActivityResult)) == list(
        range(2, 152)
    )


@check(C)
def orchestration_and_worker_threads_together(env: Env) -> None:
    """Turns that schedule activities, workers that complete them, all at once: every activity result lands in history once."""
    p = env.provider
    names = [f"i{n}" for n in range(6)]
    for name in names:
        start_instance(p, name, worker_items=[activity(name, k) for k in range(2, 7)])
    done = threading.Event()
    recorded: collections.Counter[tuple[str, int]] = collections.Counter()
    guard = threading.Lock()
    deadline = time.monotonic() + 20

    def orchestrator(_: int) -> None:
        while not done.is_set() and time.monotonic() < deadline:
            item = p.fetch_orchestration_item(lock_timeout=LOCK)
            if item is None:
                time.sleep(0.001)
                continue
            next_id = item.history_len + 1
            events = []
            for m in item.messages:
                assert isinstance(m, ActivityResult)
                events.append(
                    history.ActivityCompleted(
                        event_id=next_id, timestamp_ms=0, source_id=m.id, result="1"
                    )
                )
                next_id += 1
            p.ack_orchestration_item(item.lock_token, make_commit(item.instance, events=events))
            with guard:
                recorded.update((item.instance, m.id) for m in item.messages)  # type: ignore[union-attr]
                if sum(recorded.values()) == len(names) * 5:
                    done.set()

    def worker(_: int) -> None:
        while not done.is_set() and time.monotonic() < deadline:
            item = p.fetch_work_item(lock_timeout=LOCK, tag_filter=TagFilter.default_only())
            if item is None:
                time.sleep(0.001)
                continue
            msg = item.message
            p.ack_work_item(
                item.lock_token,
                ActivityResult(instance=msg.instance, execution_id=1, id=msg.id, result="1"),
            )

    _run_threads(6, lambda n: orchestrator(n) if n < 3 else worker(n))
    assert done.is_set(), f"only {sum(recorded.values())} of {len(names) * 5} results were recorded"
    assert set(recorded.values()) == {1}
    _check_histories(p, names)
    for name in names:
        completed = [
            e.source_id for e in p.read_history(name) if isinstance(e, history.ActivityCompleted)
        ]
        assert sorted(completed) == [2, 3, 4, 5, 6]


def _run_processes(
    target: Callable[..., None], spec: Callable[[], Provider], count: int
) -> list[Any]:
    """Run ``count`` spawned processes of ``target(spec, results, idle)``; return their reports.

    Fails fast, with exit codes, if a process dies without reporting.
    """
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(spec, results, 1.0)) for _ in range(count)]
    for proc in procs:
        proc.start()
    reports: list[Any] = []
    deadline = time.monotonic() + 120
    try:
        while len(reports) < count:
            try:
                reports.append(results.get(timeout=0.5))
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise AssertionError("worker processes did not finish within 120 s") from None
                if all(not p.is_alive() for p in procs) and results.empty():
                    codes = [p.exitcode for p in procs]
                    raise AssertionError(
                        f"worker processes died without reporting (exit codes {codes})"
                    ) from None
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    errors = [detail for kind, detail in reports if kind == "error"]
    assert not errors, errors
    return [payload for _, payload in reports]


# -- several processes on one store ----------------------------------------------------


def process_worker(
    open_provider: Callable[[], Provider], results: Any, idle_seconds: float
) -> None:
    """Child-process loop: process turns until none came for ``idle_seconds``; report data seen or the error."""
    try:
        provider = open_provider()
        seen: list[str] = []
        last_work = time.monotonic()
        try:
            while time.monotonic() - last_work < idle_seconds:
                item = provider.fetch_orchestration_item(lock_timeout=LOCK)
                if item is None:
                    time.sleep(0.005)
                    continue
                seen.extend(process_item(provider, item))
                last_work = time.monotonic()
        finally:
            provider.close()
        results.put(("ok", seen))
    except BaseException as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))


@check(C, multiprocess=True)
def processes_sharing_one_store_process_each_message_once(env: Env) -> None:
    """Three processes work one store: every message (3 generations x 30) is processed exactly once, histories are gapless."""
    spec = env.factory.reopen_spec(env.provider)
    seeder = spec()
    try:
        names = [f"mp{i}" for i in range(10)]
        expected = _seed(seeder, "mp", instances=10, per_instance=3)
        reports = _run_processes(process_worker, spec, 3)
        seen = collections.Counter(d for data in reports for d in data)
        assert not {d for d, n in seen.items() if n > 1}, "a message was processed twice"
        assert set(seen) == expected, f"lost messages: {sorted(expected - set(seen))[:5]}"
        _check_histories(seeder, names)
    finally:
        seeder.close()


def process_activity_worker(
    open_provider: Callable[[], Provider], results: Any, idle_seconds: float
) -> None:
    """Child-process loop: run activities until none came for ``idle_seconds``; report their ids or the error."""
    try:
        provider = open_provider()
        ran: list[int] = []
        last_work = time.monotonic()
        try:
            while time.monotonic() - last_work < idle_seconds:
                item = provider.fetch_work_item(lock_timeout=LOCK, tag_filter=TagFilter.any())
                if item is None:
                    time.sleep(0.005)
                    continue
                msg = item.message
                provider.ack_work_item(
                    item.lock_token,
                    ActivityResult(instance=msg.instance, execution_id=1, id=msg.id, result="1"),
                )
                ran.append(msg.id)
                last_work = time.monotonic()
        finally:
            provider.close()
        results.put(("ok", ran))
    except BaseException as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))


@check(C, multiprocess=True)
def processes_sharing_one_store_run_each_activity_once(env: Env) -> None:
    """Three processes drain 90 activities from one store: each runs once and each result is queued once."""
    spec = env.factory.reopen_spec(env.provider)
    seeder = spec()
    try:
        start_instance(seeder, "w", worker_items=[activity("w", i) for i in range(2, 92)])
        reports = _run_processes(process_activity_worker, spec, 3)
        ran = collections.Counter(i for ids in reports for i in ids)
        assert sorted(ran) == list(range(2, 92)) and set(ran.values()) == {1}
        batch = seeder.fetch_orchestration_item(lock_timeout=LOCK)
        assert batch is not None
        assert sorted(m.id for m in batch.messages if isinstance(m, ActivityResult)) == list(
            range(2, 92)
        )
    finally:
        seeder.close()
