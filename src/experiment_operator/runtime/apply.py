"""Writing owned objects: server-side apply that refuses foreign objects and skips no-op writes,
takes over objects written by update-style controllers, delete-if-owned, and a status writer
that writes only real changes.

No read precedes a write. An object we have no cached copy of is applied create-only: the
body carries a resourceVersion no stored object can have, so the API server creates the object
if the name is free and answers 409 Conflict, writing nothing, if anything has the name —
only then do we read it, to tell a foreign object (hands off) from one of ours the cache has not
seen yet. Kinds the API server adds no defaults to may be created with a POST instead (as
create-only, and cheaper for the API server than an apply): the object's fields then belong to
our `Update` entry, which is taken over into our `Apply` entry before the first change, so that
later applies can remove fields. An object we have cached, and control,
is applied with its uid in the body: should it have been replaced by a same-name object
meanwhile, the API server refuses (uid is immutable) instead of modifying the stranger.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from lightkube import AsyncClient
from lightkube.core import resource as lkr
from lightkube.core.exceptions import ApiError

from . import kubeapi
from .cache import APPLIED, CREATED
from .fieldset import FIELD_MANAGER as FIELD_MANAGER
from .fieldset import desired_digest, union_fields, written_state
from .kubeapi import KindInfo, Obj
from .store import controller_owner

CREATE_ONLY = str(2**63 - 1)
"""A resourceVersion precondition no stored object satisfies: an apply carrying it creates the
object when the name is free and is refused with 409 when it is taken (checked against the real
API server in tests/integration/runtime/test_apply_live.py)."""


class ChangingHandsError(RuntimeError):
    """The object was replaced again and again while we tried to apply it (retried later)."""


def _guard_failed(err: ApiError) -> bool:
    """Whether the API server refused a guarded apply because of its guard: 409 (name taken,
    or the guarded uid is gone) or 422 naming metadata.uid (another object has the name now).
    Any other 422 is a real validation error of the body."""
    if err.status.code == 409:
        return True
    if err.status.code != 422:
        return False
    details = err.status.details
    causes = (details.causes if details is not None else None) or []
    return any(cause.field == "metadata.uid" for cause in causes)


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


def with_controller_reference(desired: Mapping[str, Any], owner: Mapping[str, Any]) -> Obj:
    """A copy of `desired` carrying the owner's controller reference (metadata and its
    ownerReferences are copied; the rest is shared with `desired`, which is not modified)."""
    obj = dict(desired)
    meta = obj["metadata"] = dict(obj["metadata"])
    refs = meta["ownerReferences"] = list(meta.get("ownerReferences") or [])
    if not any(r.get("uid") == owner["metadata"]["uid"] for r in refs):
        refs.append(controller_reference(owner))
    return obj


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


def applied_state(live: Mapping[str, Any]) -> tuple[bytes | None, bool]:
    """The digest of what we wrote to `live` (a cached object carries it, a full object's
    managedFields give it; None when our field manager never wrote it), and whether a create
    (POST) wrote it rather than an apply."""
    if APPLIED in live:
        value = live[APPLIED]
        return (value if isinstance(value, bytes) else None), bool(live.get(CREATED))
    return written_state(live)


async def _send_apply(client: AsyncClient, kind: KindInfo, namespace: str, body: Obj) -> Obj:
    return await kubeapi.request(
        client,
        "PATCH",
        kind.path(namespace, body["metadata"]["name"]),
        params={"fieldManager": FIELD_MANAGER, "force": "true"},
        body=body,
        content_type=kubeapi.APPLY_CONTENT_TYPE,
    )


async def _guarded_apply(
    client: AsyncClient, kind: KindInfo, namespace: str, body: Obj, **guard: str
) -> Obj | None:
    """Apply with a metadata guard (uid or resourceVersion); None when the guard failed."""
    guarded = {**body, "metadata": {**body["metadata"], **guard}}
    try:
        return await _send_apply(client, kind, namespace, guarded)
    except ApiError as err:
        if _guard_failed(err):
            return None
        raise


async def _create(client: AsyncClient, kind: KindInfo, namespace: str, body: Obj) -> Obj | None:
    """POST `body`; None when the name is taken (409 AlreadyExists: nothing was written)."""
    try:
        return await kubeapi.request(
            client, "POST", kind.path(namespace), params={"fieldManager": FIELD_MANAGER}, body=body
        )
    except ApiError as err:
        if err.status.code == 409:
            return None
        raise


async def apply_owned(
    client: AsyncClient,
    desired: Obj,
    owner: Obj,
    live: Obj | None = None,
    *,
    post_create: bool = False,
) -> Obj:
    """Server-side apply `desired` (field manager FIELD_MANAGER, force) as a child of `owner`.

    `live` is the cached copy (or None: not cached). Raises NotOwnedError, without writing, if
    an object of that name exists and `owner` does not control it. Makes no request at all when
    `live` already holds exactly what we would apply. An object the owner controls but we never
    applied (made by an earlier, update-style controller, or by our own POST) is taken over
    first (`take_over_fields`). `post_create`: a missing object is created with a POST, for
    kinds the API server adds no defaults to (else the create's field set holds the defaults
    and never equals the body's: one take-over and apply after every create). Returns the live
    object after the write (or `live`).
    """
    kind = KindInfo.for_object(desired)
    body = with_controller_reference(desired, owner)
    meta = body["metadata"]
    namespace = ""
    if kind.namespaced:
        namespace = meta.get("namespace") or owner["metadata"].get("namespace") or ""
        meta["namespace"] = namespace
    owner_uid = owner["metadata"]["uid"]
    for _ in range(3):  # a guard fails only when the object changed hands meanwhile
        if live is None:
            created = (
                await _create(client, kind, namespace, body)
                if post_create
                else await _guarded_apply(
                    client, kind, namespace, body, resourceVersion=CREATE_ONLY
                )
            )
            if created is not None:
                return created
            live = await kubeapi.get(client, kind, namespace, meta["name"])
            if live is None:
                continue  # deleted in between: create again
        if not is_controlled_by(live, owner_uid):
            raise NotOwnedError(kind.kind, namespace, meta["name"])
        state, created_by_post = applied_state(live)
        if state is not None and state == desired_digest(body):
            return live
        if state is None or created_by_post:  # written by updates: take the fields over first
            if APPLIED in live:  # a cached copy has no managedFields: read them
                live = await kubeapi.get(client, kind, namespace, meta["name"])
                if live is None or not is_controlled_by(live, owner_uid):
                    continue
            await take_over_fields(client, kind, live, owner_uid)
        applied = await _guarded_apply(client, kind, namespace, body, uid=live["metadata"]["uid"])
        if applied is not None:
            return applied
        live = await kubeapi.get(client, kind, namespace, meta["name"])
    raise ChangingHandsError(f"{kind.kind} {namespace}/{meta['name']} keeps being replaced")


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


class WrittenStatus:
    """A digest of the status this process last wrote to each object.

    A cache can lag behind our own write, e.g. when the watch that would have delivered it broke
    with an API server restart and the informer is still relisting. A reconcile in that window
    sees the old status and would write the same new one again; this memory prevents that.
    """

    def __init__(self) -> None:
        self._digests: dict[tuple[str | None, str], tuple[str, bytes]] = {}

    @staticmethod
    def _digest(status: Mapping[str, Any]) -> bytes:
        return hashlib.sha256(json.dumps(status, sort_keys=True).encode()).digest()

    def has(self, obj: Obj, status: Mapping[str, Any]) -> bool:
        meta = obj["metadata"]
        entry = self._digests.get((meta.get("namespace"), meta["name"]))
        return entry == (meta.get("uid", ""), self._digest(status))

    def remember(self, obj: Obj, status: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        self._digests[(meta.get("namespace"), meta["name"])] = (
            meta.get("uid", ""),
            self._digest(status),
        )

    def forget(self, namespace: str | None, name: str) -> None:
        self._digests.pop((namespace, name), None)


async def update_status(
    client: AsyncClient,
    resource: type[lkr.Resource] | KindInfo,
    obj: Obj,
    new_status: Mapping[str, Any],
    written: WrittenStatus | None = None,
) -> Obj | None:
    """Patch the status subresource to `new_status` unless `obj` already has exactly that
    status, or this process already wrote exactly that (see `WrittenStatus`); returns the
    object as written, or None when nothing was."""
    current = obj.get("status") or {}
    patch = merge_patch(current, new_status)
    if not patch or (written is not None and written.has(obj, new_status)):
        return None
    info = KindInfo.of(resource)
    meta = obj["metadata"]
    response = await kubeapi.request(
        client,
        "PATCH",
        info.path(meta.get("namespace"), meta["name"], "status"),
        body={"status": patch},
        content_type=kubeapi.MERGE_PATCH_CONTENT_TYPE,
    )
    if written is not None:
        written.remember(obj, new_status)
    return response
