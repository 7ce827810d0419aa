"""With `volumeRetentionPolicy: Retain` the retention finalizer is on the TrackingServer before
its PVC is created or adopted, so a TrackingServer deleted the moment its claim appears still
releases the claim instead of handing it to the garbage collector.

Judged by the API server's history, not by timing: the TrackingServer is listed as it was at
the exact resourceVersion of the PVC's creation (and of its adoption).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from lightkube import AsyncClient

from experiment_lab.objects import TS, create, delete, get, sample
from experiment_lab.operator import Operator, run_operator
from experiment_lab.wait import eventually
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.apply import is_controlled_by
from experiment_operator.runtime.kubeapi import KindInfo, Obj
from experiment_operator.trackingserver.lifecycle import RETAIN_FINALIZER, RETAINED_ANNOTATION

pytestmark = pytest.mark.integration

NAME = "trackingserver"
PVC = KindInfo("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", namespaced=True)


@pytest.fixture(scope="module")
async def operator(operator_kubeconfig: Path) -> AsyncIterator[Operator]:
    async with run_operator(operator_kubeconfig) as op:
        yield op


async def claim_event(kube: AsyncClient, ns: str, since: str, match: Callable[[Obj], bool]) -> Obj:
    """The PVC as of the first change after revision `since` that makes `match` true."""
    async for event in kubeapi.watch(kube, PVC, ns, None, since, 60):
        if event["type"] in ("ADDED", "MODIFIED") and match(event["object"]):
            return dict(event["object"])
    raise AssertionError("no such change of the PVC within 60 s")


async def finalizers_at(kube: AsyncClient, ns: str, revision: str) -> list[str]:
    """The TrackingServer's finalizers as stored at exactly `revision`."""
    params = {"resourceVersion": revision, "resourceVersionMatch": "Exact"}
    listed = await kubeapi.request(kube, "GET", TS.path(ns), params=params)
    (ts,) = listed["items"]
    return list(ts["metadata"].get("finalizers") or [])


async def create_and_delete_at_once(kube: AsyncClient, ns: str, since: str) -> Obj:
    """Create a Retain TrackingServer, delete it as soon as it controls the PVC; that PVC."""
    ts = await create(kube, sample("repo", ns, volumeRetentionPolicy="Retain"))
    uid = ts["metadata"]["uid"]
    claim = await claim_event(kube, ns, since, lambda pvc: is_controlled_by(pvc, uid))
    await delete(kube, ts["apiVersion"], "TrackingServer", ns, NAME)
    return claim


async def test_a_trackingserver_deleted_as_its_claim_appears_keeps_the_claim(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    listed = await kubeapi.request(kube, "GET", PVC.path(namespace))
    created = await create_and_delete_at_once(
        kube, namespace, listed["metadata"]["resourceVersion"]
    )
    revision = created["metadata"]["resourceVersion"]
    assert RETAIN_FINALIZER in await finalizers_at(kube, namespace, revision)

    async def released() -> Obj | None:
        if await get(kube, TS.api_version, "TrackingServer", namespace, NAME) is not None:
            return None
        pvc = await kubeapi.get(kube, PVC, namespace, NAME)
        done = pvc is not None and not pvc["metadata"].get("ownerReferences")
        return pvc if done else None

    await eventually(released, within=60)
    kept = await released()
    assert kept is not None
    assert kept["metadata"]["uid"] == created["metadata"]["uid"]
    assert kept["metadata"]["annotations"][RETAINED_ANNOTATION] == NAME

    # Recreated and deleted as soon as it adopts the claim: released again, not collected.
    adopted = await create_and_delete_at_once(kube, namespace, kept["metadata"]["resourceVersion"])
    assert adopted["metadata"]["uid"] == created["metadata"]["uid"]
    revision = adopted["metadata"]["resourceVersion"]
    assert RETAIN_FINALIZER in await finalizers_at(kube, namespace, revision)
    await eventually(released, within=60)
    again = await released()
    assert again is not None
    assert again["metadata"]["uid"] == created["metadata"]["uid"]
