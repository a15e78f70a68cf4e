"""Custom status: stored on the instance, versioned, changed only when a commit says so."""

from __future__ import annotations

from durox.providers.testing.helpers import (
    complete_instance,
    continue_as_new,
    create,
    start_instance,
    turn,
)
from durox.providers.testing.registry import Env, check

C = "custom_status"


def _cs(env: Env) -> tuple[str | None, int]:
    status = env.provider.get_instance_status("i1")
    assert status is not None
    return status.custom_status, status.custom_status_version


@check(C)
def new_instance_has_no_custom_status(env: Env) -> None:
    """A new instance reports custom status None at version 0."""
    create(env.provider, "i1")
    assert _cs(env) == (None, 0)


@check(C)
def setting_stores_value_and_bumps_version(env: Env) -> None:
    """A commit that changes the custom status stores it and raises the version to 1."""
    start_instance(env.provider, "i1", custom_status="step 1", custom_status_changed=True)
    assert _cs(env) == ("step 1", 1)


@check(C)
def clearing_stores_none_and_bumps_version(env: Env) -> None:
    """Resetting (None with changed=True) clears the value and still bumps the version."""
    p = env.provider
    start_instance(p, "i1", custom_status="x", custom_status_changed=True)
    turn(p, "i1", custom_status=None, custom_status_changed=True)
    assert _cs(env) == (None, 2)


@check(C)
def unchanged_commit_preserves_status_and_version(env: Env) -> None:
    """A commit that does not change it leaves value and version alone, even if it carries a value."""
    p = env.provider
    start_instance(p, "i1", custom_status="kept", custom_status_changed=True)
    turn(p, "i1")
    turn(p, "i1", custom_status="ignored", custom_status_changed=False)
    assert _cs(env) == ("kept", 1)


@check(C)
def version_counts_every_change(env: Env) -> None:
    """Each change adds exactly one, even when the same value is set again."""
    p = env.provider
    start_instance(p, "i1", custom_status="a", custom_status_changed=True)
    for value in ("b", "b", None, "c"):
        turn(p, "i1", custom_status=value, custom_status_changed=True)
    assert _cs(env) == ("c", 5)


@check(C)
def custom_status_survives_continue_as_new_and_completion(env: Env) -> None:
    """The value and version live on the instance: they persist across executions and after completion."""
    p = env.provider
    start_instance(p, "i1", custom_status="phase 1", custom_status_changed=True)
    continue_as_new(p, "i1")
    assert _cs(env) == ("phase 1", 1)
    complete_instance(p, "i1", custom_status="finished", custom_status_changed=True)
    assert _cs(env) == ("finished", 2)


@check(C)
def custom_status_round_trips_text_exactly(env: Env) -> None:
    """Unicode, quotes and a large value come back byte for byte."""
    value = 'état "ok" ✓ ' + "x" * 200_000
    start_instance(env.provider, "i1", custom_status=value, custom_status_changed=True)
    assert _cs(env) == (value, 1)


@check(C)
def custom_status_is_per_instance(env: Env) -> None:
    """Changing one instance's custom status leaves another's untouched."""
    p = env.provider
    start_instance(p, "i1", custom_status="one", custom_status_changed=True)
    start_instance(p, "i2")
    turn(p, "i2", custom_status="two", custom_status_changed=True)
    turn(p, "i2", custom_status="two", custom_status_changed=True)
    assert _cs(env) == ("one", 1)
    other = p.get_instance_status("i2")
    assert other is not None and (other.custom_status, other.custom_status_version) == ("two", 2)
