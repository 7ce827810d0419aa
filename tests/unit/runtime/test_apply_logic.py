"""Pure parts of the apply helpers: owner checks, merge patches, field takeover."""

from __future__ import annotations

from typing import Any

import pytest

from experiment_operator.runtime.apply import (
    FIELD_MANAGER,
    WrittenStatus,
    controller_reference,
    is_controlled_by,
    merge_patch,
    upgrade_managed_fields,
    with_controller_reference,
)
from experiment_operator.runtime.fieldset import is_update, union_fields, written_entry

OWNER: dict[str, Any] = {
    "apiVersion": "experiment.aiscope/v1alpha2",
    "kind": "TrackingServer",
    "metadata": {"name": "ts", "namespace": "ns", "uid": "u-1"},
}


def test_controller_reference_and_ownership() -> None:
    ref = controller_reference(OWNER)
    assert ref == {
        "apiVersion": "experiment.aiscope/v1alpha2",
        "kind": "TrackingServer",
        "name": "ts",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert is_controlled_by({"metadata": {"ownerReferences": [ref]}}, "u-1")
    assert not is_controlled_by({"metadata": {"ownerReferences": [ref]}}, "u-2")
    not_controller = {**ref, "controller": False}
    assert not is_controlled_by({"metadata": {"ownerReferences": [not_controller]}}, "u-1")
    assert not is_controlled_by({"metadata": {}}, "u-1")


def test_with_controller_reference_copies_and_does_not_duplicate() -> None:
    desired: dict[str, Any] = {"metadata": {"name": "c"}}
    once = with_controller_reference(desired, OWNER)
    assert desired == {"metadata": {"name": "c"}}, "the caller's dict is not modified"
    twice = with_controller_reference(once, OWNER)
    assert twice["metadata"]["ownerReferences"] == [controller_reference(OWNER)]


def test_merge_patch() -> None:
    current = {"ready": False, "url": "http://a", "nested": {"x": 1, "y": 2}, "gone": 1}
    desired = {"ready": True, "url": "http://a", "nested": {"x": 1, "y": 3}, "conditions": []}
    assert merge_patch(current, desired) == {
        "ready": True,
        "nested": {"y": 3},
        "gone": None,
        "conditions": [],
    }
    assert merge_patch(desired, desired) == {}


def _entry(manager: str, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": extra.pop("operation", "Update"),
        "apiVersion": "apps/v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        **extra,
    }


SEED_FIELDS: dict[str, Any] = {
    "f:metadata": {"f:ownerReferences": {".": {}, 'k:{"uid":"u-1"}': {}}},
    "f:spec": {
        "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}}, "f:type": {}},
        "f:template": {"f:spec": {"f:containers": {'k:{"name":"mlflow"}': {"f:env": {}}}}},
    },
}


def test_union_of_field_sets_is_deep() -> None:
    a: dict[str, Any] = {"f:spec": {"f:a": {}, "f:b": {"f:c": {}}}}
    b: dict[str, Any] = {"f:spec": {"f:b": {"f:d": {}}}, "f:metadata": {}}
    assert union_fields(a, b) == {
        "f:spec": {"f:a": {}, "f:b": {"f:c": {}, "f:d": {}}},
        "f:metadata": {},
    }
    assert a == {"f:spec": {"f:a": {}, "f:b": {"f:c": {}}}}  # inputs untouched


def test_takeover_moves_the_earlier_controllers_fields_to_our_apply_entry() -> None:
    """The writer of the owner reference is the earlier controller: its fields become ours;
    other writers (the Deployment controller's annotation, status) keep theirs."""
    revision: dict[str, Any] = {
        "f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}
    }
    status: dict[str, Any] = {"f:status": {"f:replicas": {}}}
    entries = [
        _entry("controller-manager.exe", SEED_FIELDS),
        _entry("kube-controller-manager", revision),
        _entry("kube-controller-manager", status, subresource="status"),
    ]
    upgraded = upgrade_managed_fields(entries, "u-1", "apps/v1")
    assert upgraded is not None
    assert [(e["manager"], e["operation"]) for e in upgraded] == [
        ("kube-controller-manager", "Update"),
        ("kube-controller-manager", "Update"),
        (FIELD_MANAGER, "Apply"),
    ]
    assert upgraded[-1]["fieldsV1"] == SEED_FIELDS
    entry = written_entry({"metadata": {"managedFields": upgraded}})
    assert entry is not None
    assert not is_update(entry)


def test_our_update_entry_counts_only_without_our_apply_entry() -> None:
    """A POST leaves our `Update` entry; once applied, the `Apply` entry is what we wrote."""
    created = _entry(FIELD_MANAGER, {"f:data": {}})
    applied = _entry(FIELD_MANAGER, {"f:spec": {}}, operation="Apply")
    status = {**_entry(FIELD_MANAGER, {"f:status": {}}), "subresource": "status"}
    assert written_entry({"metadata": {"managedFields": [status, created]}}) is created
    assert written_entry({"metadata": {"managedFields": [created, applied]}}) is applied
    assert written_entry({"metadata": {"managedFields": [status]}}) is None
    assert written_entry({"metadata": {"managedFields": [_entry("other", {"f:data": {}})]}}) is None


def test_takeover_merges_into_an_existing_apply_entry() -> None:
    ours = _entry(FIELD_MANAGER, {"f:spec": {"f:replicas": {}}}, operation="Apply")
    upgraded = upgrade_managed_fields([ours, _entry("old", SEED_FIELDS)], "u-1", "apps/v1")
    assert upgraded is not None
    [applied] = upgraded
    assert applied["fieldsV1"]["f:spec"]["f:replicas"] == {}
    assert "f:strategy" in applied["fieldsV1"]["f:spec"]


@pytest.mark.parametrize(
    "entries",
    [
        [],
        [_entry("someone", {"f:spec": {"f:replicas": {}}})],  # did not write the owner ref
        [_entry("old", SEED_FIELDS, subresource="status")],
        [_entry("old", SEED_FIELDS, operation="Apply")],
    ],
)
def test_nothing_to_take_over(entries: list[dict[str, Any]]) -> None:
    assert upgrade_managed_fields(entries, "u-1", "apps/v1") is None


def _cr(uid: str, status: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"namespace": "ns", "name": "ts", "uid": uid}, "status": status}


def test_written_status_remembers_per_object_and_uid() -> None:
    written = WrittenStatus()
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    stale = _cr("u1", {})  # a cache that has not seen our write yet
    assert not written.has(stale, ready)
    written.remember(stale, ready)
    assert written.has(stale, ready)
    assert not written.has(stale, {"conditions": []})  # a different status is written
    assert not written.has(_cr("u2", {}), ready)  # a recreated object is new
    written.forget("ns", "ts")
    assert not written.has(stale, ready)
