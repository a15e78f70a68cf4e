"""``durox demo``: a realistic order workflow on a SQLite file, in a few seconds.

Two orders go through the same orchestration, ``ProcessOrder``:

1. reserve every item in parallel (fan-out / fan-in);
2. charge the payment with retries and backoff (the payment service is
   flaky: the first attempt of every order fails);
3. wait for a manager's approval (an external event — the demo plays the
   manager and approves as soon as the order asks), guarded by a timeout;
4. a short cooling-off timer;
5. ship; if shipping fails, compensate (saga): release the reservations and
   refund the payment.

Order 1001 ships; order 1002 goes to an address the carrier cannot reach and
is compensated. Progress is published with custom status and printed as it
changes; at the end the result and the history (one line per event) of each
order are printed. Interrupt it (Ctrl-C) and run it again on the same file:
it resumes where it stopped; run it once more and it just prints the results.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from durox.core.errors import ActivityFailed
from durox.core.options import RuntimeOptions
from durox.core.registry import Registry
from durox.core.retry import Backoff, RetryPolicy
from durox.core.status import Completed, Failed, NotFound

__all__ = ["ORDERS", "build_registry", "run_demo"]

ORDERS: dict[str, dict[str, Any]] = {
    "order-1001": {
        "customer": "Ada",
        "items": [
            {"sku": "keyboard", "qty": 1},
            {"sku": "mouse", "qty": 2},
            {"sku": "monitor", "qty": 1},
        ],
        "amount": 389.50,
        "ship_to": "12 Analytical Row, London",
    },
    "order-1002": {
        "customer": "Grace",
        "items": [{"sku": "laptop", "qty": 1}, {"sku": "dock", "qty": 1}],
        "amount": 1890.00,
        "ship_to": "Atlantis",
    },
}

APPROVAL_EVENT = "ManagerApproval"


def build_registry() -> Registry:
    """The demo's orchestration and activities."""
    registry = Registry()
    payment_calls: dict[str, int] = {}
    calls_lock = threading.Lock()

    def reserve_item(ctx: Any, item: dict[str, Any]) -> str:
        time.sleep(0.05)  # a call to the inventory service
        return f"RSV-{ctx.instance_id[-4:]}-{item['sku']}"

    def charge_payment(ctx: Any, request: dict[str, Any]) -> str:
        with calls_lock:
            payment_calls[ctx.instance_id] = payment_calls.get(ctx.instance_id, 0) + 1
            first = payment_calls[ctx.instance_id] == 1
        if first:
            raise ConnectionError("payment gateway timed out")
        return f"PAY-{ctx.instance_id[-4:]}-{request['amount']:.2f}"

    def ship_order(ctx: Any, order: dict[str, Any]) -> str:
        time.sleep(0.05)
        if order["ship_to"] == "Atlantis":
            raise LookupError(f"no carrier delivers to {order['ship_to']!r}")
        return f"TRACK-{ctx.instance_id[-4:]}"

    def release_item(ctx: Any, reservation: str) -> str:
        return f"released {reservation}"

    def refund_payment(ctx: Any, payment: str) -> str:
        return f"refunded {payment}"

    def process_order(ctx: Any, order: dict[str, Any]) -> Any:
        ctx.set_custom_status("reserving items")
        reservations = yield ctx.join(
            [ctx.schedule_activity("ReserveItem", item) for item in order["items"]]
        )

        ctx.set_custom_status("charging payment")
        policy = RetryPolicy(
            max_attempts=3, backoff=Backoff.exponential(0.1, multiplier=2.0, max=1.0)
        )
        payment = yield ctx.schedule_activity_with_retry(
            "ChargePayment", {"amount": order["amount"], "customer": order["customer"]}, policy
        )

        ctx.set_custom_status("waiting for approval")
        index, approval = yield ctx.select(
            ctx.schedule_wait(APPROVAL_EVENT), ctx.schedule_timer(60)
        )
        if index == 1 or not approval.get("approved"):
            yield ctx.join([ctx.schedule_activity("ReleaseItem", r) for r in reservations])
            yield ctx.schedule_activity("RefundPayment", payment)
            ctx.set_custom_status("rejected")
            return {"status": "rejected", "payment": payment}

        ctx.set_custom_status(f"approved by {approval['by']}; cooling-off period")
        yield ctx.schedule_timer(0.3)

        ctx.set_custom_status("shipping")
        try:
            tracking = yield ctx.schedule_activity("ShipOrder", order)
        except ActivityFailed as failure:
            ctx.set_custom_status("shipping failed; compensating")
            released = yield ctx.join(
                [ctx.schedule_activity("ReleaseItem", r) for r in reservations]
            )
            refund = yield ctx.schedule_activity("RefundPayment", payment)
            ctx.set_custom_status("compensated")
            return {
                "status": "compensated",
                "reason": failure.message,
                "released": released,
                "refund": refund,
            }
        ctx.set_custom_status("shipped")
        return {
            "status": "shipped",
            "tracking": tracking,
            "payment": payment,
            "reservations": reservations,
        }

    registry.add_activity("ReserveItem", reserve_item)
    registry.add_activity("ChargePayment", charge_payment)
    registry.add_activity("ShipOrder", ship_order)
    registry.add_activity("ReleaseItem", release_item)
    registry.add_activity("RefundPayment", refund_payment)
    registry.add_orchestration("ProcessOrder", process_order)
    return registry


