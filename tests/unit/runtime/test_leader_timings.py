"""Leader election parameters that could allow two leaders are rejected up front."""

from __future__ import annotations

from typing import cast

import pytest
from lightkube import AsyncClient

from experiment_operator.runtime.leaderelection import LeaderElector

NO_CLIENT = cast(AsyncClient, None)  # the constructor only stores it


@pytest.mark.parametrize(
    ("lease", "renew", "retry"),
    [(10, 10, 2), (10, 12, 2), (15, 10, 10), (15, 10, 0)],
)
def test_unsafe_timings_are_rejected(lease: float, renew: float, retry: float) -> None:
    with pytest.raises(ValueError, match="lease_duration > renew_deadline > retry_period"):
        LeaderElector(
            NO_CLIENT,
            namespace="ns",
            name="lock",
            identity="me",
            lease_duration=lease,
            renew_deadline=renew,
            retry_period=retry,
        )


def test_identity_is_required() -> None:
    with pytest.raises(ValueError, match="identity"):
        LeaderElector(NO_CLIENT, namespace="ns", name="lock", identity="")


def test_new_elector_is_not_leader() -> None:
    elector = LeaderElector(NO_CLIENT, namespace="ns", name="lock", identity="me")
    assert not elector.is_leader
    assert elector.identity == "me"
