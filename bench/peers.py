"""Benchmark durox against its peers, duroxide and DBOS, in one run on one machine.

Usage (normally through ``nox -s bench``, which installs the peers)::

    python bench/peers.py [--repeats 3] [--only W1,W2] [--engines durox-threads,dbos]
                          [--quick] [--output bench-results/peers.md]

The workloads follow ``shared/reference/peer-baseline.md``, so the figures can be
compared with the published baseline:

====  =======================================================  ==========================
W1    1 workflow, 200 sequential trivial activities (``x+1``)   latency per durable step
W2    500 workflows started at once, 5 sequential activities    throughput
W3    1 workflow fanning out 1000 activities, then joining      fan-out throughput
W5    a one-activity workflow, started and awaited 50 times     round-trip latency (p50)
====  =======================================================  ==========================

Engines, each on a fresh SQLite file on disk (the embedded default of all three):

- ``durox-threads`` and ``durox-asyncio``: durox's blocking and asyncio drivers with
  ``SqliteProvider``, every option at its default.
- ``duroxide``: the Rust-backed ``duroxide`` package with ``dispatcher_poll_interval_ms
  = 10`` (the baseline's "tuned" profile: with the default 100 ms its latency is 6x
  worse, and throughput is the same).
- ``dbos``: DBOS Transact with every knob at its default (its best profile in the
  baseline). Fan-out uses a registered queue, the documented DBOS pattern.

Every (engine, workload, repeat) runs in its own subprocess: the engines keep
process-wide state (DBOS is a singleton; duroxide keeps a global generator
registry), and a fresh process also makes peak RSS meaningful. Repeats are
interleaved round-robin so that drift on a noisy machine hits every engine alike.
Each child checks its workload's output and reports a failure instead of a number
when the output is wrong, an engine is missing, or the time limit runs out: a table
cell is either a measurement or says why there is none.

Ratios are ``peer ÷ durox-threads`` of the headline metric (time, lower is better),
so a ratio above 1 means durox is faster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Generator
from dataclasses import astuple, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ENGINES = ("durox-threads", "durox-asyncio", "duroxide", "dbos")
REFERENCE = "durox-threads"
PEERS = ("duroxide", "dbos")
WORKLOADS = ("W1", "W2", "W3", "W5")

#: Workload sizes: the baseline's, and a small set for a smoke run (``--quick``).
SIZES = {
    "full": {"W1": 200, "W2": 500, "W3": 1000, "W5": 50},
    "quick": {"W1": 40, "W2": 100, "W3": 200, "W5": 10},
}
#: Activities per workflow in W2.
W2_STEPS = 5
#: How long any single wait inside a child may take, in seconds.
WAIT_LIMIT = 110.0

RESULT_PREFIX = "RESULT "


# --- what a child reports ---------------------------------------------------------


@dataclass
class Measurement:
    """One run of one workload on one engine, as a child process reports it."""

    engine: str
    workload: str
    size: int
    ok: bool
    seconds: float | None = None
    #: Per-item latencies in ms (W5 only).
    latencies_ms: list[float] = field(default_factory=list)
    rss_mb: float | None = None
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> Measurement:
        return cls(**json.loads(text))


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _expect(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


# --- the workloads, written once for every engine --------------------------------


@dataclass(frozen=True)
class Start:
    """Plan step: start workflow ``name(arg)`` as ``instance_id``; the reply is a handle."""

    instance_id: str
    name: str
    arg: int


@dataclass(frozen=True)
class Finish:
    """Plan step: wait for a started workflow; the reply is its output (failures raise)."""

    handle: Any


Plan = Generator[Start | Finish, Any, None]


def workload_plan(m: Measurement) -> Plan:
    """The steps of ``m.workload``, timing them into ``m``; outputs are checked.

    Each engine drives this plan with its own start and wait calls, blocking or
    awaited (:func:`drive`, :func:`drive_async`), so the workloads exist only here.
    """
    n = m.size
    started = time.perf_counter()
    if m.workload == "W1":
        _expect((yield Finish((yield Start("w1", "chain", n)))), n, "output of w1")
    elif m.workload == "W2":
        handles = []
        for i in range(n):
            handles.append((yield Start(f"w2-{i}", "chain", W2_STEPS)))
        for i, handle in enumerate(handles):
            _expect((yield Finish(handle)), W2_STEPS, f"output of w2-{i}")
    elif m.workload == "W3":
        output = yield Finish((yield Start("w3", "fanout", n)))
        _expect(output, n * (n + 1) // 2, "output of w3")
    else:
        for i in range(n):
            t0 = time.perf_counter()
            _expect((yield Finish((yield Start(f"w5-{i}", "hello", i)))), i + 1, f"w5-{i}")
            m.latencies_ms.append((time.perf_counter() - t0) * 1000)
    m.seconds, m.ok = time.perf_counter() - started, True


def drive(
    m: Measurement, start: Callable[[str, str, int], Any], finish: Callable[[Any], Any]
) -> Measurement:
    """Run ``m``'s workload with blocking ``start``/``finish`` calls."""
    plan, reply = workload_plan(m), None
    with contextlib.suppress(StopIteration):
        while True:
            step = plan.send(reply)
            reply = finish(step.handle) if isinstance(step, Finish) else start(*astuple(step))
    return m


