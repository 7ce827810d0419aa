"""Finalizers of the TrackingServer and the volume retention they implement.

The only finalizer with real work is `experiment.aiscope/retain-volume`: with
`volumeRetentionPolicy: Retain` it lets the operator release the PersistentVolumeClaim (remove
our owner reference) before the garbage collector would delete it with the TrackingServer. The
original controller's finalizer had no work; it is removed so deleting old resources never hangs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import PersistentVolumeClaim

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.apply import (
    JSON_PATCH_CONTENT_TYPE,
    controller_reference,
    is_controlled_by,
)
from experiment_operator.runtime.kubeapi import KindInfo, Obj
from experiment_operator.trackingserver.passes import Pass

PVC = KindInfo.of(PersistentVolumeClaim)
LEGACY_FINALIZER = "finalizers.aiscope.io/trackingserver"
"""Added by the original controller, removed by it on deletion; it guarded nothing."""
RETAIN_FINALIZER = "experiment.aiscope/retain-volume"
RETAINED_ANNOTATION = "experiment.aiscope/retained-from"
"""On a released PVC: the TrackingServer it belonged to. A TrackingServer of that name adopts it
again (the only objects we ever adopt: ours, released on purpose)."""


def finalizer_patch(obj: Mapping[str, Any], add: Iterable[str], remove: Iterable[str]) -> list[Obj]:
    """JSON patch operations adding/removing finalizers of `obj` as read, guarded by its
    resourceVersion: a cache that lags behind makes the patch fail instead of removing another
    finalizer or adding one twice."""
    meta = obj["metadata"]
    current = list(meta.get("finalizers") or [])
    drop = set(remove)
    missing = [f for f in add if f not in current]
    if not missing and not drop.intersection(current):
        return []
    wanted = [f for f in current if f not in drop] + missing
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
        {"op": "add", "path": "/metadata/finalizers", "value": wanted},
    ]


async def patch_finalizers(
    client: AsyncClient, kind: KindInfo, obj: Mapping[str, Any], add: list[str], remove: list[str]
) -> bool:
    """Add/remove finalizers in one request; returns whether it wrote. A vanished object (404)
    means deletion completed; a stale read (422, the resourceVersion test failed) is left to
    the reconcile that the object's newer version triggers anyway."""
    ops = finalizer_patch(obj, add, remove)
    return bool(ops) and await _json_patch(client, kind, obj, ops, tolerate=(404, 422)) is not None


async def hold_finalizer(
    client: AsyncClient, kind: KindInfo, obj: Obj, finalizer: str
) -> Obj | None:
    """`obj` with `finalizer` on it, as stored (added if missing), or None when `obj` was
    stale or is gone (its newer version, if any, is reconciled anyway)."""
    ops = finalizer_patch(obj, [finalizer], [])
    if not ops:
        return obj
    return await _json_patch(client, kind, obj, ops, tolerate=(404, 422))


async def _json_patch(
    client: AsyncClient,
    kind: KindInfo,
    obj: Mapping[str, Any],
    ops: list[Obj],
    tolerate: tuple[int, ...] = (),
) -> Obj | None:
    """Send a JSON patch to `obj`; returns the patched object, or None instead of raising for
    a `tolerate`d status."""
    meta = obj["metadata"]
    try:
        return await kubeapi.request(
            client,
            "PATCH",
            kind.path(meta["namespace"], meta["name"]),
            body=ops,
            content_type=JSON_PATCH_CONTENT_TYPE,
        )
    except ApiError as err:
        if err.status.code not in tolerate:
            raise
        return None


def _owner_ref_index(obj: Mapping[str, Any], owner_uid: str) -> int | None:
    refs = obj["metadata"].get("ownerReferences") or []
    return next((i for i, r in enumerate(refs) if r.get("uid") == owner_uid), None)


