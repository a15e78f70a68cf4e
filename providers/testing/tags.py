"""Tag filters: each worker gets exactly the activities its filter selects; tags and sessions survive every path."""

from __future__ import annotations

from durox.core.tags import TagFilter
from durox.providers.base import SessionClaim
from durox.providers.testing.helpers import activity, drain_work, fetch_work, start_instance
from durox.providers.testing.registry import Env, check

C = "tag_filtering"


def _enqueue_mix(env: Env) -> None:
    """Activities 1..4 tagged None, gpu, None, cpu; 5 tagged io."""
    for id, tag in ((1, None), (2, "gpu"), (3, None), (4, "cpu"), (5, "io")):
        env.provider.enqueue_worker(activity("i1", id, tag=tag))


@check(C)
def default_only_fetches_untagged(env: Env) -> None:
    """TagFilter.default_only() serves untagged activities only."""
    _enqueue_mix(env)
    assert [a.id for a in drain_work(env.provider, TagFilter.default_only())] == [1, 3]


@check(C)
def tags_fetches_only_matching(env: Env) -> None:
    """TagFilter.tags([gpu]) serves gpu activities only."""
    _enqueue_mix(env)
    assert [a.id for a in drain_work(env.provider, TagFilter.tags(["gpu"]))] == [2]


@check(C)
def default_and_fetches_untagged_and_matching(env: Env) -> None:
    """TagFilter.default_and([cpu]) serves untagged and cpu activities, in FIFO order."""
    _enqueue_mix(env)
    assert [a.id for a in drain_work(env.provider, TagFilter.default_and(["cpu"]))] == [1, 3, 4]


@check(C)
def multi_tag_filter_matches_any_listed_tag(env: Env) -> None:
    """TagFilter.tags([gpu, io]) serves both tags and nothing untagged."""
    _enqueue_mix(env)
    assert [a.id for a in drain_work(env.provider, TagFilter.tags(["io", "gpu"]))] == [2, 5]


@check(C)
def any_filter_fetches_everything(env: Env) -> None:
    """TagFilter.any() serves every activity in enqueue order."""
    _enqueue_mix(env)
    assert [a.id for a in drain_work(env.provider, TagFilter.any())] == [1, 2, 3, 4, 5]


@check(C)
def none_filter_fetches_nothing(env: Env) -> None:
    """TagFilter.none() returns None even with work of every kind queued, and leaves it queued."""
    _enqueue_mix(env)
    assert env.provider.fetch_work_item(lock_timeout=30, tag_filter=TagFilter.none()) is None
    assert len(drain_work(env.provider, TagFilter.any())) == 5


@check(C)
def disjoint_workers_split_the_queue_exactly(env: Env) -> None:
    """Workers with gpu-only, default-only and cpu+io filters together take every activity exactly once."""
    _enqueue_mix(env)
    p = env.provider
    gpu = drain_work(p, TagFilter.tags(["gpu"]))
    plain = drain_work(p, TagFilter.default_only())
    rest = drain_work(p, TagFilter.tags(["cpu", "io"]))
    assert ([a.id for a in gpu], [a.id for a in plain], [a.id for a in rest]) == (
        [2],
        [1, 3],
        [4, 5],
    )
    assert drain_work(p, TagFilter.any()) == []


@check(C)
def tag_and_session_survive_enqueue_worker(env: Env) -> None:
    """An activity enqueued directly comes back with its tag and session id."""
    p = env.provider
    message = activity("i1", 2, tag="gpu", session_id="s1")
    p.enqueue_worker(message)
    work = fetch_work(
        p, tag_filter=TagFilter.tags(["gpu"]), session=SessionClaim(owner_id="w", lock_timeout=30)
    )
    assert work is not None and work.message == message


@check(C)
def tag_and_session_survive_the_ack_path(env: Env) -> None:
    """Activities written by an orchestration ack keep tag, session id and every other field."""
    p = env.provider
    items = [
        activity("i1", 2, tag="gpu", session_id="s1", input='{"a": [1]}'),
        activity("i1", 3, tag="gpu"),
    ]
    start_instance(p, "i1", worker_items=items)
    claim = SessionClaim(owner_id="w", lock_timeout=30)
    first = fetch_work(p, tag_filter=TagFilter.tags(["gpu"]), session=claim)
    second = fetch_work(p, tag_filter=TagFilter.tags(["gpu"]), session=claim)
    assert first is not None and second is not None
    assert (first.message, second.message) == tuple(items)


@check(C)
def tag_survives_abandon_and_refetch(env: Env) -> None:
    """An abandoned tagged activity is still invisible to default-only workers and served to its tag."""
    p = env.provider
    p.enqueue_worker(activity("i1", 2, tag="gpu"))
    work = fetch_work(p, tag_filter=TagFilter.tags(["gpu"]))
    assert work is not None
    p.abandon_work_item(work.lock_token)
    assert fetch_work(p) is None
    again = fetch_work(p, tag_filter=TagFilter.tags(["gpu"]))
    assert again is not None and again.message.tag == "gpu" and again.attempt_count == 2
