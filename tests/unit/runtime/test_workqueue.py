"""Work queue semantics: dedupe, exclusivity per key, re-run, backoff, add_after, shutdown."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from experiment_operator.runtime.workqueue import HIGH_RUN, Priority, RateLimiter, WorkQueue

Key = tuple[str, str]


class FakeClock:
    """A settable monotonic clock for the token bucket."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_key_is_queued_once_however_often_added() -> None:
    q: WorkQueue[Key] = WorkQueue("t-dedupe")
    for _ in range(5):
        q.add(("ns", "a"))
    q.add(("ns", "b"))
    assert len(q) == 2
    assert await q.get() == ("ns", "a")
    assert await q.get() == ("ns", "b")
    assert len(q) == 0


async def test_key_in_progress_is_not_handed_out_and_reruns_after_done() -> None:
    q: WorkQueue[Key] = WorkQueue("t-rerun")
    key = ("ns", "a")
    q.add(key)
    assert await q.get() == key
    q.add(key)  # added while processing
    q.add(key)
    assert len(q) == 0, "must not be queued while a worker holds it"
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not second.done()
    q.done(key)
    assert await asyncio.wait_for(second, 5) == key
    q.done(key)
    assert len(q) == 0


async def test_key_done_without_readd_is_not_rerun() -> None:
    q: WorkQueue[Key] = WorkQueue("t-once")
    q.add(("ns", "a"))
    key = await q.get()
    assert key is not None
    q.done(key)
    assert len(q) == 0


async def test_workers_never_process_one_key_concurrently() -> None:
    q: WorkQueue[str] = WorkQueue("t-concurrency")
    active: set[str] = set()
    overlaps: list[str] = []
    runs: dict[str, int] = {}
    progress = asyncio.Event()

    async def worker() -> None:
        while (key := await q.get()) is not None:
            if key in active:
                overlaps.append(key)
            active.add(key)
            runs[key] = runs.get(key, 0) + 1
            await asyncio.sleep(0.002)
            active.discard(key)
            q.done(key)
            progress.set()

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    for i in range(200):
        q.add(f"k{i % 3}")
        await asyncio.sleep(0)
    async with asyncio.timeout(10):
        while len(q) or active:
            progress.clear()
            await progress.wait()
    q.shutdown()
    await asyncio.gather(*workers)
    assert overlaps == []
    assert set(runs) == {"k0", "k1", "k2"}


async def test_shutdown_releases_waiting_workers_and_refuses_adds() -> None:
    q: WorkQueue[str] = WorkQueue("t-shutdown")
    waiters = [asyncio.create_task(q.get()) for _ in range(3)]
    await asyncio.sleep(0)
    q.add_after("later", 30)
    q.shutdown()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 5) == [None, None, None]
    q.add("x")
    assert len(q) == 0
    assert await q.get() is None


async def test_add_after_delivers_later_and_earliest_wins() -> None:
    q: WorkQueue[str] = WorkQueue("t-after")
    q.add_after("slow", 30)
    q.add_after("fast", 0.05)
    q.add_after("fast", 60)  # later duplicate must not postpone the pending add
    assert len(q) == 0
    assert await asyncio.wait_for(q.get(), 5) == "fast"
    assert len(q) == 0, "the 30 s key must still be waiting"
    q.shutdown()


async def test_a_cancelled_delayed_add_never_comes() -> None:
    q: WorkQueue[str] = WorkQueue("t-after-cancel")
    q.add_after("a", 0.05)
    q.cancel_delayed("a")
    q.cancel_delayed("b")  # none pending: nothing happens
    await asyncio.sleep(0.15)
    assert len(q) == 0
    q.shutdown()


async def test_add_after_zero_adds_now() -> None:
    q: WorkQueue[str] = WorkQueue("t-after-zero")
    q.add_after("now", 0)
    assert len(q) == 1


async def test_cancelled_waiter_passes_wakeup_on() -> None:
    q: WorkQueue[str] = WorkQueue("t-cancel")
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("x")
    first.cancel()  # woken but cancelled before it ran
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 5) == "x"


def test_backoff_doubles_per_key_and_forget_resets() -> None:
    rl: RateLimiter[str] = RateLimiter(clock=FakeClock())
    delays = [rl.when("a") for _ in range(5)]
    assert delays == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert rl.when("b") == pytest.approx(0.005), "backoff is per key"
    assert rl.num_requeues("a") == 5
    rl.forget("a")
    assert rl.num_requeues("a") == 0
    assert rl.when("a") == pytest.approx(0.005)


