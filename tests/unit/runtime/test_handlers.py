"""Key mapping: For enqueues the object itself, Owns enqueues the controlling owner."""

from __future__ import annotations

from typing import Any

from experiment_operator.runtime.handlers import child_priority, object_keys, owner_keys
from experiment_operator.runtime.store import Change
from experiment_operator.runtime.workqueue import Priority


def child(*refs: dict[str, Any], ns: str = "ns") -> dict[str, Any]:
    return {"metadata": {"name": "child", "namespace": ns, "ownerReferences": list(refs)}}


def ref(
    kind: str = "TrackingServer",
    api: str = "experiment.aiscope/v1alpha2",
    name: str = "ts",
    controller: bool = True,
) -> dict[str, Any]:
    return {
        "apiVersion": api,
        "kind": kind,
        "name": name,
        "uid": f"uid-{name}",
        "controller": controller,
    }


GROUP, KIND = "experiment.aiscope", "TrackingServer"


def test_for_enqueues_own_key() -> None:
    obj = {"metadata": {"name": "a", "namespace": "ns"}}
    assert object_keys(Change("ADDED", obj)) == [("ns", "a")]
    assert object_keys(Change("DELETED", {"metadata": {"name": "n"}})) == [("", "n")]


def test_owns_enqueues_controller_owner_of_matching_group_and_kind() -> None:
    assert owner_keys(Change("DELETED", child(ref())), GROUP, KIND) == [("ns", "ts")]
    # any version of the group counts (the seed's objects may carry an older version)
    old_version = child(ref(api="experiment.aiscope/v1alpha1"))
    assert owner_keys(Change("ADDED", old_version), GROUP, KIND) == [("ns", "ts")]


def test_owns_ignores_non_controller_and_other_kinds() -> None:
    assert owner_keys(Change("ADDED", child(ref(controller=False))), GROUP, KIND) == []
    assert owner_keys(Change("ADDED", child(ref(kind="Other"))), GROUP, KIND) == []
    assert owner_keys(Change("ADDED", child(ref(api="other.io/v1"))), GROUP, KIND) == []
    assert owner_keys(Change("ADDED", child()), GROUP, KIND) == []
    core_owner = child(ref(kind="ConfigMap", api="v1", name="parent"))
    assert owner_keys(Change("ADDED", core_owner), "", "ConfigMap") == [("ns", "parent")]


def test_owns_update_enqueues_old_and_new_owner() -> None:
    change = Change("MODIFIED", child(ref(name="new")), old=child(ref(name="old")))
    assert owner_keys(change, GROUP, KIND) == [("ns", "old"), ("ns", "new")]


def test_cluster_scoped_owner_gets_empty_namespace() -> None:
    assert owner_keys(Change("ADDED", child(ref())), GROUP, KIND, owner_namespaced=False) == [
        ("", "ts")
    ]


def test_a_changed_child_goes_first_and_a_new_one_does_not() -> None:
    child = {"metadata": {"name": "ts", "namespace": "ns"}}
    assert child_priority(Change("ADDED", child)) is Priority.NORMAL  # echo of our create
    assert child_priority(Change("MODIFIED", child, old=child)) is Priority.HIGH
    assert child_priority(Change("DELETED", child)) is Priority.HIGH
