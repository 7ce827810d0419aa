"""A rate-limited work queue with client-go's semantics.

- a key is queued at most once however often it is added (dedupe while waiting);
- a key being processed is never handed to a second worker; if it is added meanwhile it is
  queued again when the first worker calls `done`, so the latest state is always reconciled;
- failures back off per key (5 ms doubling to 1000 s), limited overall by a token bucket
  (10 qps, burst 100), taking the larger of the two delays — client-go's default controller
  rate limiter;
- `shutdown` wakes every waiting worker, which then gets None and exits;
- keys have a priority (as in controller-runtime's priority queue): `HIGH` keys go before
  `NORMAL` ones, which go before `LOW` ones, first in first out within each; adding a waiting
  key with a higher priority moves it up. A controller queues changes of the objects it made as
  `HIGH` (work under way finishes first), everything at a start or resync as `LOW` when it
  looks settled. So that a stream of `HIGH` keys cannot starve the rest, every
  `HIGH_RUN + 1`-th key comes from a lower lane while one waits.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable
from enum import IntEnum
from typing import Generic, TypeVar

from . import metrics

K = TypeVar("K", bound=Hashable)


class RateLimiter(Generic[K]):
    """max(per-key exponential backoff, overall token bucket), as client-go's default."""

    def __init__(
        self,
        base_delay: float = 0.005,
        max_delay: float = 1000.0,
        qps: float = 10.0,
        burst: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base, self._max = base_delay, max_delay
        self._qps, self._burst = qps, burst
        self._clock = clock
        self._failures: dict[K, int] = {}
        self._tokens = float(burst)
        self._last = clock()

    def when(self, key: K) -> float:
        """Delay before retrying `key`; each call counts as one more failure."""
        exp = self._failures.get(key, 0)
        self._failures[key] = exp + 1
        backoff = self._max if exp >= 64 else min(self._base * 2**exp, self._max)
        return max(backoff, self._reserve())

    def forget(self, key: K) -> None:
        """Reset the key's backoff (after a success)."""
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)

    def _reserve(self) -> float:
        """Take one token (possibly going into debt) and return how long until it is available."""
        now = self._clock()
        self._tokens = min(float(self._burst), self._tokens + (now - self._last) * self._qps)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self._qps


class Priority(IntEnum):
    LOW = 0
    NORMAL = 1
    HIGH = 2


HIGH_RUN = 8
"""`HIGH` keys handed out in a row before a waiting lower-priority key gets its turn."""


class WorkQueue(Generic[K]):
    """Deduplicating, delaying, rate-limited queue of keys shared by N workers."""

    def __init__(self, name: str, rate_limiter: RateLimiter[K] | None = None) -> None:
        self.name = name
        self._limiter: RateLimiter[K] = rate_limiter or RateLimiter()
        # One FIFO per priority; entries may be stale (`_priority` says where a key belongs).
        self._lanes: dict[Priority, deque[K]] = {p: deque() for p in Priority}
        self._priority: dict[K, Priority] = {}  # of every dirty (queued or re-queued) key
        self._high_run = 0
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._delayed: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._queued_at: dict[K, float] = {}
        self._started_at: dict[K, float] = {}
        self._shutting_down = False
        self._depth = metrics.QUEUE_DEPTH.labels(name)
        self._depth.set(0)

    def __len__(self) -> int:
        """Keys waiting for a worker (not counting those to be re-queued on `done`)."""
        return len(self._dirty) - sum(1 for key in self._processing if key in self._dirty)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: K, *, priority: Priority = Priority.NORMAL) -> None:
        """Queue `key` unless it is already waiting (then a higher `priority` moves it up); a
        key in progress is re-queued on `done`, with the highest priority it was added with."""
        if self._shutting_down:
            return
        if key in self._dirty:
            if priority > self._priority[key]:
                self._priority[key] = priority
                if key not in self._processing:
                    self._push(key)
            return
        metrics.QUEUE_ADDS.labels(self.name).inc()
        self._dirty.add(key)
        self._priority[key] = priority
        self._queued_at.setdefault(key, time.monotonic())
        if key in self._processing:
            return
        self._push(key)

    def add_after(self, key: K, delay: float) -> None:
        """Add `key` after `delay` seconds; an earlier pending add of the same key wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + delay
        pending = self._delayed.get(key)
        if pending is not None:
            if pending[0] <= ready_at:
                return
            pending[1].cancel()
        handle = loop.call_at(ready_at, self._fire, key)
        self._delayed[key] = (ready_at, handle)

    def cancel_delayed(self, key: K) -> None:
        """Drop a pending `add_after` of `key`."""
        pending = self._delayed.pop(key, None)
        if pending is not None:
            pending[1].cancel()

    def add_rate_limited(self, key: K) -> None:
        """Add `key` after its backoff delay (a retry after a failure)."""
        metrics.QUEUE_RETRIES.labels(self.name).inc()
        self.add_after(key, self._limiter.when(key))

    def forget(self, key: K) -> None:
        """Stop tracking failures of `key` (its next failure backs off from the start)."""
        self._limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self._limiter.num_requeues(key)

    async def get(self) -> K | None:
        """Wait for a key and mark it in progress; None once the queue is shut down."""
        while (key := self._pop()) is None:
            if self._shutting_down:
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass the wake-up on instead of losing it
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        if self._shutting_down:
            return None
        self._processing.add(key)
        self._dirty.discard(key)
        del self._priority[key]
        self._depth.set(len(self))
        now = time.monotonic()
        queued_at = self._queued_at.pop(key, None)
        if queued_at is not None:
            metrics.QUEUE_WAIT.labels(self.name).observe(now - queued_at)
        self._started_at[key] = now
        return key

    def done(self, key: K) -> None:
        """Mark `key` finished; if it was added meanwhile, queue it again."""
        self._processing.discard(key)
        started = self._started_at.pop(key, None)
        if started is not None:
            metrics.QUEUE_WORK.labels(self.name).observe(time.monotonic() - started)
        if key in self._dirty and not self._shutting_down:
            self._push(key)

    def shutdown(self) -> None:
        """Refuse new keys, drop delayed ones and release every waiting worker."""
        self._shutting_down = True
        for _, handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _fire(self, key: K) -> None:
        self._delayed.pop(key, None)
        self.add(key)

    def _push(self, key: K) -> None:
        self._lanes[self._priority[key]].append(key)
        self._depth.set(len(self))
        self._wake_one()

    def _pop(self) -> K | None:
        """The next key to hand out: the highest priority first (but after `HIGH_RUN` high
        keys in a row, a lower one if any waits); None when no key waits."""
        order = sorted(Priority, reverse=True)
        if self._high_run >= HIGH_RUN:
            order.append(order.pop(0))  # the high lane goes last, once
        for priority in order:
            key = self._pop_lane(priority)
            if key is not None:
                self._high_run = self._high_run + 1 if priority is Priority.HIGH else 0
                return key
        return None

    def _pop_lane(self, priority: Priority) -> K | None:
        lane = self._lanes[priority]
        while lane:
            key = lane.popleft()
            if self._priority.get(key) is priority and key not in self._processing:
                return key
        return None

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
