"""Quiet rollouts: a status write for the outcome of a rollout, not for each of its steps.

A rollout we start (a new TrackingServer, a changed spec) usually ends in seconds. Writing
`Progressing` first and `Available` shortly after costs two status writes, each waking every
watcher of TrackingServers; the intermediate one tells nobody anything actionable. While a
rollout we started is merely progressing, the status is left as it was (Ready for the previous
generation, or none yet: `observedGeneration` says it is not the current one) for up to
`quiet_seconds`; a rollout that takes longer is then reported as Progressing, and any other
reason (a failure, a foreign object...) is written at once. In-memory only: after a restart
every status is written as computed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

ROLLOUT_QUIET_SECONDS = 15.0


class QuietRollouts:
    """When each object's current rollout started, for the rollouts still going on."""

    def __init__(
        self,
        quiet_seconds: float = ROLLOUT_QUIET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quiet_seconds = quiet_seconds
        self._clock = clock
        self._started: dict[Hashable, float] = {}

    def __len__(self) -> int:
        return len(self._started)

    def started(self, key: Hashable) -> None:
        """A rollout began (the first of several quick changes counts)."""
        self._started.setdefault(key, self._clock())

    def forget(self, key: Hashable) -> None:
        self._started.pop(key, None)

    def quiet_for(self, key: Hashable, progressing: bool) -> float | None:
        """Seconds to wait before writing a status that only says "progressing"; None: write
        now. A status that says anything else ends the rollout's quiet time."""
        if not progressing:
            self.forget(key)
            return None
        started = self._started.get(key)
        if started is None:
            return None
        remaining = self.quiet_seconds - (self._clock() - started)
        return remaining if remaining > 0 else None
