"""Writing owned objects: server-side apply that refuses foreign objects and skips no-op writes,
takes over objects written by update-style controllers, delete-if-owned, and a status writer
that writes only real changes."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from lightkube import AsyncClient
from lightkube.core import resource as lkr
from lightkube.core.exceptions import ApiError

from . import kubeapi
from .kubeapi import KindInfo, Obj
from .store import controller_owner

FIELD_MANAGER = "experiment-operator"
JSON_PATCH_CONTENT_TYPE = "application/json-patch+json"


class NotOwnedError(Exception):
    """An object with the child's name exists and is not controlled by the owner: hands off."""

    def __init__(self, kind: str, namespace: str, name: str) -> None:
        super().__init__(f"{kind} {namespace}/{name} exists and is not controlled by this object")
        self.kind, self.namespace, self.name = kind, namespace, name


def controller_reference(owner: Mapping[str, Any]) -> Obj:
    """The ownerReference that makes `owner` the controller (and lets GC cascade)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_controlled_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    ref = controller_owner(obj)
    return ref is not None and ref.get("uid") == owner_uid


def is_subset(desired: Any, live: Any) -> bool:
    """Whether `live` already holds every field of `desired` (extra live fields, e.g. server
    defaults, are fine). Lists must have the same length and match element-wise."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        return all(v is None or (k in live and is_subset(v, live[k])) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return False
        return all(is_subset(d, v) for d, v in zip(desired, live, strict=True))
    if isinstance(desired, bool) or isinstance(live, bool):
        return type(desired) is type(live) and desired == live
    return bool(desired == live)


