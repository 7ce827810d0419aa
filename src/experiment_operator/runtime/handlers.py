"""Event → key mapping: which reconcile requests a change of a watched object causes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .kubeapi import Key, key_of
from .store import Change, controller_owner
from .workqueue import Priority


def object_keys(change: Change) -> list[Key]:
    """`For`: the changed object's own key."""
    return [key_of(change.obj)]


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def _owner_key(obj: Mapping[str, Any], group: str, kind: str, owner_namespaced: bool) -> Key | None:
    ref = controller_owner(obj)
    if ref is None or ref.get("kind") != kind or _group(str(ref.get("apiVersion", ""))) != group:
        return None
    namespace = obj["metadata"].get("namespace") or "" if owner_namespaced else ""
    return (namespace, str(ref["name"]))


def owner_keys(change: Change, group: str, kind: str, owner_namespaced: bool = True) -> list[Key]:
    """`Owns`: the key of the controlling owner of the changed child, when it is of the `For`
    kind (group + kind of the controller ownerReference; any version). For an update the owner
    before the change counts too, so an owner that lost the child is reconciled as well."""
    keys: list[Key] = []
    for obj in (change.old, change.obj):
        if obj is None:
            continue
        key = _owner_key(obj, group, kind, owner_namespaced)
        if key is not None and key not in keys:
            keys.append(key)
    return keys


def child_priority(change: Change) -> Priority:
    """`Owns`: a child that changed (e.g. a Deployment now available) is work under way and goes
    first; one that appeared is mostly the echo of our own create, with no hurry."""
    return Priority.NORMAL if change.type == "ADDED" else Priority.HIGH
