"""Quiet rollouts: a status write for the outcome of a rollout, not for each of its steps.

A rollout we start (a new TrackingServer, a changed spec) usually ends in seconds. Writing
`Progressing` first and `Available` shortly after costs two status writes, each waking every
watcher of TrackingServers; the intermediate one tells nobody anything actionable. While a
rollout we started is merely progressing, the status is left as it was for a while: a new
TrackingServer has none yet (for up to `NEW_QUIET_SECONDS`, so that one which cannot start is
soon reported), a changed one stays Ready for the generation that still serves
(`observedGeneration` says which, so kstatus-style tools see the change as in progress) until
the Deployment controller itself gives up on it (`CHANGE_QUIET_SECONDS`, its default progress
deadline: a thousand rollouts at once took it 210 s on the lab machine). Any other reason (a
failing Pod, an unschedulable one, a foreign object...) is written at once. In-memory only:
after a restart, a TrackingServer without any status yet starts its quiet time when first seen
(so a crash during a burst does not add a `Progressing` write per new CR); every other status
is written as computed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

NEW_QUIET_SECONDS = 15.0
CHANGE_QUIET_SECONDS = 600.0
"""A Deployment's default `progressDeadlineSeconds`: longer, its controller reports
`ProgressDeadlineExceeded`, which is written at once."""


class QuietRollouts:
    """When each object's current rollout started, for the rollouts still going on."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started: dict[Hashable, float] = {}

    def __len__(self) -> int:
        return len(self._started)

    def started(self, key: Hashable) -> None:
        """A rollout began (the first of several quick changes counts)."""
        self._started.setdefault(key, self._clock())

    def forget(self, key: Hashable) -> None:
        self._started.pop(key, None)

    def quiet_for(
        self, key: Hashable, progressing: bool, window: float, *, reported: bool = True
    ) -> float | None:
        """Seconds to wait before writing a status that only says "progressing" (at most
        `window` after the rollout started); None: write now. A status that says anything else
        ends the rollout's quiet time. Not `reported` yet (no status at all): the rollout
        counts as started now if we had not seen it start, e.g. before a restart."""
        if not progressing:
            self.forget(key)
            return None
        if not reported:
            self.started(key)
        started = self._started.get(key)
        if started is None:
            return None
        remaining = window - (self._clock() - started)
        return remaining if remaining > 0 else None