def run_demo(db_path: str, *, out: Callable[[str], None] = print, timeout: float = 60.0) -> int:
    """Run (or resume, or show) the demo on ``db_path``; returns a process exit code."""
    from durox.cli import format_event
    from durox.drivers.threads import Client, Runtime
    from durox.providers.sqlite import SqliteProvider

    provider = SqliteProvider(db_path)
    client = Client(provider)
    try:
        statuses = {order_id: client.get_orchestration_status(order_id) for order_id in ORDERS}
        finished = all(status.is_terminal for status in statuses.values())
        if finished:
            out(
                f"demo already finished in {db_path}; showing the results (delete the file to run it again)"
            )
        else:
            resumed = [oid for oid, status in statuses.items() if not isinstance(status, NotFound)]
            if resumed:
                out(f"resuming {', '.join(resumed)} from {db_path}")
            options = RuntimeOptions(activity_cancellation_grace_period=1.0, poll_interval=0.5)
            with Runtime(provider, build_registry(), options=options):
                for order_id, status in statuses.items():
                    if isinstance(status, NotFound):
                        client.start_orchestration(order_id, "ProcessOrder", ORDERS[order_id])
                        out(f"[{order_id}] started for {ORDERS[order_id]['customer']}")
                _follow(client, out, timeout)
        for order_id in ORDERS:
            _report(client, order_id, out, format_event)
        return 0
    except KeyboardInterrupt:
        out(
            "\ninterrupted: the workflow state is safe in the database; run `durox demo` again to resume"
        )
        return 130
    finally:
        provider.close()


def _follow(client: Any, out: Callable[[str], None], timeout: float) -> None:
    """Print custom status changes as they happen; play the manager who approves orders."""
    seen: dict[str, int] = dict.fromkeys(ORDERS, -1)
    approved: set[str] = set()
    deadline = time.monotonic() + timeout
    while True:
        pending = False
        for order_id in ORDERS:
            status = client.get_orchestration_status(order_id)
            if status.custom_status_version != seen[order_id] and status.custom_status is not None:
                seen[order_id] = status.custom_status_version
                out(f"[{order_id}] {status.custom_status}")
            if status.custom_status == "waiting for approval" and order_id not in approved:
                approved.add(order_id)
                client.raise_event(
                    order_id, APPROVAL_EVENT, {"approved": True, "by": "demo-manager"}
                )
                out(f"[{order_id}] manager approval sent")
            if not status.is_terminal:
                pending = True
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the demo did not finish within {timeout:g}s")
        time.sleep(0.02)


def _report(
    client: Any, order_id: str, out: Callable[[str], None], format_event: Callable[[Any], str]
) -> None:
    status = client.get_orchestration_status(order_id)
    out("")
    if isinstance(status, Completed):
        out(f"== {order_id}: Completed -> {json.dumps(status.output)}")
    elif isinstance(status, Failed):
        out(f"== {order_id}: Failed -> {status.details.display_message()}")
    else:
        out(f"== {order_id}: {status.status}")
    for event in client.read_execution_history(order_id):
        out("   " + format_event(event))


def main() -> int:  # pragma: no cover - convenience for `python -m durox.demo`
    """Run the demo on ``durox-demo.db`` in the current directory."""
    return run_demo(sys.argv[1] if len(sys.argv) > 1 else "durox-demo.db")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