def owned_fields_dropped(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether a field we applied before (per our managedFields entry) is missing from
    `desired` — then an apply is needed to remove it, although `desired` ⊆ `live`."""
    entries = live.get("metadata", {}).get("managedFields") or []
    return any(
        _dropped(entry.get("fieldsV1") or {}, desired)
        for entry in entries
        if entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply"
    )


def _dropped(fields: Mapping[str, Any], desired: Any) -> bool:
    """Walk a fieldsV1 set: f:<field>, k:<list-map key>, v:<set value>, i:<index>, "." (self)."""
    for token, sub in fields.items():
        prefix, _, raw = token.partition(":")
        if prefix == "f":
            if not isinstance(desired, Mapping) or desired.get(raw) is None:
                return True
            child = desired[raw]
        elif prefix == "k":
            child = _find_keyed(desired, json.loads(raw))
            if child is None:
                return True
        elif prefix == "v":
            if not isinstance(desired, list) or json.loads(raw) not in desired:
                return True
            continue
        elif prefix == "i":
            if not isinstance(desired, list) or int(raw) >= len(desired):
                return True
            child = desired[int(raw)]
        else:
            continue  # "." names the node itself
        if sub and _dropped(sub, child):
            return True
    return False


def _find_keyed(items: Any, key: Mapping[str, Any]) -> Any:
    """The list element a list-map key names; key fields it omits count as server-defaulted."""
    if not isinstance(items, list):
        return None
    for item in items:
        if (
            isinstance(item, Mapping)
            and any(k in item for k in key)
            and all(item.get(k, v) == v for k, v in key.items())
        ):
            return item
    return None


def with_controller_reference(desired: Mapping[str, Any], owner: Mapping[str, Any]) -> Obj:
    """A copy of `desired` carrying the owner's controller reference."""
    obj = copy.deepcopy(dict(desired))
    refs = obj["metadata"].setdefault("ownerReferences", [])
    if not any(r.get("uid") == owner["metadata"]["uid"] for r in refs):
        refs.append(controller_reference(owner))
    return obj


def has_apply_entry(obj: Mapping[str, Any], manager: str = FIELD_MANAGER) -> bool:
    """Whether `manager` has ever server-side applied this object."""
    entries = obj.get("metadata", {}).get("managedFields") or []
    return any(e.get("manager") == manager and e.get("operation") == "Apply" for e in entries)


def union_fields(a: Mapping[str, Any], b: Mapping[str, Any]) -> Obj:
    """The union of two fieldsV1 sets (nested dicts; leaves are empty dicts)."""
    merged: Obj = copy.deepcopy(dict(a))
    for key, sub in b.items():
        merged[key] = union_fields(merged[key], sub) if key in merged else copy.deepcopy(sub)
    return merged


def upgrade_managed_fields(
    entries: list[Obj], owner_uid: str, api_version: str, manager: str = FIELD_MANAGER
) -> list[Obj] | None:
    """client-go's csaupgrade, generalised: move the field sets of the earlier controller's
    `Update` entries into `manager`'s `Apply` entry. The earlier controller is recognised as
    the writer(s) of the owner reference to `owner_uid`; other writers (e.g. the Deployment
    controller's revision annotation, status updates) keep their fields.

    Server-side apply only removes a field its manager stops sending if nobody else owns it.
    An object created with create/update calls has its fields, server defaults included, owned
    by that writer; after this transfer our next apply removes what we no longer want (a
    plaintext `value` replaced by `valueFrom`, a defaulted `rollingUpdate` next to `Recreate`)
    instead of failing validation. None: nothing to move.
    """
    ref_key = f'k:{{"uid":"{owner_uid}"}}'
    moved = [
        e
        for e in entries
        if e.get("operation") == "Update"
        and not e.get("subresource")
        and ref_key
        in ((e.get("fieldsV1") or {}).get("f:metadata", {}).get("f:ownerReferences") or {})
    ]
    if not moved:
        return None
    ours = next(
        (e for e in entries if e.get("manager") == manager and e.get("operation") == "Apply"),
        None,
    )
    fields: Obj = dict((ours or {}).get("fieldsV1") or {})
    for entry in moved:
        fields = union_fields(fields, entry.get("fieldsV1") or {})
    applied: Obj = {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": (ours or {}).get("apiVersion", api_version),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }
    kept = [e for e in entries if e is not ours and not any(e is m for m in moved)]
    return [*kept, applied]


async def take_over_fields(
    client: AsyncClient, kind: KindInfo, live: Obj, owner_uid: str, attempts: int = 5
) -> None:
    """Transfer the earlier controller's field ownership of `live` to our apply entry with one
    JSON patch of `metadata.managedFields`, guarded by the resourceVersion; re-read and retry
    when another writer (e.g. a status update) got in between."""
    namespace, name = live["metadata"].get("namespace") or "", live["metadata"]["name"]
    for attempt in range(attempts):
        meta = live["metadata"]
        upgraded = upgrade_managed_fields(
            meta.get("managedFields") or [], owner_uid, kind.api_version
        )
        if upgraded is None:
            return
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
            {"op": "replace", "path": "/metadata/managedFields", "value": upgraded},
        ]
        try:
            await kubeapi.request(
                client,
                "PATCH",
                kind.path(namespace, name),
                body=patch,
                content_type=JSON_PATCH_CONTENT_TYPE,
            )
            return
        except ApiError as err:  # a failed "test" is 422 (or 409)
            if err.status.code not in (409, 422) or attempt == attempts - 1:
                raise
        fresh = await kubeapi.get(client, kind, namespace, name)
        if fresh is None:
            return
        live = fresh


async def apply_owned(
    client: AsyncClient, desired: Obj, owner: Obj, live: Obj | None = None
) -> Obj:
    """Server-side apply `desired` (field manager FIELD_MANAGER, force) as a child of `owner`.

    `live` is the cached object, if any; without it the object is read from the server, since a
    foreign object lacks our labels and is never in a label-selected cache. Raises
    NotOwnedError, without writing, if the object exists and `owner` does not control it.
    Makes no request at all when the live object already matches (and nothing we applied
    before has to be removed). An object the owner controls but we never applied (made by an
    earlier, update-style controller) is taken over first (`take_over_fields`). Returns the
    live object.
    """
    kind = KindInfo.for_object(desired)
    body = with_controller_reference(desired, owner)
    meta = body["metadata"]
    namespace = ""
    if kind.namespaced:
        namespace = meta.get("namespace") or owner["metadata"].get("namespace") or ""
        meta["namespace"] = namespace
    owner_uid = owner["metadata"]["uid"]
    fetched = live is None
    if fetched:
        live = await kubeapi.get(client, kind, namespace, meta["name"])
    if live is not None:
        if not is_controlled_by(live, owner_uid):
            raise NotOwnedError(kind.kind, namespace, meta["name"])
        if has_apply_entry(live):
            if is_subset(body, live) and not owned_fields_dropped(live, body):
                return live
        else:
            if not fetched:  # caches keep only our managedFields: read the full list
                live = await kubeapi.get(client, kind, namespace, meta["name"])
            if live is not None and is_controlled_by(live, owner_uid):
                await take_over_fields(client, kind, live, owner_uid)
    return await kubeapi.request(
        client,
        "PATCH",
        kind.path(namespace, meta["name"]),
        params={"fieldManager": FIELD_MANAGER, "force": "true"},
        body=body,
        content_type=kubeapi.APPLY_CONTENT_TYPE,
    )


async def delete_if_owned(
    client: AsyncClient,
    kind: type[lkr.Resource] | KindInfo,
    namespace: str,
    name: str,
    owner_uid: str,
    live: Obj | None = None,
) -> bool:
    """Delete the object if `owner_uid` controls it; the uid precondition guarantees that a
    same-name object created meanwhile is never deleted. Returns whether a delete was sent."""
    info = KindInfo.of(kind)
    if live is None:
        live = await kubeapi.get(client, info, namespace, name)
    if live is None or not is_controlled_by(live, owner_uid):
        return False
    body = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "preconditions": {"uid": live["metadata"]["uid"]},
        "propagationPolicy": "Background",
    }
    try:
        await kubeapi.request(client, "DELETE", info.path(namespace, name), body=body)
    except ApiError as err:
        if err.status.code in (404, 409):  # gone already, or replaced by another object
            return False
        raise
    return True


def merge_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> Obj:
    """The JSON merge patch (RFC 7386) turning `current` into `desired`."""
    patch: Obj = {k: None for k in current if k not in desired}
    for k, v in desired.items():
        old = current.get(k)
        if isinstance(v, Mapping) and isinstance(old, Mapping):
            sub = merge_patch(old, v)
            if sub:
                patch[k] = sub
        elif k not in current or old != v:
            patch[k] = v
    return patch


async def update_status(
    client: AsyncClient,
    resource: type[lkr.Resource] | KindInfo,
    obj: Obj,
    new_status: Mapping[str, Any],
) -> bool:
    """Patch the status subresource to `new_status` unless `obj` already has exactly that
    status; returns whether it wrote."""
    current = obj.get("status") or {}
    patch = merge_patch(current, new_status)
    if not patch:
        return False
    info = KindInfo.of(resource)
    meta = obj["metadata"]
    await kubeapi.request(
        client,
        "PATCH",
        info.path(meta.get("namespace"), meta["name"], "status"),
        body={"status": patch},
        content_type=kubeapi.MERGE_PATCH_CONTENT_TYPE,
    )
    return True
