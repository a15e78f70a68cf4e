"""Errors: display messages, categories, recording exceptions from user code."""

from __future__ import annotations

import pytest

from durox import errors as public
from durox.core.errors import (
    ActivityFailed,
    DuroxError,
    ErrorDetails,
    InstanceNotFound,
    InvalidArgument,
    LockLost,
    NondeterminismError,
    PayloadError,
    ProviderClosed,
    ProviderError,
    SubOrchestrationFailed,
    WaitTimeout,
)


@pytest.mark.parametrize(
    ("details", "shown"),
    [
        (ErrorDetails(category="application", kind="cancelled", message="bye"), "canceled: bye"),
        (
            ErrorDetails(category="configuration", kind="nondeterminism", message="at 3"),
            "nondeterministic: at 3",
        ),
        (
            ErrorDetails(category="infrastructure", kind="poison", message="10 tries"),
            "poison: 10 tries",
        ),
        (
            ErrorDetails(category="infrastructure", kind="db", message="down"),
            "infrastructure: down",
        ),
        (
            ErrorDetails(
                category="application",
                kind="activity_failed",
                message="boom",
                error_type="ValueError",
            ),
            "ValueError: boom",
        ),
        (
            ErrorDetails(
                category="application",
                kind="activity_failed",
                message="ValueError: boom",
                error_type="ValueError",
            ),
            "ValueError: boom",
        ),
        (ErrorDetails(category="application", kind="x", message="plain"), "plain"),
    ],
)
def test_display_message(details: ErrorDetails, shown: str) -> None:
    assert details.display_message() == shown


def test_from_exception_records_type_and_message() -> None:
    details = ErrorDetails.from_exception(KeyError("k"))
    assert details == ErrorDetails(
        category="application", kind="orchestration_failed", message="'k'", error_type="KeyError"
    )
    assert ErrorDetails.from_exception(RuntimeError()).message == "RuntimeError"
    assert ErrorDetails.from_exception(ValueError("v"), kind="custom").kind == "custom"


def test_from_exception_keeps_a_re_raised_failure() -> None:
    original = ErrorDetails(
        category="infrastructure", kind="poison", message="gone", error_type=None
    )
    exc = ActivityFailed("gone", error_type="OSError", details=original, attempt=4)
    details = ErrorDetails.from_exception(exc)
    assert (details.category, details.kind, details.message, details.error_type) == (
        "infrastructure",
        "poison",
        "gone",
        "OSError",
    )
    bare = ErrorDetails.from_exception(SubOrchestrationFailed("kid", error_type="E"))
    assert (bare.category, bare.kind, bare.error_type) == (
        "application",
        "orchestration_failed",
        "E",
    )


def test_failure_exceptions_carry_their_fields() -> None:
    exc = ActivityFailed("m", error_type="T", attempt=2)
    assert (exc.message, exc.error_type, exc.attempt, exc.details, str(exc)) == (
        "m",
        "T",
        2,
        None,
        "m",
    )
    assert repr(exc) == "ActivityFailed('m', error_type='T')"


def test_hierarchy() -> None:
    for cls in (
        ActivityFailed,
        SubOrchestrationFailed,
        NondeterminismError,
        InvalidArgument,
        PayloadError,
        InstanceNotFound,
        WaitTimeout,
        ProviderError,
        LockLost,
        ProviderClosed,
    ):
        assert issubclass(cls, DuroxError)
    assert issubclass(InvalidArgument, ValueError) and issubclass(PayloadError, ValueError)
    assert issubclass(InstanceNotFound, LookupError) and issubclass(WaitTimeout, TimeoutError)
    assert issubclass(LockLost, ProviderError) and not LockLost("x").retryable
    assert ProviderError("x", retryable=True, operation="ack").operation == "ack"
    assert "closed" in str(ProviderClosed())


def test_public_module_re_exports_the_same_classes() -> None:
    assert public.ActivityFailed is ActivityFailed
    assert public.ErrorDetails is ErrorDetails
    assert public.NondeterminismError is NondeterminismError
