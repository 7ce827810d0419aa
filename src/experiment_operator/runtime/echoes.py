"""Echoes: the watch events of a controller's own writes.

A write's response is the object as the write left it. Its watch event arrives milliseconds
later with the same resourceVersion and tells the writer nothing it did not already see, yet it
used to cost a reconcile: in a burst of 1000 new TrackingServers two of the ~4.8 reconciles per
CR were echoes (the CR's status, the children it created; bench/RESULTS.md, round 8). The
controller drops an event when the object's resourceVersion is one its reconciler recorded as
seen; any other event of that object, or a later version, is delivered as before.

Until that event comes, the write's response is also the newest state of the object this
process knows: the cache still holds a version from before the write. A pass in that window
(started by another object's event, a resync) reads the response (`unseen_write`) instead, and
does not apply again what it has just applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .cache import LAST_APPLIED_ANNOTATION, SYNTHETIC_KEYS
from .kubeapi import Obj
from .store import Change

EchoKey = tuple[str, str, str, str]
"""(API group, kind, namespace, name)."""


def _key(obj: Mapping[str, Any]) -> EchoKey:
    meta = obj["metadata"]
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return (group, str(obj.get("kind", "")), meta.get("namespace") or "", meta["name"])


class Echoes:
    """Each object a reconciler wrote and saw, as the write left it, until its event comes."""

    def __init__(self) -> None:
        self._seen: dict[EchoKey, Obj] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, obj: Obj, cached: Obj | None) -> None:
        """The reconciler acted on `obj` exactly as it is (a write's response, with apiVersion
        and kind); its watch event need not trigger another pass. `cached`: the cache's copy
        now; if it already has this version, the event came before the response did."""
        rv = obj["metadata"].get("resourceVersion")
        if rv and (cached is None or cached["metadata"].get("resourceVersion") != rv):
            self._seen[_key(obj)] = obj

    def unseen_write(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        """The object as this process's write left it, while no event of it has come since:
        newer than the cached copy (which may lag seconds behind under load)."""
        group = api_version.rpartition("/")[0]
        return self._seen.get((group, kind, namespace, name))

    def is_echo(self, change: Change) -> bool:
        """Whether `change` delivers an object exactly as the reconciler saw it. Any event of
        the object ends the record, so a version the reconciler never saw always counts."""
        written = self._seen.pop(_key(change.obj), None)
        return (
            written is not None
            and change.type != "DELETED"
            and change.obj["metadata"].get("resourceVersion")
            == written["metadata"]["resourceVersion"]
        )


def _besides_status(obj: Obj) -> Obj:
    meta = {
        k: v for k, v in obj["metadata"].items() if k not in ("resourceVersion", "managedFields")
    }
    annotations = {
        k: v
        for k, v in (meta.pop("annotations", None) or {}).items()
        if k != LAST_APPLIED_ANNOTATION
    }
    if annotations:
        meta["annotations"] = annotations
    rest = {k: v for k, v in obj.items() if k not in ("metadata", "status", *SYNTHETIC_KEYS)}
    return {**rest, "metadata": meta}


def only_status_changed(before: Obj, after: Obj) -> bool:
    """Whether `after` (a status write's response) differs from `before` (what the reconciler
    read, possibly a cached copy) in status alone. A status write lands on whatever version
    is current, so its response can carry a spec change the reconciler never saw: then its
    event is no echo."""
    return _besides_status(before) == _besides_status(after)
