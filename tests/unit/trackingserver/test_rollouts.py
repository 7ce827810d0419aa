"""Quiet rollouts: a merely progressing rollout we started is not reported for a while."""

from __future__ import annotations

from experiment_operator.trackingserver.rollouts import QuietRollouts


def test_progress_of_a_started_rollout_waits_then_is_written() -> None:
    now = [100.0]
    rollouts = QuietRollouts(clock=lambda: now[0])
    assert rollouts.quiet_for("a", progressing=True, window=60) is None, "not ours: write"
    rollouts.started("a")
    now[0] += 10
    rollouts.started("a")  # a second change during the rollout does not extend it
    assert rollouts.quiet_for("a", progressing=True, window=60) == 50.0
    assert rollouts.quiet_for("a", progressing=True, window=15) == 5.0
    now[0] += 50
    assert rollouts.quiet_for("a", progressing=True, window=60) is None, "too long: say so"


def test_any_other_outcome_is_written_at_once_and_ends_the_rollout() -> None:
    rollouts = QuietRollouts(clock=lambda: 0.0)
    rollouts.started("a")
    assert rollouts.quiet_for("a", progressing=False, window=60) is None
    assert len(rollouts) == 0
    rollouts.started("b")
    rollouts.forget("b")
    assert rollouts.quiet_for("b", progressing=True, window=60) is None


def test_an_object_never_reported_is_quiet_from_when_it_is_first_seen() -> None:
    """After a restart, a new TrackingServer whose first pass was cut short has no status and
    no recorded start: its quiet time begins now instead of a `Progressing` write."""
    now = [100.0]
    rollouts = QuietRollouts(clock=lambda: now[0])
    assert rollouts.quiet_for("new", progressing=True, window=15, reported=False) == 15.0
    now[0] += 15
    assert rollouts.quiet_for("new", progressing=True, window=15, reported=False) is None
    assert rollouts.quiet_for("old", progressing=True, window=600) is None, "reported: write"
