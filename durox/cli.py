"""The ``durox`` command line: inspect and drive orchestrations in a store.

::

    durox --db app.db list [--status Running]
    durox --db app.db show ID
    durox --db app.db history ID [--execution N]
    durox --db app.db start NAME ID [--input JSON] [--version X.Y.Z]
    durox --db app.db raise-event ID EVENT [--data JSON]
    durox --db app.db enqueue-event ID QUEUE [--data JSON]
    durox --db app.db cancel ID [--reason TEXT]
    durox --db app.db delete ID [--force]
    durox --db app.db metrics
    durox --db app.db prune ID [--keep-last N] [--before-ms MS]
    durox demo [--db durox-demo.db]

``--dsn postgresql://...`` instead of ``--db`` uses PostgreSQL. Commands
only read and write the store; orchestrations run in a runtime (your
application, or ``durox demo``). Bad input exits with status 2 and a message.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Sequence
from typing import Any

import attrs

from durox.core import history
from durox.core.errors import DuroxError, ErrorDetails

__all__ = ["format_event", "main"]

_PAYLOAD_FIELDS = ("input", "result", "output", "data", "value")
_HIDDEN_FIELDS = ("event_id", "timestamp_ms")
_SHORT = 80


def format_event(event: history.Event) -> str:
    """One readable line for a history event: id, time, kind, and its fields."""
    when = datetime.datetime.fromtimestamp(event.timestamp_ms / 1000, tz=datetime.timezone.utc)
    parts = []
    for field in attrs.fields(type(event)):
        if field.name in _HIDDEN_FIELDS:
            continue
        value = getattr(event, field.name)
        if value is None or value == ():
            continue
        if isinstance(value, ErrorDetails):
            text = value.display_message()
        elif field.name == "fire_at_ms" or field.name == "updated_at_ms":
            text = datetime.datetime.fromtimestamp(value / 1000, tz=datetime.timezone.utc).strftime(
                "%H:%M:%S.%f"
            )[:-3]
        elif isinstance(value, str):
            text = value if field.name in _PAYLOAD_FIELDS else repr(value)
        else:
            text = str(value)
        if len(text) > _SHORT:
            text = text[: _SHORT - 3] + "..."
        parts.append(f"{field.name}={text}")
    return f"{event.event_id:>4} {when:%H:%M:%S}.{when.microsecond // 1000:03d} {type(event).__name__:<30} {' '.join(parts)}"


class _UsageError(Exception):
    """Bad command-line input: printed, exit status 2."""


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _UsageError(
            f"{what} is not valid JSON ({exc}); quote strings, e.g. --input '\"text\"'"
        ) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="durox", description="Inspect and drive durox orchestrations."
    )
    store = parser.add_mutually_exclusive_group()
    store.add_argument("--db", help="SQLite database file")
    store.add_argument("--dsn", help="PostgreSQL connection string (postgresql://...)")
    parser.add_argument("--schema", default="durox", help="PostgreSQL schema (default: durox)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list instances (newest first)")
    listing.add_argument(
        "--status", choices=["Running", "Completed", "Failed"], help="only this status"
    )

    show = commands.add_parser(
        "show", help="status, custom status, executions and KV of an instance"
    )
    show.add_argument("id")

    hist = commands.add_parser("history", help="history of an execution, one line per event")
    hist.add_argument("id")
    hist.add_argument("--execution", type=int, help="execution id (default: the current one)")

    start = commands.add_parser("start", help="start an orchestration (a runtime must run it)")
    start.add_argument("name")
    start.add_argument("id")
    start.add_argument("--input", help="input as JSON")
    start.add_argument("--version", help="pin an orchestration version (X.Y.Z)")

    raise_event = commands.add_parser("raise-event", help="raise an external event")
    raise_event.add_argument("id")
    raise_event.add_argument("event")
    raise_event.add_argument("--data", help="event data as JSON")

    enqueue = commands.add_parser(
        "enqueue-event", help="put a message on an instance's event queue"
    )
    enqueue.add_argument("id")
    enqueue.add_argument("queue")
    enqueue.add_argument("--data", help="message as JSON")

    cancel = commands.add_parser("cancel", help="cancel an instance")
    cancel.add_argument("id")
    cancel.add_argument("--reason", default="cancelled from the command line")

    delete = commands.add_parser("delete", help="delete an instance and its sub-orchestrations")
    delete.add_argument("id")
    delete.add_argument("--force", action="store_true", help="also delete a running instance")

    commands.add_parser("metrics", help="instance counts and queue depths")

    prune = commands.add_parser("prune", help="delete old executions of an instance")
    prune.add_argument("id")
    prune.add_argument("--keep-last", type=int, help="keep the newest N executions")
    prune.add_argument(
        "--before-ms", type=int, help="only executions completed before this epoch ms"
    )

    demo = commands.add_parser("demo", help="run the order-workflow demo on a SQLite file")
    demo.add_argument(
        "--db", dest="demo_db", default=None, help="demo database (default: durox-demo.db)"
    )
    return parser


def _open_provider(args: argparse.Namespace) -> Any:
    if args.dsn:
        from durox.providers.postgres import PostgresProvider

        return PostgresProvider(args.dsn, schema=args.schema)
    if args.db:
        from durox.providers.sqlite import SqliteProvider

        return SqliteProvider(args.db)
    raise _UsageError(
        "say which store to use: --db FILE (SQLite) or --dsn postgresql://... (PostgreSQL)"
    )


def _run(args: argparse.Namespace, out: Any) -> int:
    if args.command == "demo":
        from durox.demo import run_demo

        return run_demo(
            args.demo_db or args.db or "durox-demo.db",
            out=lambda line: print(line, file=out, flush=True),
        )

    from durox.drivers.threads import Client

    provider = _open_provider(args)
    try:
        client = Client(provider)
        return _command(client, args, out)
    finally:
        provider.close()


def _command(client: Any, args: argparse.Namespace, out: Any) -> int:
    def say(line: str = "") -> None:
        print(line, file=out)

    command = args.command
    if command == "list":
        ids = (
            client.list_instances_by_status(args.status)
            if args.status
            else client.list_all_instances()
        )
        for instance in ids:
            info = client.get_instance_info(instance)
            say(
                f"{instance:<40} {info.status:<15} {info.orchestration_name} {info.orchestration_version or ''}"
            )
        if not ids:
            say("(no instances)")
    elif command == "show":
        status = client.get_orchestration_status(args.id)
        if status.status == "NotFound":
            raise _UsageError(f"instance {args.id!r} does not exist")
        info = client.get_instance_info(args.id)
        say(f"instance:       {args.id}")
        say(f"orchestration:  {info.orchestration_name} {info.orchestration_version or ''}")
        say(f"status:         {status.status}")
        if status.status == "Completed":
            say(f"output:         {json.dumps(status.output)}")
        elif status.status == "Failed":
            say(f"error:          [{status.details.category}] {status.details.display_message()}")
        if status.custom_status is not None:
            say(f"custom status:  {status.custom_status} (version {status.custom_status_version})")
        if info.parent_instance_id:
            say(f"parent:         {info.parent_instance_id}")
        say(f"executions:     {', '.join(str(e) for e in client.list_executions(args.id))}")
        for key, value in sorted(client.get_kv_all_values(args.id).items()):
            say(f"kv {key}: {json.dumps(value)}")
    elif command == "history":
        for event in client.read_execution_history(args.id, args.execution):
            say(format_event(event))
    elif command == "start":
        client.start_orchestration(
            args.id, args.name, _json_arg(args.input, "--input"), version=args.version
        )
        say(f"started {args.id} ({args.name})")
    elif command == "raise-event":
        client.raise_event(args.id, args.event, _json_arg(args.data, "--data"))
        say(f"raised {args.event} on {args.id}")
    elif command == "enqueue-event":
        client.enqueue_event(args.id, args.queue, _json_arg(args.data, "--data"))
        say(f"enqueued on {args.id}/{args.queue}")
    elif command == "cancel":
        client.cancel_instance(args.id, args.reason)
        say(f"cancel requested for {args.id}")
    elif command == "delete":
        result = client.delete_instance(args.id, force=args.force)
        say(
            f"deleted {result.instances_deleted} instance(s), {result.executions_deleted} execution(s), "
            f"{result.events_deleted} event(s)"
        )
    elif command == "metrics":
        metrics = client.get_system_metrics()
        depths = client.get_queue_depths()
        for field in attrs.fields(type(metrics)):
            say(f"{field.name:<22} {getattr(metrics, field.name)}")
        say(f"{'orchestrator_queue':<22} {depths.orchestrator_queue}")
        say(f"{'worker_queue':<22} {depths.worker_queue}")
    elif command == "prune":
        if args.keep_last is None and args.before_ms is None:
            raise _UsageError("prune needs --keep-last N and/or --before-ms MS")
        result = client.prune_executions(
            args.id, keep_last=args.keep_last, completed_before_ms=args.before_ms
        )
        say(f"pruned {result.executions_deleted} execution(s), {result.events_deleted} event(s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``durox`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _run(args, sys.stdout)
    except _UsageError as exc:
        parser.exit(2, f"durox: error: {exc}\n")
    except DuroxError as exc:
        parser.exit(2, f"durox: error: {type(exc).__name__}: {exc}\n")
    return 0  # pragma: no cover - parser.exit raises


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