def test_backoff_is_capped_at_1000_seconds() -> None:
    rl: RateLimiter[str] = RateLimiter(clock=FakeClock(), qps=1e9, burst=10**9)
    delays = [rl.when("a") for _ in range(100)]
    assert max(delays) == 1000.0
    assert delays[-1] == 1000.0


def test_token_bucket_limits_overall_retries() -> None:
    clock = FakeClock()
    rl: RateLimiter[int] = RateLimiter(clock=clock)
    burst = [rl.when(i) for i in range(100)]
    assert burst == pytest.approx([0.005] * 100), "burst of 100 passes at per-key backoff"
    assert rl.when(100) == pytest.approx(0.1)  # 10 qps: the 101st waits one token
    assert rl.when(101) == pytest.approx(0.2)
    clock.now += 10  # refill
    assert rl.when(102) == pytest.approx(0.005)


async def test_add_rate_limited_uses_backoff_and_counts_requeues() -> None:
    q: WorkQueue[str] = WorkQueue("t-ratelimited")
    q.add_rate_limited("k")
    assert q.num_requeues("k") == 1
    assert await asyncio.wait_for(q.get(), 5) == "k"
    q.done("k")
    q.forget("k")
    assert q.num_requeues("k") == 0


async def test_low_priority_keys_wait_behind_the_rest_until_added_normally() -> None:
    q: WorkQueue[Key] = WorkQueue("t-priority")
    settled = [("ns", f"s{i}") for i in range(3)]
    for key in settled:
        q.add(key, priority=Priority.LOW)
    q.add(("ns", "new"))
    q.add(("ns", "s2"))  # an event for a settled object: it moves ahead
    q.add(("ns", "s0"), priority=Priority.LOW)  # already waiting: no change
    assert len(q) == 4
    order = [await q.get() for _ in range(4)]
    assert order == [("ns", "new"), ("ns", "s2"), ("ns", "s0"), ("ns", "s1")]
    assert len(q) == 0


async def test_a_promoted_key_is_handed_out_once() -> None:
    q: WorkQueue[Key] = WorkQueue("t-promoted-once")
    key = ("ns", "a")
    q.add(key, priority=Priority.LOW)
    q.add(key)  # promoted: its place in the low lane is stale
    assert await q.get() == key
    q.add(key, priority=Priority.LOW)  # added again while in progress
    assert len(q) == 0
    waiting = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not waiting.done(), "the stale low-lane entry must not hand out a key in progress"
    q.done(key)
    assert await asyncio.wait_for(waiting, 5) == key
    q.done(key)
    assert len(q) == 0


async def test_high_priority_keys_go_first_and_a_key_only_moves_up() -> None:
    q: WorkQueue[str] = WorkQueue("t-high")
    q.add("settled", priority=Priority.LOW)
    q.add("new")
    q.add("child-changed", priority=Priority.HIGH)
    q.add("new-then-changed")
    q.add("new-then-changed", priority=Priority.HIGH)  # moves up
    q.add("child-changed", priority=Priority.LOW)  # never down
    assert len(q) == 4
    order = [await q.get() for _ in range(4)]
    assert order == ["child-changed", "new-then-changed", "new", "settled"]
    assert REGISTRY.get_sample_value("workqueue_depth", {"name": "t-high"}) == 0


async def test_a_key_added_with_high_priority_while_in_progress_comes_back_high() -> None:
    q: WorkQueue[str] = WorkQueue("t-high-in-progress")
    q.add("a")
    assert await q.get() == "a"
    q.add("b")
    q.add("a")
    q.add("a", priority=Priority.HIGH)  # e.g. its child changed during the reconcile
    q.done("a")
    assert [await q.get() for _ in range(2)] == ["a", "b"]


async def test_a_stream_of_high_keys_lets_a_waiting_lower_key_through() -> None:
    q: WorkQueue[str] = WorkQueue("t-high-run")
    q.add("new")
    for i in range(2 * HIGH_RUN):
        q.add(f"high-{i}", priority=Priority.HIGH)
    order = [await q.get() for _ in range(2 * HIGH_RUN + 1)]
    assert order.index("new") == HIGH_RUN
    assert [k for k in order if k != "new"] == [f"high-{i}" for i in range(2 * HIGH_RUN)]
