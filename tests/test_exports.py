"""The public names that SPEC §2 fixes exist, where SPEC says, exactly once.

User code, the docs and the other test suites import these names; renaming or
dropping one is a breaking change, so it must fail here first. The checks are by
name and by kind (class, callable, subclass of the right builtin), not behaviour:
the behaviour has its own tests.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import attrs
import pytest

import durox
import durox.errors

#: ``from durox import ...`` (SPEC §2).
TOP_LEVEL = (
    "OrchestrationContext",
    "ActivityContext",
    "Registry",
    "RetryPolicy",
    "Backoff",
    "TagFilter",
    "RuntimeOptions",
)

#: ``durox.errors`` exceptions, all re-exported from ``durox`` (SPEC §2 "Errors"),
#: with the builtin each must also be, so callers can catch it generically.
ERRORS: dict[str, type[BaseException]] = {
    "DuroxError": Exception,
    "ActivityFailed": Exception,
    "SubOrchestrationFailed": Exception,
    "NondeterminismError": Exception,
    "InvalidArgument": ValueError,
    "PayloadError": ValueError,
    "InstanceAlreadyExists": Exception,
    "InstanceNotFound": LookupError,
    "WaitTimeout": TimeoutError,
    "ProviderError": Exception,
    "ProviderClosed": Exception,
}

PROVIDERS = ("MemoryProvider", "SqliteProvider", "PostgresProvider")
DRIVERS = ("threads", "asyncio", "trio")

#: Client methods SPEC §2 names; every driver's Client has all of them.
CLIENT_METHODS = (
    "start_orchestration",
    "raise_event",
    "enqueue_event",
    "cancel_instance",
    "get_orchestration_status",
    "wait_for_orchestration",
    "wait_for_status_change",
    "get_kv_value",
    "get_kv_all_values",
    "wait_for_kv_value",
    "has_management_capability",
    "list_all_instances",
    "list_instances_by_status",
    "get_instance_info",
    "list_executions",
    "get_execution_info",
    "read_execution_history",
    "get_system_metrics",
    "get_queue_depths",
    "get_orchestration_stats",
    "delete_instance",
    "prune_executions",
)

#: Everything an orchestration may call (SPEC §2, OrchestrationContext table).
CONTEXT_METHODS = (
    "schedule_activity",
    "schedule_activity_on_session",
    "schedule_activity_with_retry",
    "schedule_timer",
    "schedule_wait",
    "wait_for_event",
    "dequeue_event",
    "schedule_sub_orchestration",
    "schedule_orchestration",
    "select",
    "select2",
    "select3",
    "join",
    "block",
    "continue_as_new",
    "new_guid",
    "utc_now",
    "get_kv_value_from_instance",
    "set_custom_status",
    "reset_custom_status",
    "get_custom_status",
    "set_kv_value",
    "get_kv_value",
    "get_kv_all_values",
    "get_kv_all_keys",
    "get_kv_length",
    "clear_kv_value",
    "clear_all_kv_values",
    "prune_kv_values_updated_before",
    "trace_info",
    "trace_warn",
    "trace_error",
    "trace_debug",
    "instance_id",
    "execution_id",
    "orchestration_name",
    "orchestration_version",
    "is_replaying",
)

ACTIVITY_CONTEXT_METHODS = (
    "is_cancelled",
    "cancelled",
    "trace_info",
    "trace_warn",
    "trace_error",
    "trace_debug",
)

RUNTIME_OPTIONS_FIELDS = (
    "orchestration_concurrency",
    "worker_concurrency",
    "orchestrator_lock_timeout",
    "worker_lock_timeout",
    "worker_tag_filter",
    "activity_cancellation_grace_period",
    "max_attempts",
    "unregistered_backoff_base",
    "unregistered_backoff_max",
    "session_lock_timeout",
    "max_sessions_per_runtime",
    "session_idle_timeout",
    "worker_node_id",
)


def _public(name: str) -> type:
    """``durox.<name>``, looked up at run time so a missing name fails one test."""
    value = getattr(durox, name)
    assert inspect.isclass(value), f"durox.{name} should be a class"
    return value


def _missing(obj: object, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if not hasattr(obj, name)]


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_top_level_name(name: str) -> None:
    assert hasattr(durox, name), f"`from durox import {name}` must work (SPEC §2)"
    assert inspect.isclass(getattr(durox, name))


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_error_defined_in_errors_and_reexported(name: str) -> None:
    assert hasattr(durox.errors, name), f"durox.errors.{name} is missing (SPEC §2)"
    cls: type = getattr(durox.errors, name)
    assert getattr(durox, name, None) is cls, f"durox.{name} must be durox.errors.{name}"
    assert issubclass(cls, durox.errors.DuroxError)
    assert issubclass(cls, ERRORS[name])


def test_every_exception_in_errors_is_reexported() -> None:
    namespace = vars(durox.errors)
    exported = [
        name
        for name, value in namespace.items()
        if inspect.isclass(value) and issubclass(value, BaseException)
    ]
    assert set(ERRORS) <= set(exported)
    assert [name for name in exported if getattr(durox, name, None) is not namespace[name]] == []


def test_failure_errors_carry_details() -> None:
    for name in ("ActivityFailed", "SubOrchestrationFailed"):
        err = getattr(durox.errors, name)("boom", error_type="ValueError")
        assert (err.message, err.error_type) == ("boom", "ValueError")
        assert hasattr(err, "details")
    assert hasattr(durox.errors.ProviderError("disk full"), "retryable")


@pytest.mark.parametrize("name", PROVIDERS)
def test_provider(name: str) -> None:
    import durox.providers

    assert inspect.isclass(getattr(durox.providers, name, None)), (
        f"`from durox.providers import {name}` must work (SPEC §2)"
    )


def test_sqlite_provider_has_in_memory() -> None:
    from durox.providers import SqliteProvider

    assert callable(SqliteProvider.in_memory)


def _driver(name: str) -> ModuleType:
    return importlib.import_module(f"durox.drivers.{name}")


@pytest.mark.parametrize("driver", DRIVERS)
def test_driver_runtime_and_client(driver: str) -> None:
    module = _driver(driver)
    for name in ("Runtime", "Client"):
        assert inspect.isclass(getattr(module, name, None)), f"durox.drivers.{driver}.{name}"
    assert _missing(module.Client, CLIENT_METHODS) == []
    assert _missing(module.Runtime, ("shutdown",)) == []


@pytest.mark.parametrize("driver", ["asyncio", "trio"])
def test_async_client_methods_are_coroutines(driver: str) -> None:
    # SPEC: "await client.…" with the same method names as the blocking client.
    client = _driver(driver).Client
    blocking = [
        name
        for name in CLIENT_METHODS
        if name != "has_management_capability"
        and not inspect.iscoroutinefunction(getattr(client, name))
    ]
    assert blocking == []


def test_orchestration_context_api() -> None:
    assert _missing(_public("OrchestrationContext"), CONTEXT_METHODS) == []


def test_activity_context_api() -> None:
    assert _missing(_public("ActivityContext"), ACTIVITY_CONTEXT_METHODS) == []


def test_registry_api() -> None:
    names = ("orchestration", "activity", "add_orchestration", "add_activity", "include")
    assert _missing(_public("Registry"), names) == []


def test_tag_filter_constructors() -> None:
    names = ("default_only", "tags", "default_and", "any", "none")
    assert _missing(_public("TagFilter"), names) == []


def test_backoff_constructors() -> None:
    assert _missing(_public("Backoff"), ("none", "fixed", "linear", "exponential")) == []


def test_runtime_options_fields() -> None:
    fields = attrs.fields_dict(_public("RuntimeOptions"))
    assert [name for name in RUNTIME_OPTIONS_FIELDS if name not in fields] == []
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        _public("RuntimeOptions")().worker_concurrency = 1


def test_command_line_entry_point() -> None:
    # pyproject's console script `durox = "durox.cli:main"` (SPEC §2, Command line).
    cli = importlib.import_module("durox.cli")
    assert callable(getattr(cli, "main", None))


@pytest.mark.parametrize("module", ["durox", "durox.errors", "durox.providers"])
def test_all_lists_each_name_once_and_every_name_exists(module: str) -> None:
    mod = importlib.import_module(module)
    names = list(getattr(mod, "__all__", ()))
    assert len(names) == len(set(names)), f"{module}.__all__ repeats a name"
    assert [name for name in names if not hasattr(mod, name)] == []
