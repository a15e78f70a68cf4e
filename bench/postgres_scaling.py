"""How durox on PostgreSQL scales out: orchestrations/s with 1 and 3 worker processes.

Usage::

    python bench/postgres_scaling.py [--dsn postgresql://...] [--orchestrations 300]
                                     [--width 3] [--workers 1,3] [--repeats 1]

Each run uses a fresh schema. The worker processes are ``tests/postgres/worker.py``
(a threads-driver ``Runtime`` on ``PostgresProvider``, 4 orchestration and 8
worker slots each); this process is the client. The workload is the ``Mixed``
orchestration: ``width`` activities fanned out, then ``width`` sequential ones,
so each orchestration is ``2 * width`` activities and ``width + 2`` turns. With
``--activity-ms N`` every activity waits N ms instead (``Naps``), as activities
calling other services do; then throughput is bounded by worker slots, and
adding processes adds slots. The
clock runs from the first start to the last completion, and every output is
checked. It prints one table row per worker count. Not a test: it asserts
nothing about speed, and the figures depend on the machine (and on the disk,
since every commit waits for the WAL flush).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from durox import Completed
from durox.drivers.threads import Client
from durox.providers.postgres import PostgresProvider

WORKER = Path(__file__).resolve().parent.parent / "tests" / "postgres" / "worker.py"
DEFAULT_DSN = os.environ.get("DUROX_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def run_once(dsn: str, workers: int, orchestrations: int, width: int, activity_ms: int) -> float:
    """Orchestrations per second for one run on a fresh schema."""
    schema = f"durox_bench_{uuid.uuid4().hex[:8]}"
    provider = PostgresProvider(dsn, schema=schema, pool_size=4)
    processes: list[subprocess.Popen[str]] = []
    try:
        for _ in range(workers):
            process = subprocess.Popen(
                [sys.executable, str(WORKER), dsn, schema],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            processes.append(process)
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError("a worker process failed to start")
        client = Client(provider)
        began = time.perf_counter()
        if activity_ms:
            name: str = "Naps"
            job: object = {"n": width, "ms": activity_ms}
            expected = 2 * width * activity_ms
        else:
            name, job, expected = "Mixed", width, sum(2 * i for i in range(width))
        for n in range(orchestrations):
            client.start_orchestration(f"bench-{n}", name, job)
        for n in range(orchestrations):
            status = client.wait_for_orchestration(f"bench-{n}", timeout=600)
            if not isinstance(status, Completed) or status.output != expected:
                raise RuntimeError(f"bench-{n} ended wrongly: {status}")
        return orchestrations / (time.perf_counter() - began)
    finally:
        for process in processes:
            if process.stdin is not None:
                process.stdin.close()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        provider.close()
        provider.drop_schema()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--orchestrations", type=int, default=300)
    parser.add_argument("--width", type=int, default=3)
    parser.add_argument("--workers", default="1,3", help="comma-separated worker process counts")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--activity-ms",
        type=int,
        default=0,
        help="make every activity wait this long (I/O-bound work); 0: trivial CPU-only steps",
    )
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",")]
    rates: dict[int, list[float]] = {c: [] for c in counts}
    for _ in range(args.repeats):
        for count in counts:  # interleaved, so drift on a busy machine hits every count
            rates[count].append(
                run_once(args.dsn, count, args.orchestrations, args.width, args.activity_ms)
            )
    activities = 2 * args.width
    kind = f"{args.activity_ms} ms I/O-bound" if args.activity_ms else "trivial"
    print(
        f"{args.orchestrations} orchestrations x {activities} {kind} activities "
        f"({args.width} fanned out + {args.width} sequential), {args.repeats} repeat(s), {os.cpu_count()} CPUs"
    )
    print(f"{'workers':>7}  {'orch/s':>8}  {'activities/s':>12}  {'speed-up':>8}")
    base = statistics.median(rates[counts[0]])
    for count in counts:
        rate = statistics.median(rates[count])
        print(f"{count:>7}  {rate:>8.1f}  {rate * activities:>12.1f}  {rate / base:>7.2f}x")


if __name__ == "__main__":
    main()
