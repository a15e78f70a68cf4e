"""Settings shared by the whole test suite.

Hypothesis profiles (select one with ``HYPOTHESIS_PROFILE=<name>``):

- ``dev`` (default): a moderate number of examples, fast enough to run often.
- ``ci``: more examples; chosen automatically when the ``CI`` environment variable is
  set, as it is in ``.ci/run``.
- ``fast``: a handful of examples, for a quick smoke run while editing.

None of the profiles has a deadline: durox tests touch real SQLite files and a real
PostgreSQL server, whose latency on a shared machine says nothing about correctness.
Provider fixtures live in ``tests/providers/conftest.py``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_BASE = settings(
    deadline=None,
    # Storage-backed examples are slow by nature; that is not a bug in the test.
    suppress_health_check=[HealthCheck.too_slow],
)

settings.register_profile("dev", _BASE, max_examples=50)
settings.register_profile("ci", _BASE, max_examples=200, print_blob=True)
settings.register_profile("fast", _BASE, max_examples=10)


def _profile_name() -> str:
    """The explicitly requested profile, else ``ci`` under CI, else ``dev``."""
    explicit = os.environ.get("HYPOTHESIS_PROFILE")
    if explicit:
        return explicit
    return "ci" if os.environ.get("CI") else "dev"


settings.load_profile(_profile_name())
