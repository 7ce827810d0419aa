"""Store indexes and the relist diff (what a relist after 410 Gone delivers)."""

from __future__ import annotations

from typing import Any

from experiment_operator.runtime.store import Change, Store, diff_relist


def cm(name: str, rv: str, uid: str | None = None, owner: str | None = None, ns: str = "ns") -> Any:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "resourceVersion": rv}
    meta["uid"] = uid or f"uid-{name}"
    if owner is not None:
        meta["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "p", "uid": owner, "controller": True}
        ]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


def test_diff_reports_adds_updates_and_deletions_seen_only_at_relist() -> None:
    cached = {
        ("ns", "same"): cm("same", "1"),
        ("ns", "changed"): cm("changed", "1"),
        ("ns", "gone"): cm("gone", "1"),
    }
    listed = [cm("same", "1"), cm("changed", "5"), cm("new", "6")]
    changes = diff_relist(cached, listed)
    summary = sorted((c.type, c.obj["metadata"]["name"]) for c in changes)
    assert summary == [("ADDED", "new"), ("DELETED", "gone"), ("MODIFIED", "changed")]
    modified = next(c for c in changes if c.type == "MODIFIED")
    assert modified.old is not None
    assert modified.old["metadata"]["resourceVersion"] == "1"
    deleted = next(c for c in changes if c.type == "DELETED")
    assert deleted.obj is cached[("ns", "gone")], "a deletion carries the last known state"


def test_diff_turns_recreation_under_same_name_into_delete_and_add() -> None:
    cached = {("ns", "a"): cm("a", "1", uid="old")}
    changes = diff_relist(cached, [cm("a", "9", uid="new")])
    assert [(c.type, c.obj["metadata"]["uid"]) for c in changes] == [
        ("DELETED", "old"),
        ("ADDED", "new"),
    ]


def test_diff_of_identical_state_is_empty() -> None:
    obj = cm("a", "3")
    assert diff_relist({("ns", "a"): obj}, [cm("a", "3")]) == []


def test_store_get_list_and_namespaces() -> None:
    store = Store()
    store.apply(Change("ADDED", cm("a", "1")))
    store.apply(Change("ADDED", cm("b", "1", ns="other")))
    assert store.get("ns", "a") is not None
    assert store.get("ns", "b") is None
    assert len(store) == 2
    assert [o["metadata"]["name"] for o in store.list("other")] == ["b"]
    assert sorted(store.list_keys()) == [("ns", "a"), ("other", "b")]
    store.apply(Change("DELETED", cm("a", "2")))
    assert store.get("ns", "a") is None
    assert store.snapshot("ns") == {}


def test_owner_index_follows_updates_and_deletes() -> None:
    store = Store()
    store.apply(Change("ADDED", cm("c1", "1", owner="u1")))
    store.apply(Change("ADDED", cm("c2", "1", owner="u1")))
    store.apply(Change("ADDED", cm("free", "1")))
    assert sorted(o["metadata"]["name"] for o in store.by_owner("u1")) == ["c1", "c2"]
    store.apply(Change("MODIFIED", cm("c2", "2", owner="u2")))
    assert [o["metadata"]["name"] for o in store.by_owner("u1")] == ["c1"]
    assert [o["metadata"]["name"] for o in store.by_owner("u2")] == ["c2"]
    store.apply(Change("DELETED", cm("c1", "3", owner="u1")))
    assert store.by_owner("u1") == []


def labelled(name: str, rv: str, value: str | None, ns: str = "ns") -> Any:
    obj = cm(name, rv, ns=ns)
    if value is not None:
        obj["metadata"]["labels"] = {"app": value}
    return obj


def names(objs: list[Any]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def test_label_index_built_on_first_query_then_follows_changes() -> None:
    store = Store()
    store.apply(Change("ADDED", labelled("a1", "1", "a")))
    store.apply(Change("ADDED", labelled("b1", "1", "b")))
    store.apply(Change("ADDED", labelled("a-other-ns", "1", "a", ns="other")))
    store.apply(Change("ADDED", labelled("plain", "1", None)))
    assert names(store.with_label("ns", "app", "a")) == ["a1"]
    store.apply(Change("ADDED", labelled("a2", "1", "a")))
    store.apply(Change("MODIFIED", labelled("a1", "2", "a")))  # keeps its place
    assert names(store.with_label("ns", "app", "a")) == ["a1", "a2"]
    store.apply(Change("MODIFIED", labelled("b1", "2", "a")))  # relabelled
    store.apply(Change("MODIFIED", labelled("a2", "2", None)))  # label removed
    assert names(store.with_label("ns", "app", "a")) == ["a1", "b1"]
    assert store.with_label("ns", "app", "b") == []
    store.apply(Change("DELETED", labelled("a1", "3", "a")))
    assert names(store.with_label("ns", "app", "a")) == ["b1"]
    assert names(store.with_label("other", "app", "a")) == ["a-other-ns"]
    assert [o["metadata"]["resourceVersion"] for o in store.with_label("ns", "app", "a")] == ["2"]
