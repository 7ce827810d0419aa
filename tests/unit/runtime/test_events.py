"""Pure parts of the event recorder: redaction, references, aggregation bookkeeping, and the
background writes' bounds (with a client that never answers)."""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.core_v1 import ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment

from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.events import (
    REDACTED,
    EventCache,
    EventKey,
    EventRecorder,
    object_reference,
    redact,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_redact_replaces_every_secret_and_its_base64() -> None:
    secret = "s3cr3t-key"
    encoded = base64.b64encode(secret.encode()).decode()
    message = f'Secret "x" is invalid: data.key: {encoded}; value {secret}, again {secret}'
    out = redact(message, [secret, ""])
    assert secret not in out
    assert encoded not in out
    assert out.count(REDACTED) == 3


def test_redact_prefers_longest_match_and_ignores_empty() -> None:
    assert redact("abc-abcdef", ["abc", "abcdef"]) == f"{REDACTED}-{REDACTED}"
    assert redact("nothing here", []) == "nothing here"
    assert redact("nothing here", [""]) == "nothing here"


def test_object_reference_from_lightkube_object_and_dict() -> None:
    dep = Deployment(metadata=ObjectMeta(name="d", namespace="ns", uid="u1", resourceVersion="7"))
    ref = object_reference(dep)
    assert (ref.apiVersion, ref.kind, ref.name, ref.namespace, ref.uid, ref.resourceVersion) == (
        "apps/v1",
        "Deployment",
        "d",
        "ns",
        "u1",
        "7",
    )
    as_dict = {
        "apiVersion": "experiment.aiscope/v1alpha2",
        "kind": "TrackingServer",
        "metadata": {"name": "ts", "namespace": "ns", "uid": "u2", "resourceVersion": "9"},
    }
    ref = object_reference(as_dict)
    assert (ref.kind, ref.name, ref.uid, ref.resourceVersion) == ("TrackingServer", "ts", "u2", "9")


def test_object_reference_from_generic_resource() -> None:
    kind = create_namespaced_resource("example.com", "v1", "Widget", "widgets")
    obj = kind(
        apiVersion="example.com/v1",
        kind="Widget",
        metadata=ObjectMeta(name="w", namespace="ns", uid="u3"),
    )
    ref = object_reference(obj)
    assert (ref.apiVersion, ref.kind, ref.name, ref.uid) == ("example.com/v1", "Widget", "w", "u3")


def _key(message: str = "boom", uid: str = "u1", reason: str = "FailedSync") -> EventKey:
    ref = ObjectReference(kind="TrackingServer", name="ts", namespace="ns", uid=uid)
    return EventKey.of("test", ref, "Warning", reason, message)


def test_identical_events_share_one_series() -> None:
    cache = EventCache()
    first = cache.observe(_key(), T0)
    assert (first.count, first.name) == (1, None)
    first.name = "ts.abc"
    for i in range(1, 10):
        series = cache.observe(_key(), T0 + timedelta(seconds=i))
    assert series is first
    assert (series.count, series.first, series.last, series.name) == (
        10,
        T0,
        T0 + timedelta(seconds=9),
        "ts.abc",
    )
    assert len(cache) == 1


def test_different_message_reason_or_object_are_separate() -> None:
    cache = EventCache()
    for key in (_key(), _key(message="other"), _key(reason="Synced"), _key(uid="u2")):
        assert cache.observe(key, T0).count == 1
    assert len(cache) == 4


def test_cache_is_bounded_and_evicts_least_recently_used() -> None:
    cache = EventCache(max_size=2)
    cache.observe(_key("a"), T0)
    cache.observe(_key("b"), T0)
    cache.observe(_key("a"), T0)  # a is now the most recent
    cache.observe(_key("c"), T0)  # evicts b
    assert len(cache) == 2
    assert cache.observe(_key("a"), T0).count == 3
    assert cache.observe(_key("b"), T0).count == 1


def test_forget_starts_a_new_series() -> None:
    cache = EventCache()
    cache.observe(_key(), T0)
    cache.forget(_key())
    assert cache.observe(_key(), T0).count == 1


class Unanswered:
    """An API server that never answers a write."""

    def __init__(self) -> None:
        self.calls = 0

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        await asyncio.Event().wait()


async def test_posted_events_beyond_the_bound_are_dropped_and_shutdown_cancels(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Unanswered()
    monkeypatch.setattr(kubeapi, "request", client.request)
    recorder = EventRecorder(None, "test", max_pending=2)  # type: ignore[arg-type]
    subject = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "uid": "u"}}
    with caplog.at_level(logging.WARNING):
        for i in range(3):
            recorder.post(subject, "Normal", "Synced", f"message {i}")
    await asyncio.sleep(0)
    assert client.calls == 2
    assert "event dropped" in caplog.text
    await asyncio.wait_for(recorder.shutdown(grace=0.05), timeout=5)
    recorder.post(subject, "Normal", "Synced", "room again")  # the cancelled ones left
    await asyncio.sleep(0)
    assert client.calls == 3
    await recorder.shutdown(grace=0)
    with pytest.raises(ValueError, match="event type"):
        recorder.post(subject, "Info", "Synced", "not a type")
