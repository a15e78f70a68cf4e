"""The ``durox`` command line and the demo, on real SQLite files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from durox import Registry
from durox.cli import main
from durox.demo import ORDERS, run_demo
from durox.drivers.threads import Client, Runtime
from durox.providers.sqlite import SqliteProvider


def _cli(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_demo_runs_then_shows_results(tmp_path):
    db = str(tmp_path / "demo.db")
    lines: list[str] = []
    assert run_demo(db, out=lines.append, timeout=30) == 0
    text = "\n".join(lines)
    assert "[order-1001] waiting for approval" in text
    assert "[order-1001] shipped" in text and "[order-1002] compensated" in text
    assert "ActivityFailed" in text and "OrchestrationCompleted" in text
    with SqliteProvider(db) as provider:
        client = Client(provider)
        first = client.get_orchestration_status("order-1001").output
        second = client.get_orchestration_status("order-1002").output
    assert first["status"] == "shipped" and len(first["reservations"]) == len(
        ORDERS["order-1001"]["items"]
    )
    assert second["status"] == "compensated" and len(second["released"]) == 2

    again: list[str] = []
    assert run_demo(db, out=again.append) == 0
    assert again[0].startswith("demo already finished")
    assert any("OrchestrationCompleted" in line for line in again)


def test_demo_resumes_an_interrupted_run(tmp_path):
    db = str(tmp_path / "demo.db")
    # Simulate an interruption: start the orders, stop the runtime before they finish.
    from durox.demo import build_registry

    with SqliteProvider(db) as provider:
        client = Client(provider)
        runtime = Runtime(provider, build_registry())
        runtime.start()
        for order_id, order in ORDERS.items():
            client.start_orchestration(order_id, "ProcessOrder", order)
        client.wait_for_status_change("order-1001", 1, timeout=10)
        runtime.shutdown(timeout=2)
        assert not client.get_orchestration_status("order-1001").is_terminal
    lines: list[str] = []
    assert run_demo(db, out=lines.append, timeout=30) == 0
    assert lines[0].startswith("resuming order-1001")
    assert any("shipped" in line for line in lines)


def test_cli_commands(tmp_path, capsys):
    db = str(tmp_path / "app.db")
    registry = Registry()

    @registry.orchestration("Greeter")
    def greeter(ctx, name):
        ctx.set_kv_value("greeted", name)
        event = yield ctx.schedule_wait("Go")
        return f"hello {name} {event}"

    code, out = _cli(capsys, "--db", db, "start", "Greeter", "g1", "--input", '"Ada"')
    assert code == 0 and "started g1" in out
    code, out = _cli(capsys, "--db", db, "list")
    assert "g1" in out and "Running" in out
    with SqliteProvider(db) as provider, Runtime(provider, registry):
        client = Client(provider)
        client.wait_for_kv_value("g1", "greeted", timeout=10)
        code, out = _cli(capsys, "--db", db, "raise-event", "g1", "Go", "--data", "42")
        assert code == 0
        assert client.wait_for_orchestration("g1", timeout=10).output == "hello Ada 42"
    code, out = _cli(capsys, "--db", db, "show", "g1")
    assert "Completed" in out and "hello Ada 42" in out and 'kv greeted: "Ada"' in out
    code, out = _cli(capsys, "--db", db, "history", "g1")
    assert out.splitlines()[0].split()[2] == "OrchestrationStarted"
    assert "ExternalEvent" in out and "OrchestrationCompleted" in out
    code, out = _cli(capsys, "--db", db, "metrics")
    assert "completed_instances    1" in out
    code, out = _cli(capsys, "--db", db, "prune", "g1", "--keep-last", "1")
    assert "pruned 0 execution(s)" in out
    code, out = _cli(capsys, "--db", db, "start", "Greeter", "g2")
    code, out = _cli(capsys, "--db", db, "cancel", "g2")
    assert "cancel requested" in out
    code, out = _cli(capsys, "--db", db, "delete", "g1")
    assert "deleted 1 instance(s)" in out
    code, out = _cli(capsys, "--db", db, "list", "--status", "Completed")
    assert "(no instances)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["list"], "--db FILE"),
        (["start", "Greeter", "x", "--input", "{nope"], "not valid JSON"),
        (["show", "missing"], "does not exist"),
        (["history", "missing"], "InstanceNotFound"),
        (["start", "Greeter", ""], "must not be empty"),
        (["prune", "x"], "--keep-last"),
        (["raise-event", "missing", "Go"], "InstanceNotFound"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path, capsys, argv, message):
    if argv != ["list"]:
        argv = ["--db", str(tmp_path / "app.db"), *argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_console_entry_point_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "durox", "--db", str(tmp_path / "x.db"), "metrics"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.dumps(0) in result.stdout
