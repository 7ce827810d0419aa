"""Expectations: a pass is put off until the caches show what the last one created."""

from __future__ import annotations

from experiment_operator.runtime.expectations import Expectations


def test_unmet_until_every_creation_is_seen() -> None:
    seen: set[str] = set()
    expectations: Expectations[str, str] = Expectations(ttl=10, clock=lambda: 0.0)
    assert not expectations.unmet("ts", seen.__contains__), "nothing expected"
    expectations.expect("ts", "Service/a")
    expectations.expect("ts", "Deployment/a")
    assert expectations.unmet("ts", seen.__contains__)
    seen.add("Service/a")
    assert expectations.unmet("ts", seen.__contains__)
    seen.add("Deployment/a")
    assert not expectations.unmet("ts", seen.__contains__)
    assert len(expectations) == 0
    assert not expectations.unmet("other", seen.__contains__)


def test_an_expectation_lapses_and_can_be_forgotten() -> None:
    now = [0.0]
    expectations: Expectations[str, str] = Expectations(ttl=10, clock=lambda: now[0])
    expectations.expect("ts", "Service/a")
    now[0] = 9.9
    assert expectations.unmet("ts", lambda _: False)
    now[0] = 10.0
    assert not expectations.unmet("ts", lambda _: False), "a lost event holds nothing for long"
    expectations.expect("gone", "Service/b")
    expectations.forget("gone")
    assert len(expectations) == 0
