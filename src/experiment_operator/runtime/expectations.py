"""Creations our caches have not shown yet (kube-controller-manager's ControllerExpectations).

After a pass creates children, the next pass of the same object often starts before the
watches have delivered all of them: the events that queued it again were the first children's.
It would find a child missing from the cache and create it again, for a 409 and a read. A pass
that still waits for its own creations is put off instead, and the awaited event queues it
again. An expectation lapses after `ttl` seconds, so a lost event or a deletion cannot hold an
object back for long.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
C = TypeVar("C", bound=Hashable)


class Expectations(Generic[K, C]):
    """Per owner key, the children it created that the caches have not shown yet."""

    def __init__(self, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._pending: dict[K, dict[C, float]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def expect(self, key: K, child: C) -> None:
        """`key`'s pass created (or found and took over) `child`."""
        self._pending.setdefault(key, {})[child] = self._clock() + self._ttl

    def unmet(self, key: K, seen: Callable[[C], bool]) -> bool:
        """Whether a creation of `key`'s is neither `seen` in the caches nor lapsed; the others
        are forgotten."""
        children = self._pending.get(key)
        if children is None:
            return False
        now = self._clock()
        for child in [c for c, deadline in children.items() if deadline <= now or seen(c)]:
            del children[child]
        if children:
            return True
        del self._pending[key]
        return False

    def forget(self, key: K) -> None:
        self._pending.pop(key, None)