async def drive_async(
    m: Measurement,
    start: Callable[[str, str, int], Awaitable[Any]],
    finish: Callable[[Any], Awaitable[Any]],
) -> Measurement:
    """Run ``m``'s workload with awaited ``start``/``finish`` calls."""
    plan, reply = workload_plan(m), None
    with contextlib.suppress(StopIteration):
        while True:
            step = plan.send(reply)
            if isinstance(step, Finish):
                reply = await finish(step.handle)
            else:
                reply = await start(*astuple(step))
    return m


# --- durox (the public API of SPEC §2 only) ----------------------------------------


def _durox_registry() -> Any:
    from durox import ActivityContext, OrchestrationContext, Registry

    registry = Registry()

    @registry.activity("inc")
    def inc(ctx: ActivityContext, x: int) -> int:
        return x + 1

    @registry.orchestration("chain")
    def chain(ctx: OrchestrationContext, n: int) -> Generator[Any, Any, int]:
        x = 0
        for _ in range(n):
            x = yield ctx.schedule_activity("inc", x)
        return x

    @registry.orchestration("fanout")
    def fanout(ctx: OrchestrationContext, n: int) -> Generator[Any, Any, int]:
        tasks = [ctx.schedule_activity("inc", i) for i in range(n)]
        results = yield ctx.join(tasks)
        return sum(results)

    @registry.orchestration("hello")
    def hello(ctx: OrchestrationContext, x: int) -> Generator[Any, Any, int]:
        result: int = yield ctx.schedule_activity("inc", x)
        return result

    return registry


def _durox_output(status: Any) -> Any:
    _expect(status.status, "Completed", f"status ({getattr(status, 'details', None)})")
    return status.output


def run_durox_threads(workload: str, size: int, db: Path) -> Measurement:
    from durox.drivers.threads import Client, Runtime
    from durox.providers import SqliteProvider

    provider = SqliteProvider(str(db))
    with Runtime(provider, _durox_registry()):
        client = Client(provider)

        def start(instance_id: str, name: str, arg: int) -> str:
            client.start_orchestration(instance_id, name, arg)
            return instance_id

        def finish(instance_id: str) -> Any:
            return _durox_output(client.wait_for_orchestration(instance_id, timeout=WAIT_LIMIT))

        return drive(Measurement("durox-threads", workload, size, ok=False), start, finish)


def run_durox_asyncio(workload: str, size: int, db: Path) -> Measurement:
    import asyncio

    from durox.drivers.asyncio import Client, Runtime
    from durox.providers import SqliteProvider

    async def main() -> Measurement:
        provider = SqliteProvider(str(db))
        async with Runtime(provider, _durox_registry()):
            client = Client(provider)

            async def start(instance_id: str, name: str, arg: int) -> str:
                await client.start_orchestration(instance_id, name, arg)
                return instance_id

            async def finish(instance_id: str) -> Any:
                status = await client.wait_for_orchestration(instance_id, timeout=WAIT_LIMIT)
                return _durox_output(status)

            m = Measurement("durox-asyncio", workload, size, ok=False)
            return await drive_async(m, start, finish)

    return asyncio.run(main())


