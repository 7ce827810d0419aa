"""Event recorder and request metrics against a real API server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from lightkube import AsyncClient
from lightkube.core.client import FieldSelector
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Event
from prometheus_client import REGISTRY

from experiment_lab.cluster import Kubectl
from experiment_operator.runtime.events import EventRecorder
from experiment_operator.runtime.metrics import instrument_client

pytestmark = pytest.mark.integration


async def _subject(kube: AsyncClient, namespace: str) -> ConfigMap:
    return await kube.create(ConfigMap(metadata=ObjectMeta(name="subject", namespace=namespace)))


async def _events_for(kube: AsyncClient, namespace: str, uid: str) -> list[Event]:
    fields: FieldSelector = {"involvedObject.uid": uid}
    return [e async for e in kube.list(Event, namespace=namespace, fields=fields)]


async def test_repeated_warning_is_one_event_with_count(
    kube: AsyncClient, namespace: str, kubectl: Kubectl
) -> None:
    subject = await _subject(kube, namespace)
    assert subject.metadata is not None
    assert subject.metadata.uid is not None
    recorder = EventRecorder(kube, "test-controller")
    for _ in range(10):
        await recorder.event(subject, "Warning", "FailedSync", "backend unreachable")
    await recorder.event(subject, "Normal", "Synced", "subject synced successfully")

    events = await _events_for(kube, namespace, subject.metadata.uid)
    by_reason = {e.reason: e for e in events}
    assert len(events) == 2
    warning = by_reason["FailedSync"]
    assert (warning.type, warning.count, warning.message) == ("Warning", 10, "backend unreachable")
    assert warning.source is not None
    assert warning.source.component == "test-controller"
    assert warning.reportingComponent == "test-controller"
    assert warning.involvedObject.kind == "ConfigMap"
    assert warning.involvedObject.name == "subject"
    assert warning.firstTimestamp is not None
    assert warning.lastTimestamp is not None
    assert warning.firstTimestamp <= warning.lastTimestamp
    assert by_reason["Synced"].count == 1

    described = kubectl("describe", "configmap", "subject", "-n", namespace).stdout
    assert "FailedSync" in described
    assert "backend unreachable" in described
    assert "x10" in described


async def test_concurrent_repeats_still_aggregate(kube: AsyncClient, namespace: str) -> None:
    subject = await _subject(kube, namespace)
    assert subject.metadata is not None
    assert subject.metadata.uid is not None
    recorder = EventRecorder(kube, "test-controller")
    await asyncio.gather(
        *(recorder.event(subject, "Warning", "FailedSync", "same") for _ in range(10))
    )
    (event,) = await _events_for(kube, namespace, subject.metadata.uid)
    assert event.count == 10


async def test_deleted_event_is_recreated(kube: AsyncClient, namespace: str) -> None:
    subject = await _subject(kube, namespace)
    assert subject.metadata is not None
    assert subject.metadata.uid is not None
    recorder = EventRecorder(kube, "test-controller")
    await recorder.event(subject, "Warning", "FailedSync", "again")
    (first,) = await _events_for(kube, namespace, subject.metadata.uid)
    assert first.metadata is not None
    assert first.metadata.name is not None
    await kube.delete(Event, first.metadata.name, namespace=namespace)

    await recorder.event(subject, "Warning", "FailedSync", "again")
    (again,) = await _events_for(kube, namespace, subject.metadata.uid)
    assert again.metadata is not None
    assert again.metadata.name != first.metadata.name
    assert again.count == 2


async def test_api_errors_do_not_reach_the_caller(kube: AsyncClient) -> None:
    recorder = EventRecorder(kube, "test-controller")
    ghost = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ghost", "namespace": "no-such-namespace-xyz", "uid": "u"},
    }
    await recorder.event(ghost, "Warning", "FailedSync", "namespace is missing")


async def test_requests_are_counted_by_verb_and_code(
    new_client: Callable[[], AsyncClient], namespace: str
) -> None:
    def count(verb: str, code: str) -> float:
        labels = {"verb": verb, "code": code}
        sample = REGISTRY.get_sample_value("rest_client_requests_total", labels)
        return sample or 0.0

    client = new_client()
    try:
        instrument_client(client)
        instrument_client(client)  # idempotent
        before = {k: count(*k) for k in [("create", "201"), ("get", "200"), ("get", "404")]}
        before |= {k: count(*k) for k in [("list", "200"), ("watch", "200"), ("delete", "200")]}
        await client.create(ConfigMap(metadata=ObjectMeta(name="m", namespace=namespace)))
        await client.get(ConfigMap, "m", namespace=namespace)
        with pytest.raises(Exception, match="not found"):
            await client.get(ConfigMap, "absent", namespace=namespace)
        _ = [cm async for cm in client.list(ConfigMap, namespace=namespace)]
        async for _event in client.watch(ConfigMap, namespace=namespace):
            break
        await client.delete(ConfigMap, "m", namespace=namespace)
    finally:
        await client.close()
    assert {k: count(*k) - v for k, v in before.items()} == {
        ("create", "201"): 1,
        ("get", "200"): 1,
        ("get", "404"): 1,
        ("list", "200"): 1,
        ("watch", "200"): 1,
        ("delete", "200"): 1,
    }


async def test_posted_events_are_written_in_the_background_and_flushed_on_shutdown(
    kube: AsyncClient, namespace: str
) -> None:
    """`post` returns at once (a reconcile does not wait for its Events); `shutdown` lets
    the writes finish."""
    subject = await _subject(kube, namespace)
    assert subject.metadata is not None
    assert subject.metadata.uid is not None
    recorder = EventRecorder(kube, "test-controller")
    recorder.post(subject, "Normal", "Synced", "posted")
    recorder.post(subject, "Warning", "FailedSync", "posted too")
    await recorder.shutdown(grace=30)
    events = await _events_for(kube, namespace, subject.metadata.uid)
    assert sorted((e.reason, e.message) for e in events) == [
        ("FailedSync", "posted too"),
        ("Synced", "posted"),
    ]