async def release_volume(client: AsyncClient, kind: KindInfo, pvc: Obj, owner: Obj) -> bool:
    """Keep the PVC and its data: remove the owner's reference (so the garbage collector leaves
    it) and note where it came from. Returns whether it wrote."""
    owner_uid = owner["metadata"]["uid"]
    index = _owner_ref_index(pvc, owner_uid)
    if index is None:
        return False
    meta = pvc["metadata"]
    path = f"/metadata/ownerReferences/{index}"
    ops: list[Obj] = [
        {"op": "test", "path": f"{path}/uid", "value": owner_uid},
        {"op": "remove", "path": path},
    ]
    if "annotations" not in meta:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
    ops.append(
        {
            "op": "add",
            "path": "/metadata/annotations/" + RETAINED_ANNOTATION.replace("/", "~1"),
            "value": owner["metadata"]["name"],
        }
    )
    await _json_patch(client, kind, pvc, ops, tolerate=(404,))
    return True


def retains(ts: TrackingServer, children: Iterable[Obj], *, foreign: bool) -> bool:
    """Whether the retention finalizer belongs on the TrackingServer: Retain, and a PVC is
    wanted that is not someone else's (`foreign`)."""
    wanted = any(c["kind"] == "PersistentVolumeClaim" for c in children)
    return ts.spec.volume_retention_policy == "Retain" and wanted and not foreign


def is_foreign(pvc: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """A PVC neither controlled by `owner` nor released from a TrackingServer of its name."""
    return not is_controlled_by(pvc, owner["metadata"]["uid"]) and not is_released_for(pvc, owner)


def is_released_for(pvc: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """A PVC we released from a TrackingServer of this name, now owned by no controller."""
    meta = pvc["metadata"]
    annotations = meta.get("annotations") or {}
    controlled = any(r.get("controller") for r in meta.get("ownerReferences") or [])
    return annotations.get(RETAINED_ANNOTATION) == owner["metadata"]["name"] and not controlled


async def adopt_released_volume(client: AsyncClient, kind: KindInfo, pvc: Obj, owner: Obj) -> None:
    """Give a released PVC back to a TrackingServer of the same name (the apply that follows
    then manages it as before)."""
    meta = pvc["metadata"]
    ref = controller_reference(owner)
    ops: list[Obj] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]}
    ]
    if meta.get("ownerReferences"):
        ops.append({"op": "add", "path": "/metadata/ownerReferences/-", "value": ref})
    else:
        ops.append({"op": "add", "path": "/metadata/ownerReferences", "value": [ref]})
    ops.append(
        {"op": "remove", "path": "/metadata/annotations/" + RETAINED_ANNOTATION.replace("/", "~1")}
    )
    await _json_patch(client, kind, pvc, ops)


async def update_finalizers(
    client: AsyncClient, kind: KindInfo, p: Pass, children: list[Obj]
) -> bool:
    """Ours while a retained claim is among the children, the original controller's never;
    True when the TrackingServer was patched."""
    if retains(p.ts, children, foreign=p.volume_foreign):
        add, remove = [RETAIN_FINALIZER], [LEGACY_FINALIZER]
    else:
        add, remove = [], [LEGACY_FINALIZER, RETAIN_FINALIZER]
    return await patch_finalizers(client, kind, p.obj, add, remove)


async def finalize(client: AsyncClient, kind: KindInfo, p: Pass) -> None:
    """The TrackingServer is being deleted: release a retained volume, drop our finalizers
    (and the original controller's), and let the garbage collector do the rest."""
    remove = [LEGACY_FINALIZER]
    if RETAIN_FINALIZER in p.ts.metadata.finalizers:
        remove.append(RETAIN_FINALIZER)
        if p.ts.spec.volume_retention_policy == "Retain":
            # From the server: the cache may not have seen an adoption yet.
            pvc = await kubeapi.get(client, PVC, p.namespace, p.name)
            if pvc is not None and is_controlled_by(pvc, p.uid):
                await release_volume(client, PVC, pvc, p.obj)
    await patch_finalizers(client, kind, p.obj, [], remove)