# --- duroxide (Rust runtime, generator orchestrations) ------------------------------


def run_duroxide(workload: str, size: int, db: Path) -> Measurement:
    import duroxide

    provider = duroxide.SqliteProvider.open(str(db))
    runtime = duroxide.Runtime(provider, duroxide.RuntimeOptions(dispatcher_poll_interval_ms=10))

    def inc(ctx: Any, x: int) -> int:
        return x + 1

    def chain(ctx: Any, n: int) -> Generator[Any, Any, int]:
        x = 0
        for _ in range(n):
            x = yield ctx.schedule_activity("inc", x)
        return x

    def fanout(ctx: Any, n: int) -> Generator[Any, Any, int]:
        results = yield ctx.all([ctx.schedule_activity("inc", i) for i in range(n)])
        return sum(duroxide.parse_result(results))

    def hello(ctx: Any, x: int) -> Generator[Any, Any, int]:
        result: int = yield ctx.schedule_activity("inc", x)
        return result

    runtime.register_activity("inc", inc)
    for name, orchestration in (("chain", chain), ("fanout", fanout), ("hello", hello)):
        runtime.register_orchestration(name, orchestration)

    limit_ms = int(WAIT_LIMIT * 1000)
    runtime.start()
    try:
        client = duroxide.Client(provider)

        def start(instance_id: str, name: str, arg: int) -> str:
            client.start_orchestration(instance_id, name, arg)
            return instance_id

        def finish(instance_id: str) -> Any:
            result = client.wait_for_orchestration(instance_id, limit_ms)
            _expect(result.status, "Completed", f"status of {instance_id} ({result.error})")
            return result.output

        return drive(Measurement("duroxide", workload, size, ok=False), start, finish)
    finally:
        runtime.shutdown(5000)


# --- DBOS (steps run inline in the workflow's thread) ------------------------------


def run_dbos(workload: str, size: int, db: Path) -> Measurement:
    from dbos import DBOS

    DBOS(
        config={
            "name": "peerbench",
            "system_database_url": f"sqlite:///{db}",
            "log_level": "WARNING",
        }
    )

    # Registered by call rather than as decorators: the names stay plain functions
    # for the type checker whether or not dbos ships type information.
    def inc_step(x: int) -> int:
        return x + 1

    inc = DBOS.step()(inc_step)

    def chain_workflow(n: int) -> int:
        x = 0
        for _ in range(n):
            x = inc(x)
        return x

    def fanout_workflow(n: int) -> int:
        handles = [queue.enqueue(inc, i) for i in range(n)]
        return sum(h.get_result() for h in handles)

    def hello_workflow(x: int) -> int:
        result: int = inc(x)
        return result

    chain = DBOS.workflow()(chain_workflow)
    fanout = DBOS.workflow()(fanout_workflow)
    hello = DBOS.workflow()(hello_workflow)

    DBOS.launch()
    # Queues are stored in the system database, so they exist only after launch.
    queue = DBOS.register_queue("fanout")
    workflows = {"chain": chain, "fanout": fanout, "hello": hello}
    try:
        # DBOS names its own workflow ids; the handle is what it returns.
        return drive(
            Measurement("dbos", workload, size, ok=False),
            lambda _instance_id, name, arg: DBOS.start_workflow(workflows[name], arg),
            lambda handle: handle.get_result(),
        )
    finally:
        DBOS.destroy()


RUNNERS: dict[str, Callable[[str, int, Path], Measurement]] = {
    "durox-threads": run_durox_threads,
    "durox-asyncio": run_durox_asyncio,
    "duroxide": run_duroxide,
    "dbos": run_dbos,
}


