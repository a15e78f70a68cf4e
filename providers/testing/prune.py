"""Pruning: old finished executions go; the current one and KV always stay."""

from __future__ import annotations

from durox.core import history
from durox.core.errors import InstanceNotFound
from durox.providers.testing.helpers import (
    complete_instance,
    continue_as_new,
    raises,
    start_instance,
)
from durox.providers.testing.registry import Env, check

C = "prune"


def _four_executions(env: Env) -> None:
    start_instance(env.provider, "i1")
    for n in (2, 3, 4):
        env.advance(10)
        continue_as_new(env.provider, "i1", input=f'"{n}"')


@check(C, admin=True)
def keep_last_keeps_the_newest(env: Env) -> None:
    """keep_last=2 over executions 1..4 deletes 1 and 2 with their events, and reports it."""
    p, admin = env.provider, env.admin
    _four_executions(env)
    events = len(p.read_history("i1", 1)) + len(p.read_history("i1", 2))
    res = admin.prune_executions("i1", keep_last=2)
    assert (res.instances_processed, res.executions_deleted, res.events_deleted) == (1, 2, events)
    assert admin.list_executions("i1") == [3, 4]
    assert p.read_history("i1", 1) == [] and len(p.read_history("i1", 3)) == 2


@check(C, admin=True)
def no_option_prunes_every_finished_execution(env: Env) -> None:
    """With neither keep_last nor completed_before_ms, every finished non-current execution goes."""
    p, admin = env.provider, env.admin
    _four_executions(env)
    res = admin.prune_executions("i1")
    assert (res.instances_processed, res.executions_deleted) == (1, 3)
    assert admin.list_executions("i1") == [4]
    assert len(p.read_history("i1")) == 1


@check(C, admin=True)
def current_execution_is_never_pruned(env: Env) -> None:
    """keep_last=0 or 1 still keeps the current execution, which stays Running and readable."""
    p, admin = env.provider, env.admin
    _four_executions(env)
    admin.prune_executions("i1", keep_last=0)
    assert admin.list_executions("i1") == [4]
    admin.prune_executions("i1", keep_last=1)
    assert admin.list_executions("i1") == [4]
    status = p.get_instance_status("i1")
    assert status is not None and (status.status, status.execution_id) == ("Running", 4)
    assert len(p.read_history("i1")) == 1


@check(C, admin=True)
def completed_before_prunes_only_older_executions(env: Env) -> None:
    """completed_before_ms prunes executions that finished before it and keeps later ones."""
    p, admin = env.provider, env.admin
    start_instance(p, "i1")
    continue_as_new(p, "i1")  # execution 1 completes now
    env.advance(100)
    cutoff = p.now_ms()
    env.advance(100)
    continue_as_new(p, "i1")  # execution 2 completes after the cutoff
    res = admin.prune_executions("i1", completed_before_ms=cutoff)
    assert res.executions_deleted == 1
    assert admin.list_executions("i1") == [2, 3]


@check(C, admin=True)
def both_options_must_hold(env: Env) -> None:
    """With keep_last and completed_before_ms an execution is pruned only if both allow it."""
    p, admin = env.provider, env.admin
    start_instance(p, "i1")
    continue_as_new(p, "i1")
    continue_as_new(p, "i1")
    env.advance(100)
    cutoff = p.now_ms()
    env.advance(100)
    continue_as_new(p, "i1")  # executions 1 and 2 before the cutoff, 3 after, 4 current
    res = admin.prune_executions("i1", keep_last=3, completed_before_ms=cutoff)
    assert res.executions_deleted == 1
    assert admin.list_executions("i1") == [2, 3, 4]


@check(C, admin=True)
def prune_unknown_instance_raises(env: Env) -> None:
    """Pruning an unknown id raises InstanceNotFound."""
    raises(InstanceNotFound, env.admin.prune_executions, "nobody", keep_last=1)


@check(C, admin=True)
def prune_keeps_kv(env: Env) -> None:
    """KV written by pruned executions survives: KV belongs to the instance."""
    p, admin = env.provider, env.admin
    start_instance(
        p,
        "i1",
        kv_ops=[
            history.KeyValueSet(event_id=2, timestamp_ms=0, key="a", value="1", updated_at_ms=5)
        ],
    )
    continue_as_new(p, "i1")
    continue_as_new(p, "i1")
    admin.prune_executions("i1", keep_last=1)
    assert admin.list_executions("i1") == [3]
    assert p.get_kv_all_values("i1") == {"a": "1"}


@check(C, admin=True)
def prune_of_single_execution_instance_is_a_no_op(env: Env) -> None:
    """An instance with one (completed) execution has nothing to prune."""
    p, admin = env.provider, env.admin
    start_instance(p, "i1")
    complete_instance(p, "i1")
    res = admin.prune_executions("i1", keep_last=0)
    assert (res.executions_deleted, res.events_deleted) == (0, 0)
    assert p.get_instance_status("i1").status == "Completed"  # type: ignore[union-attr]
