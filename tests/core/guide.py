"""Every orchestration of the Duroxide user guide, in Python, with scenarios that run them.

The guide's examples (function chaining, fan-out/fan-in, human in the loop,
saga, retries, sub-orchestrations, eternal monitors, actors, KV and custom
status progress, event-queue chat, dynamic names, approvals with escalation,
batches, sessions, tags, typed I/O) are rendered as generator orchestrations
and registered by :func:`make_registry`. :data:`SCENARIOS` says how to drive
each one and what it must end with; :func:`run_scenario` drives a
:class:`~tests.core.harness.World` through a scenario and
:func:`check_scenario` asserts its end state. Property tests reuse both::

    world = World(make_registry(), chooser=some_chooser, sticky=False)
    run_scenario(world, scenario)
    check_scenario(world, scenario)

Activities are deterministic functions of their input, except the flaky ones
of the retry examples, which fail a fixed number of times *per registry*
(hence a fresh registry per world).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Literal, Union

import attrs

from durox.core.context import OrchestrationContext
from durox.core.errors import ActivityFailed, SubOrchestrationFailed
from durox.core.registry import Registry
from durox.core.retry import Backoff, RetryPolicy
from tests.core.harness import World

__all__ = [
    "SCENARIOS",
    "UNSERVED_TAGS",
    "Order",
    "Receipt",
    "Scenario",
    "check_scenario",
    "make_registry",
    "run_scenario",
    "scenario",
]

UNSERVED_TAGS = frozenset({"gpu"})
"""Activity tags no worker serves: :func:`run_scenario` never runs activities with them."""

Gen = Generator[Any, Any, Any]


@attrs.frozen
class Order:
    """Typed orchestration input (the guide's typed-I/O example)."""

    id: str
    items: list[str]
    unit_price: float


@attrs.frozen
class Receipt:
    """Typed activity and orchestration output."""

    order_id: str
    total: float
    lines: int


# -- the orchestrations ----------------------------------------------------------------


def process_order(ctx: OrchestrationContext, order: str) -> Gen:
    """1. Function chaining: four activities, each fed the previous result."""
    ctx.trace_info("Starting order processing")
    validated = yield ctx.schedule_activity("ValidateOrder", order)
    payment = yield ctx.schedule_activity("ChargePayment", validated)
    tracking = yield ctx.schedule_activity("ShipOrder", payment)
    confirmation = yield ctx.schedule_activity("SendConfirmation", tracking)
    ctx.trace_info("Order processing completed")
    return confirmation


def process_users(ctx: OrchestrationContext, user_ids: list[str]) -> Gen:
    """2. Fan-out/fan-in: one activity per user, joined; failures are counted, not fatal."""
    tasks = [ctx.schedule_activity("ProcessUser", user) for user in user_ids]
    results = yield ctx.join(tasks, return_exceptions=True)
    successes = 0
    for result in results:
        if isinstance(result, ActivityFailed):
            ctx.trace_warn(f"User processing failed: {result.message}")
        else:
            successes += 1
    return f"Processed {successes} users successfully"


def approval_workflow(ctx: OrchestrationContext, request: str) -> Gen:
    """3. Human in the loop: wait for ApprovalEvent, escalate after 24 hours."""
    request_id = yield ctx.schedule_activity("SubmitApprovalRequest", request)
    timeout = ctx.schedule_timer(86_400)
    approval = ctx.schedule_wait("ApprovalEvent")
    index, data = yield ctx.select(timeout, approval)
    if index == 0:
        ctx.trace_warn("Approval timed out, escalating")
        return (yield ctx.schedule_activity("EscalateApproval", request_id))
    ctx.trace_info("Approval received")
    return data


def saga(ctx: OrchestrationContext, order: dict[str, Any]) -> Gen:
    """4. Saga: reserve, charge; on a failed charge release the reservation and fail."""
    try:
        reservation = yield ctx.schedule_activity("ReserveInventory", order)
    except ActivityFailed as failure:
        ctx.trace_error(f"Reservation failed: {failure.message}")
        raise RuntimeError("Reservation failed") from None
    try:
        return (yield ctx.schedule_activity("ChargePayment", reservation))
    except ActivityFailed as failure:
        ctx.trace_warn(f"Payment failed: {failure.message}, releasing inventory")
        yield ctx.schedule_activity("ReleaseInventory", reservation)
        raise RuntimeError("Payment failed, order cancelled") from None


def retry_orchestration(ctx: OrchestrationContext, task: str) -> Gen:
    """5a. Built-in retry: 3 attempts with a fixed one-second backoff."""
    policy = RetryPolicy(max_attempts=3, backoff=Backoff.fixed(1.0))
    return (yield ctx.schedule_activity_with_retry("UnreliableTask", task, policy))


def custom_retry(ctx: OrchestrationContext, task: str) -> Gen:
    """5b. Retry with a per-attempt timeout and exponential backoff."""
    policy = RetryPolicy(
        max_attempts=5,
        timeout=30.0,
        backoff=Backoff.exponential(0.1, multiplier=2.0, max=10.0),
    )
    return (yield ctx.schedule_activity_with_retry("FlakyTask", task, policy))


def manual_retry(ctx: OrchestrationContext, task: str) -> Gen:
    """5c. A hand-written retry loop with doubling timers."""
    max_attempts, delay = 5, 1.0
    for attempt in range(1, max_attempts + 1):
        ctx.trace_info(f"Attempt {attempt} of {max_attempts}")
        try:
            return (yield ctx.schedule_activity("ManualTask", task))
        except ActivityFailed as failure:
            ctx.trace_warn(f"Attempt {attempt} failed: {failure.message}")
            if attempt == max_attempts:
                raise RuntimeError(f"Failed after {max_attempts} attempts") from None
            yield ctx.schedule_timer(delay)
            delay *= 2
    raise AssertionError("unreachable")


def accumulate_results(ctx: OrchestrationContext, items: list[str]) -> Gen:
    """6. Loop and accumulate: one activity per item, in order."""
    accumulator = []
    for index, item in enumerate(items):
        ctx.trace_info(f"Processing item {index + 1} of {len(items)}")
        accumulator.append((yield ctx.schedule_activity("ProcessItem", item)))
    return accumulator


def conditional_workflow(ctx: OrchestrationContext, order: dict[str, Any]) -> Gen:
    """7. Conditional approval: orders over 1000 need ManagerApproval within an hour."""
    value = yield ctx.schedule_activity("GetOrderValue", order)
    if value > 1000:
        ctx.trace_info("High-value order, requiring approval")
        yield ctx.schedule_activity("CreateApprovalRequest", order)
        index, _ = yield ctx.select(ctx.schedule_timer(3600), ctx.schedule_wait("ManagerApproval"))
        if index == 0:
            ctx.trace_warn("Approval timeout")
            raise RuntimeError("Approval timeout")
    return (yield ctx.schedule_activity("ProcessOrder", order))


def parent_workflow(ctx: OrchestrationContext, batches: list[list[int]]) -> Gen:
    """8. Sub-orchestrations: each batch is processed by a child, one after another."""
    results = []
    for batch in batches:
        results.append((yield ctx.schedule_sub_orchestration("ProcessBatch", batch)))
    return results


def process_batch(ctx: OrchestrationContext, batch: list[int]) -> Gen:
    """8. The child: sums its batch through an activity; an empty batch fails."""
    if not batch:
        raise ValueError("empty batch")
    return (yield ctx.schedule_activity("SumBatch", batch))


def parallel_parent(ctx: OrchestrationContext, batches: list[list[int]]) -> Gen:
    """8b. Sub-orchestrations fanned out and joined; a failed child is reported, not fatal."""
    children = [ctx.schedule_sub_orchestration("ProcessBatch", batch) for batch in batches]
    results = yield ctx.join(children, return_exceptions=True)
    return [
        f"failed: {result.message}" if isinstance(result, SubOrchestrationFailed) else result
        for result in results
    ]


def monitor(ctx: OrchestrationContext, state: dict[str, int]) -> Gen:
    """9. Eternal monitor: check, sleep a minute, continue as new (bounded for the tests)."""
    status = yield ctx.schedule_activity("CheckHealth", state["iteration"])
    checks = state["healthy"] + (1 if status == "ok" else 0)
    if state["iteration"] + 1 >= state["rounds"]:
        return {"healthy": checks, "executions": ctx.execution_id}
    yield ctx.schedule_timer(60)
    return (
        yield ctx.continue_as_new(
            {"iteration": state["iteration"] + 1, "rounds": state["rounds"], "healthy": checks}
        )
    )


def counter_actor(ctx: OrchestrationContext, state: dict[str, int]) -> Gen:
    """10. Actor: commands from the ``commands`` queue; restarts every 3 messages."""
    total, handled = state["total"], 0
    while handled < 3:
        command = yield ctx.dequeue_event("commands")
        handled += 1
        if command["op"] == "add":
            total += command["value"]
            ctx.set_custom_status(f"total={total}")
        elif command["op"] == "stop":
            return {"total": total, "executions": ctx.execution_id}
    return (yield ctx.continue_as_new({"total": total}))


def kv_progress(ctx: OrchestrationContext, steps: int) -> Gen:
    """11. KV progress: record the last finished step; clients read it as it goes."""
    for step in range(1, steps + 1):
        yield ctx.schedule_activity("DoStep", step)
        ctx.set_kv_value("progress", f"step_{step}_of_{steps}")
        ctx.set_kv_value(f"step_{step}", {"done": True})
    ctx.clear_kv_value("step_1")
    return {"keys": ctx.get_kv_all_keys(), "progress": ctx.get_kv_value("progress")}


def status_progress(ctx: OrchestrationContext, steps: int) -> Gen:
    """12. Custom status progress: a percentage after each step."""
    ctx.set_custom_status({"pct": 0})
    for step in range(1, steps + 1):
        yield ctx.schedule_activity("DoStep", step)
        ctx.set_custom_status({"pct": step * 100 // steps})
    return ctx.get_custom_status()


def chat_bot(ctx: OrchestrationContext, greeting: str) -> Gen:
    """13. Event-queue chat loop: answer each ``inbox`` message until ``bye``."""
    transcript = [greeting]
    while True:
        message = yield ctx.dequeue_event("inbox")
        if message["text"] == "bye":
            return transcript
        transcript.append((yield ctx.schedule_activity("Reply", message["text"])))


def dynamic_dispatch(ctx: OrchestrationContext, plan: list[dict[str, Any]]) -> Gen:
    """14. Dynamic activity names: the input names the activities to run."""
    outputs = []
    for step in plan:
        outputs.append((yield ctx.schedule_activity(f"Step{step['kind']}", step["arg"])))
    return outputs


def document_approval(ctx: OrchestrationContext, document: str) -> Gen:
    """15. Document approval: escalate to a manager after an hour, give up after two."""
    yield ctx.schedule_activity("SubmitDocument", document)
    for level in ("reviewer", "manager"):
        index, decision = yield ctx.select(ctx.schedule_wait("Approval"), ctx.schedule_timer(3600))
        if index == 0:
            return f"{decision} by {level}"
        if level == "reviewer":
            yield ctx.schedule_activity("NotifyManager", document)
    return "rejected: no response"


def batch_processor(ctx: OrchestrationContext, state: dict[str, Any]) -> Gen:
    """16. Batch processing: two items per execution in parallel, then continue as new."""
    items, offset = state["items"], state["offset"]
    batch = items[offset : offset + 2]
    results = yield ctx.join([ctx.schedule_activity("Square", item) for item in batch])
    total = state["total"] + sum(results)
    if offset + 2 >= len(items):
        return {"total": total, "executions": ctx.execution_id}
    return (yield ctx.continue_as_new({"items": items, "offset": offset + 2, "total": total}))


def session_pattern(ctx: OrchestrationContext, turns: list[str]) -> Gen:
    """17. Session affinity: every turn runs on one session chosen by a recorded GUID."""
    session = yield ctx.new_guid()
    replies = []
    for text in turns:
        reply = yield ctx.schedule_activity_on_session("RunTurn", text, session)
        replies.append(reply)
    same = all(reply["session"] == session for reply in replies)
    return {"replies": [reply["text"] for reply in replies], "one_session": same}


def tagged_render(ctx: OrchestrationContext, frame: int) -> Gen:
    """18. Tags: render on a GPU worker, but fall back to the CPU if none answers in 30 s."""
    render = ctx.schedule_activity("RenderFrame", frame).with_tag("gpu")
    index, value = yield ctx.select(render, ctx.schedule_timer(30))
    if index == 0:
        return value
    return (yield ctx.schedule_activity("RenderOnCpu", frame))


def typed_order(ctx: OrchestrationContext, order: Order) -> Gen:
    """19. Typed inputs and outputs: an attrs input, an attrs activity result."""
    receipt = yield ctx.schedule_activity("PriceOrder", order, result_type=Receipt)
    assert isinstance(receipt, Receipt)
    return Receipt(order_id=receipt.order_id, total=receipt.total * 2, lines=receipt.lines)


ORCHESTRATIONS: dict[str, Callable[..., Any]] = {
    "ProcessOrder": process_order,
    "ProcessUsers": process_users,
    "ApprovalWorkflow": approval_workflow,
    "Saga": saga,
    "RetryOrchestration": retry_orchestration,
    "CustomRetry": custom_retry,
    "ManualRetry": manual_retry,
    "AccumulateResults": accumulate_results,
    "ConditionalWorkflow": conditional_workflow,
    "ParentWorkflow": parent_workflow,
    "ProcessBatch": process_batch,
    "ParallelParent": parallel_parent,
    "Monitor": monitor,
    "CounterActor": counter_actor,
    "KvProgress": kv_progress,
    "StatusProgress": status_progress,
    "ChatBot": chat_bot,
    "DynamicDispatch": dynamic_dispatch,
    "DocumentApproval": document_approval,
    "BatchProcessor": batch_processor,
    "SessionPattern": session_pattern,
    "TaggedRender": tagged_render,
    "TypedOrder": typed_order,
}


# -- activities and the registry ---------------------------------------------------------


def make_registry() -> Registry:
    """A fresh registry with every guide orchestration and activity.

    Fresh each call: the flaky activities count their failures per registry.
    """
    registry = Registry()
    for name, fn in ORCHESTRATIONS.items():
        registry.add_orchestration(name, fn)
    calls: dict[tuple[str, str], int] = {}

    def flaky(name: str, failures: int) -> Callable[[Any, str], str]:
        def run(ctx: Any, task: str) -> str:
            count = calls.get((name, task), 0) + 1
            calls[(name, task)] = count
            if count <= failures:
                raise ConnectionError(f"{name} attempt {count} failed")
            return f"{task} done after {count}"

        return run

    def charge(ctx: Any, value: Any) -> str:
        if isinstance(value, dict):  # the saga charges a reservation
            if value["amount"] > 500:
                raise ValueError("insufficient funds")
            return f"paid:{value['sku']}"
        return f"paid:{value}"

    def user(ctx: Any, user_id: str) -> str:
        if user_id.startswith("bad"):
            raise KeyError(user_id)
        return f"ok:{user_id}"

    def reserve(ctx: Any, order: dict[str, Any]) -> dict[str, Any]:
        if order["sku"] == "none":
            raise LookupError("out of stock")
        return {"sku": order["sku"], "amount": order["amount"]}

    def price(ctx: Any, order: Order) -> Receipt:
        return Receipt(
            order_id=order.id, total=order.unit_price * len(order.items), lines=len(order.items)
        )

    activities: dict[str, Callable[..., Any]] = {
        "ValidateOrder": lambda ctx, order: f"valid:{order}",
        "ChargePayment": charge,
        "ShipOrder": lambda ctx, payment: f"track:{payment}",
        "SendConfirmation": lambda ctx, tracking: f"confirmed:{tracking}",
        "ProcessUser": user,
        "SubmitApprovalRequest": lambda ctx, request: f"req-{request}",
        "EscalateApproval": lambda ctx, request_id: f"escalated:{request_id}",
        "ReserveInventory": reserve,
        "ReleaseInventory": lambda ctx, reservation: f"released:{reservation['sku']}",
        "UnreliableTask": flaky("UnreliableTask", 2),
        "FlakyTask": flaky("FlakyTask", 3),
        "ManualTask": flaky("ManualTask", 2),
        "ProcessItem": lambda ctx, item: item.upper(),
        "GetOrderValue": lambda ctx, order: order["value"],
        "CreateApprovalRequest": lambda ctx, order: "requested",
        "ProcessOrder": lambda ctx, order: f"processed:{order['id']}",
        "SumBatch": lambda ctx, batch: sum(batch),
        "CheckHealth": lambda ctx, iteration: "ok" if iteration % 2 == 0 else "degraded",
        "DoStep": lambda ctx, step: step,
        "Reply": lambda ctx, text: f"echo:{text}",
        "StepA": lambda ctx, arg: f"A({arg})",
        "StepB": lambda ctx, arg: f"B({arg})",
        "SubmitDocument": lambda ctx, document: f"submitted:{document}",
        "NotifyManager": lambda ctx, document: "notified",
        "Square": lambda ctx, n: n * n,
        "RunTurn": lambda ctx, text: {"text": text.upper(), "session": ctx.session_id},
        "RenderFrame": lambda ctx, frame: f"gpu:{frame}",
        "RenderOnCpu": lambda ctx, frame: f"cpu:{frame}",
        "PriceOrder": price,
    }
    for name, fn in activities.items():
        registry.add_activity(name, fn)
    return registry


# -- scenarios ----------------------------------------------------------------------------

Step = Union[
    tuple[Literal["raise"], str, Any],  # raise external event (name, data)
    tuple[Literal["enqueue"], str, Any],  # enqueue on queue (name, data)
    tuple[Literal["advance"], float],  # move virtual time forward (seconds)
]
"""One scripted client action; the world settles (without time passing) after each."""


@attrs.frozen
class Scenario:
    """One run of a guide orchestration and the end it must reach.

    ``status`` is ``"Completed"`` (then ``expected`` is the output) or
    ``"Failed"`` (then ``expected`` is a substring of the failure message).
    ``activities`` (if given) is the multiset of activity names that must have
    run, in sorted order; ``kv`` (if given) the KV values a client reads at the end.
    """

    instance: str
    name: str
    input: Any
    script: tuple[Step, ...]
    status: Literal["Completed", "Failed"]
    expected: Any
    activities: tuple[str, ...] | None = None
    kv: dict[str, Any] | None = None
    custom_status: str | None = None


def _s(
    instance: str,
    name: str,
    input: Any,
    expected: Any,
    *script: Step,
    status: Literal["Completed", "Failed"] = "Completed",
    activities: tuple[str, ...] | None = None,
    kv: dict[str, Any] | None = None,
    custom_status: str | None = None,
) -> Scenario:
    return Scenario(
        instance=instance,
        name=name,
        input=input,
        script=tuple(script),
        status=status,
        expected=expected,
        activities=None if activities is None else tuple(sorted(activities)),
        kv=kv,
        custom_status=custom_status,
    )


SCENARIOS: tuple[Scenario, ...] = (
    _s("chain", "ProcessOrder", "o1", "confirmed:track:paid:valid:o1"),
    _s(
        "fan-out",
        "ProcessUsers",
        ["u1", "bad1", "u2", "u3", "bad2"],
        "Processed 3 users successfully",
        activities=("ProcessUser",) * 5,
    ),
    _s(
        "approval-approved",
        "ApprovalWorkflow",
        "r1",
        {"by": "alice"},
        ("raise", "ApprovalEvent", {"by": "alice"}),
        activities=("SubmitApprovalRequest",),
    ),
    _s(
        "approval-timeout",
        "ApprovalWorkflow",
        "r2",
        "escalated:req-r2",
        activities=("SubmitApprovalRequest", "EscalateApproval"),
    ),
    _s(
        "saga-ok",
        "Saga",
        {"sku": "book", "amount": 20},
        "paid:book",
        activities=("ReserveInventory", "ChargePayment"),
    ),
    _s(
        "saga-compensated",
        "Saga",
        {"sku": "tv", "amount": 900},
        "Payment failed, order cancelled",
        status="Failed",
        activities=("ReserveInventory", "ChargePayment", "ReleaseInventory"),
    ),
    _s(
        "saga-no-stock",
        "Saga",
        {"sku": "none", "amount": 1},
        "Reservation failed",
        status="Failed",
        activities=("ReserveInventory",),
    ),
    _s(
        "retry",
        "RetryOrchestration",
        "job",
        "job done after 3",
        activities=("UnreliableTask",) * 3,
    ),
    _s("custom-retry", "CustomRetry", "job", "job done after 4", activities=("FlakyTask",) * 4),
    _s("manual-retry", "ManualRetry", "job", "job done after 3", activities=("ManualTask",) * 3),
    _s("accumulate", "AccumulateResults", ["a", "b", "c"], ["A", "B", "C"]),
    _s(
        "conditional-low",
        "ConditionalWorkflow",
        {"id": "c1", "value": 10},
        "processed:c1",
        activities=("GetOrderValue", "ProcessOrder"),
    ),
    _s(
        "conditional-approved",
        "ConditionalWorkflow",
        {"id": "c2", "value": 5000},
        "processed:c2",
        ("raise", "ManagerApproval", True),
        activities=("GetOrderValue", "CreateApprovalRequest", "ProcessOrder"),
    ),
    _s(
        "conditional-timeout",
        "ConditionalWorkflow",
        {"id": "c3", "value": 5000},
        "Approval timeout",
        status="Failed",
        activities=("GetOrderValue", "CreateApprovalRequest"),
    ),
    _s("sub-orchestrations", "ParentWorkflow", [[1, 2], [3], [4, 5, 6]], [3, 3, 15]),
    _s(
        "sub-orchestrations-failing-child",
        "ParallelParent",
        [[1], [], [2, 3]],
        [1, "failed: ValueError: empty batch", 5],
    ),
    _s(
        "monitor",
        "Monitor",
        {"iteration": 0, "rounds": 4, "healthy": 0},
        {"healthy": 2, "executions": 4},
    ),
    _s(
        "actor",
        "CounterActor",
        {"total": 0},
        {"total": 15, "executions": 3},
        ("enqueue", "commands", {"op": "add", "value": 1}),
        ("enqueue", "commands", {"op": "add", "value": 2}),
        ("enqueue", "commands", {"op": "noop"}),
        ("enqueue", "commands", {"op": "add", "value": 3}),
        ("enqueue", "commands", {"op": "add", "value": 4}),
        ("enqueue", "commands", {"op": "add", "value": 5}),
        ("enqueue", "commands", {"op": "stop"}),
        custom_status="total=15",
    ),
    _s(
        "kv-progress",
        "KvProgress",
        3,
        {"keys": ["progress", "step_2", "step_3"], "progress": "step_3_of_3"},
        kv={"progress": "step_3_of_3", "step_2": {"done": True}, "step_3": {"done": True}},
    ),
    _s("status-progress", "StatusProgress", 4, '{"pct":100}', custom_status='{"pct":100}'),
    _s(
        "chat",
        "ChatBot",
        "hello",
        ["hello", "echo:hi", "echo:how are you"],
        ("enqueue", "inbox", {"text": "hi"}),
        ("enqueue", "inbox", {"text": "how are you"}),
        ("enqueue", "inbox", {"text": "bye"}),
        ("enqueue", "inbox", {"text": "ignored after bye"}),
    ),
    _s(
        "dynamic-names",
        "DynamicDispatch",
        [{"kind": "A", "arg": 1}, {"kind": "B", "arg": 2}, {"kind": "A", "arg": 3}],
        ["A(1)", "B(2)", "A(3)"],
        activities=("StepA", "StepB", "StepA"),
    ),
    _s(
        "document-approved",
        "DocumentApproval",
        "doc1",
        "yes by reviewer",
        ("raise", "Approval", "yes"),
        activities=("SubmitDocument",),
    ),
    _s(
        "document-escalated",
        "DocumentApproval",
        "doc2",
        "ok by manager",
        ("advance", 3600),
        ("raise", "Approval", "ok"),
        activities=("SubmitDocument", "NotifyManager"),
    ),
    _s(
        "document-abandoned",
        "DocumentApproval",
        "doc3",
        "rejected: no response",
        activities=("SubmitDocument", "NotifyManager"),
    ),
    _s(
        "batch",
        "BatchProcessor",
        {"items": [1, 2, 3, 4, 5], "offset": 0, "total": 0},
        {"total": 55, "executions": 3},
        activities=("Square",) * 5,
    ),
    _s(
        "session",
        "SessionPattern",
        ["a", "b", "c"],
        {"replies": ["A", "B", "C"], "one_session": True},
    ),
    _s("tag-fallback", "TaggedRender", 7, "cpu:7", activities=("RenderOnCpu",)),
    _s(
        "typed",
        "TypedOrder",
        Order(id="t1", items=["x", "y", "z"], unit_price=2.5),
        {"order_id": "t1", "total": 15.0, "lines": 3},
    ),
)
"""Every guide scenario; instance ids are unique, so all can run in one world."""


def scenario(instance: str) -> Scenario:
    """The scenario whose instance is ``instance``."""
    return next(s for s in SCENARIOS if s.instance == instance)


# -- running -------------------------------------------------------------------------------


def _settle(world: World, *, advance_time: bool) -> None:
    for _ in range(20_000):
        # Activities routed to a tag nobody serves stay queued forever: drop them unrun.
        world.activities = [
            entry for entry in world.activities if entry[1].tag not in UNSERVED_TAGS
        ]
        if world.step():
            continue
        if not advance_time or not world._advance_to_next_timer():
            return
    raise AssertionError("world did not settle")


def run_scenario(world: World, scenario: Scenario) -> None:
    """Start ``scenario``'s instance, play its script, and run until nothing is left.

    The world settles (no virtual time passes) before each scripted step, so a
    raised event always finds the wait the orchestration is blocked on.
    """
    world.start(scenario.instance, scenario.name, scenario.input)
    _settle(world, advance_time=False)
    for step in scenario.script:
        if step[0] == "raise":
            world.raise_event(scenario.instance, step[1], step[2])
        elif step[0] == "enqueue":
            world.enqueue_event(scenario.instance, step[1], step[2])
        else:
            world.advance(step[1])
        _settle(world, advance_time=False)
    _settle(world, advance_time=True)


def check_scenario(world: World, scenario: Scenario) -> None:
    """Assert that ``scenario`` reached its expected end in ``world``."""
    if scenario.status == "Completed":
        assert world.output(scenario.instance) == scenario.expected
    else:
        details = world.failure(scenario.instance)
        assert scenario.expected in details.message, details
        assert details.category == "application"
    if scenario.activities is not None:
        ran = sorted(
            item.name for item in world.activity_runs if _belongs(item.instance, scenario.instance)
        )
        assert tuple(ran) == scenario.activities
    if scenario.kv is not None:
        assert world.kv(scenario.instance) == scenario.kv
    if scenario.custom_status is not None:
        assert world.instances[scenario.instance].custom_status == scenario.custom_status


def _belongs(instance: str, root: str) -> bool:
    return instance == root or instance.startswith(f"{root}::")