def child_main(engine: str, workload: str, size: int, db: Path) -> int:
    """Run one measurement in this process and print it as a ``RESULT`` line."""
    try:
        m = RUNNERS[engine](workload, size, db)
    except BaseException as exc:  # report anything, including KeyboardInterrupt
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" at {Path(last[0].filename).name}:{last[0].lineno}" if last else ""
        m = Measurement(engine, workload, size, ok=False, error=f"{exc!r}{where}")
    m.rss_mb = _rss_mb()
    # Peers log to stdout; the parent reads only the line with this prefix.
    print(RESULT_PREFIX + m.to_json(), flush=True)
    # Skip interpreter teardown: some engines keep worker threads that can delay
    # exit long after the measurement is done.
    sys.stdout.flush()
    os._exit(0)


# --- the parent: run everything, then tabulate -------------------------------------


def run_child(engine: str, workload: str, size: int, workdir: Path, limit: float) -> Measurement:
    db_dir = Path(tempfile.mkdtemp(prefix=f"{engine}-{workload}-", dir=workdir))
    cmd = [
        sys.executable,
        __file__,
        "--child",
        engine,
        workload,
        "--size",
        str(size),
        "--db",
        str(db_dir / "bench.db"),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        return Measurement(engine, workload, size, ok=False, error=f"no result in {limit:.0f} s")
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return Measurement.from_json(line[len(RESULT_PREFIX) :])
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return Measurement(
        engine,
        workload,
        size,
        ok=False,
        error=f"exit {done.returncode}: " + " | ".join(tail),
    )


def _fmt(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


@dataclass
class Cell:
    """All runs of one workload on one engine."""

    runs: list[Measurement]

    @property
    def good(self) -> list[Measurement]:
        return [m for m in self.runs if m.ok]

    def values(self, metric: Callable[[Measurement], float]) -> list[float]:
        return [metric(m) for m in self.good]

    def median(self, metric: Callable[[Measurement], float]) -> float | None:
        values = self.values(metric)
        return statistics.median(values) if values else None

    def errors(self) -> list[str]:
        return sorted({m.error or "failed" for m in self.runs if not m.ok})

    def show(self, metric: Callable[[Measurement], float], *, explain: bool) -> str:
        values = self.values(metric)
        if not values:
            return "n/a: " + "; ".join(e[:160] for e in self.errors()) if explain else "n/a"
        text = _fmt(statistics.median(values))
        if len(values) > 1:
            text += f" ({_fmt(min(values))}–{_fmt(max(values))})"
        if len(values) < len(self.runs):
            text += f" ⚠ {len(values)}/{len(self.runs)} ok"
        return text


def _p50(m: Measurement) -> float:
    return statistics.median(m.latencies_ms)


def _seconds(m: Measurement) -> float:
    return m.seconds or 0.0


#: Per workload: rows of (label, metric, is_headline). The headline metric is a
#: time (lower is better) and is the one the ratio columns compare.
ROWS: dict[str, list[tuple[str, Callable[[Measurement], float], bool]]] = {
    "W1": [
        ("total s", _seconds, True),
        ("ms per step", lambda m: _seconds(m) * 1000 / m.size, False),
    ],
    "W2": [
        ("total s", _seconds, True),
        ("activities/s", lambda m: m.size * W2_STEPS / _seconds(m), False),
    ],
    "W3": [
        ("total s", _seconds, True),
        ("activities/s", lambda m: m.size / _seconds(m), False),
    ],
    "W5": [
        ("p50 ms", _p50, True),
        (
            "p95 ms",
            lambda m: (
                statistics.quantiles(m.latencies_ms, n=20)[-1]
                if len(m.latencies_ms) > 1
                else m.latencies_ms[0]
            ),
            False,
        ),
    ],
}

DESCRIPTIONS = {
    "W1": "1 workflow × {n} sequential activities",
    "W2": "{n} workflows × " + str(W2_STEPS) + " sequential activities",
    "W3": "1 workflow fanning out {n} activities",
    "W5": "{n} × start+wait of a 1-activity workflow",
}


def render(
    cells: dict[tuple[str, str], Cell],
    engines: list[str],
    workloads: list[str],
    sizes: dict[str, int],
    repeats: int,
    elapsed: float,
    load: tuple[float, float],
) -> str:
    peers = [p for p in PEERS if p in engines]
    ratio_heads = [f"{p} ÷ durox" for p in peers] if REFERENCE in engines else []
    head = ["workload", "metric", *engines, *ratio_heads]
    # Only the figure from before the run says something about other work: the one
    # after includes the benchmark's own threads (DBOS alone runs hundreds in W2).
    busy = (
        " (other work was running: figures are inflated and noisier; compare ratios within this run)"
        if load[0] >= 1.0
        else ""
    )
    lines = [
        "# durox vs peers",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node()}: "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{_versions(engines)}.",
        f"Fresh SQLite file on disk per run; {repeats} repeat(s) per cell, median "
        f"(min–max); each run in its own process; the whole benchmark took {elapsed:.0f} s.",
        "Ratios compare the first metric of each workload (a time: lower is better) "
        "with durox's threads driver, so a ratio above 1 means durox is faster.",
        f"1-minute load average before the run {load[0]:.1f}{busy}; after it "
        f"{load[1]:.1f}, which includes the benchmark itself.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for w in workloads:
        label = f"**{w}** " + DESCRIPTIONS[w].format(n=sizes[w])
        for i, (metric_name, metric, headline) in enumerate(ROWS[w]):
            row = [label if i == 0 else "", metric_name]
            row += [cells[(e, w)].show(metric, explain=i == 0) for e in engines]
            if ratio_heads:
                ref = cells[(REFERENCE, w)].median(metric)
                for p in peers:
                    other = cells[(p, w)].median(metric)
                    ok = headline and ref and other is not None
                    row.append(f"{other / ref:.2f}×" if ok else "")  # type: ignore[operator]
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Peak RSS of the benchmark process, MB (median):", ""]
    lines += ["| engine | " + " | ".join(workloads) + " |", "|" + "---|" * (len(workloads) + 1)]
    for e in engines:
        rss = []
        for w in workloads:
            values = [m.rss_mb for m in cells[(e, w)].good if m.rss_mb is not None]
            rss.append(_fmt(statistics.median(values)) if values else "n/a")
        lines.append(f"| {e} | " + " | ".join(rss) + " |")
    broken = [e for e in engines if not any(cells[(e, w)].good for w in workloads)]
    for e in broken:
        first = next(err for w in workloads for err in cells[(e, w)].errors())
        lines += ["", f"**{e} produced no measurement at all.** First error: `{first}`"]
    return "\n".join(lines) + "\n"


def _versions(engines: list[str]) -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for dist in sorted({e.split("-")[0] for e in engines}):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} not installed")
    return ", ".join(parts)


def _csv(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in items if x not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell (default 3)")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="workloads, e.g. W1,W2")
    parser.add_argument("--engines", default=",".join(ENGINES), help="engines to run")
    parser.add_argument("--quick", action="store_true", help="smaller workloads (smoke run)")
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds per run")
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    parser.add_argument("--workdir", type=Path, help="where the SQLite files go (default: temp)")
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "WORKLOAD"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        return child_main(args.child[0], args.child[1], args.size, args.db)

    # Columns and rows keep a fixed order whatever order they were asked for in.
    engines = sorted(_csv(args.engines, ENGINES, "engine"), key=ENGINES.index)
    workloads = sorted(_csv(args.only, WORKLOADS, "workload"), key=WORKLOADS.index)
    sizes = SIZES["quick" if args.quick else "full"]
    cells = {(e, w): Cell([]) for e in engines for w in workloads}
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="durox-bench-", dir=args.workdir) as tmp:
        for r in range(args.repeats):
            for w in workloads:
                for e in engines:
                    m = run_child(e, w, sizes[w], Path(tmp), args.timeout)
                    cells[(e, w)].runs.append(m)
                    status = f"{m.seconds:.3f} s" if m.ok and m.seconds is not None else m.error
                    print(f"[{r + 1}/{args.repeats}] {w} {e}: {status}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    load = (load_before, os.getloadavg()[0])
    table = render(cells, engines, workloads, sizes, args.repeats, elapsed, load)
    print(table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table, encoding="utf-8")
        print(f"written to {args.output}", file=sys.stderr)
    # Missing measurements are reported in the table, and the exit status says so too.
    return 0 if all(cell.good for cell in cells.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
