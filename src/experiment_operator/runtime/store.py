"""The informer cache: objects by namespace/name, by controller owner and by the value of a
label, plus the relist diff."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .kubeapi import Key, Obj, key_of

ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True)
class Change:
    """One observed change; `old` is the previous cached state for MODIFIED."""

    type: ChangeType
    obj: Obj
    old: Obj | None = None


def controller_owner(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReference with controller: true, if any."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref  # type: ignore[no-any-return]
    return None


def _uid(obj: Mapping[str, Any]) -> str | None:
    uid = obj["metadata"].get("uid")
    return str(uid) if uid is not None else None


def _rv(obj: Mapping[str, Any]) -> str | None:
    rv = obj["metadata"].get("resourceVersion")
    return str(rv) if rv is not None else None


def diff_relist(cached: Mapping[Key, Obj], listed: Iterable[Obj]) -> list[Change]:
    """Changes that turn `cached` into `listed`, as a watch would have delivered them.

    An object replaced under the same name (new uid) becomes DELETED + ADDED so that owner
    mappings see both lives; deletions that happened while no watch was open surface here.
    """
    changes: list[Change] = []
    seen: set[Key] = set()
    for obj in listed:
        key = key_of(obj)
        seen.add(key)
        old = cached.get(key)
        if old is None:
            changes.append(Change("ADDED", obj))
        elif _uid(old) != _uid(obj):
            changes += [Change("DELETED", old), Change("ADDED", obj)]
        elif _rv(old) != _rv(obj):
            changes.append(Change("MODIFIED", obj, old))
    changes += [Change("DELETED", old) for key, old in cached.items() if key not in seen]
    return changes


class Store:
    """Objects of one kind as plain dicts. Readers must treat returned dicts as read-only."""

    def __init__(self) -> None:
        self._by_ns: dict[str, dict[str, Obj]] = {}
        self._by_owner: dict[str, set[Key]] = {}
        self._by_label: dict[str, dict[tuple[str, str], dict[str, None]]] = {}
        """label → (namespace, value) → names, in the order they arrived (a dict as set)."""

    def get(self, namespace: str, name: str) -> Obj | None:
        return self._by_ns.get(namespace, {}).get(name)

    def list(self, namespace: str | None = None) -> list[Obj]:
        """All objects, or those of one namespace."""
        if namespace is not None:
            return list(self._by_ns.get(namespace, {}).values())
        return [obj for objs in self._by_ns.values() for obj in objs.values()]

    def list_keys(self, namespace: str | None = None) -> builtins.list[Key]:
        return [key_of(obj) for obj in self.list(namespace)]

    def by_owner(self, uid: str) -> builtins.list[Obj]:
        """Objects whose controller ownerReference points at this uid."""
        found = (self.get(ns, name) for ns, name in self._by_owner.get(uid, ()))
        return [obj for obj in found if obj is not None]

    def with_label(self, namespace: str, label: str, value: str) -> builtins.list[Obj]:
        """Objects of one namespace whose `label` has `value`. The label is indexed from its
        first query on: a pass reading its Pods need not scan every Pod of the namespace."""
        index = self._by_label.get(label)
        if index is None:
            index = self._by_label[label] = {}
            for obj in self.list():
                _add_to(index, label, obj)
        objs = self._by_ns.get(namespace, {})
        return [objs[name] for name in index.get((namespace, value), ())]

    def snapshot(self, namespace: str | None = None) -> dict[Key, Obj]:
        """A key→object map of the current content (for the relist diff)."""
        return {key_of(obj): obj for obj in self.list(namespace)}

    def __len__(self) -> int:
        return sum(len(objs) for objs in self._by_ns.values())

    def apply(self, change: Change) -> None:
        """Record a change (called by informers only)."""
        ns, name = key_of(change.obj)
        previous = self._by_ns.get(ns, {}).get(name)
        if previous is not None:
            self._unindex(previous)
        for label, index in self._by_label.items():
            if previous is not None and _label(previous, label) != _label(change.obj, label):
                _remove_from(index, label, previous)
            if change.type == "DELETED":
                _remove_from(index, label, change.obj)
            else:
                _add_to(index, label, change.obj)
        if change.type == "DELETED":
            objs = self._by_ns.get(ns)
            if objs is not None:
                objs.pop(name, None)
                if not objs:
                    del self._by_ns[ns]
            return
        self._by_ns.setdefault(ns, {})[name] = change.obj
        owner = controller_owner(change.obj)
        if owner is not None and owner.get("uid"):
            self._by_owner.setdefault(str(owner["uid"]), set()).add((ns, name))

    def _unindex(self, obj: Obj) -> None:
        owner = controller_owner(obj)
        if owner is None or not owner.get("uid"):
            return
        keys = self._by_owner.get(str(owner["uid"]))
        if keys is not None:
            keys.discard(key_of(obj))
            if not keys:
                del self._by_owner[str(owner["uid"])]


def _label(obj: Mapping[str, Any], label: str) -> str | None:
    value = (obj["metadata"].get("labels") or {}).get(label)
    return None if value is None else str(value)


def _add_to(index: dict[tuple[str, str], dict[str, None]], label: str, obj: Obj) -> None:
    value = _label(obj, label)
    if value is not None:
        ns, name = key_of(obj)
        index.setdefault((ns, value), {})[name] = None


def _remove_from(index: dict[tuple[str, str], dict[str, None]], label: str, obj: Obj) -> None:
    value = _label(obj, label)
    if value is None:
        return
    ns, name = key_of(obj)
    names = index.get((ns, value))
    if names is not None:
        names.pop(name, None)
        if not names:
            del index[(ns, value)]
