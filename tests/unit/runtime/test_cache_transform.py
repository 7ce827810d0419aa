"""The manager's cache transform: no managedFields nor last-applied copy, the apply digest
kept, bodies dropped for slim kinds, and decoded objects sharing keys and short strings."""

from __future__ import annotations

import copy
import json
from typing import Any

from experiment_operator.runtime.cache import (
    APPLIED,
    APPLIED_FROM,
    CREATED,
    LAST_APPLIED_ANNOTATION,
    SHARED_STRING_MAX_LEN,
    SYNTHETIC_KEYS,
    cache_transform,
    share_strings,
)
from experiment_operator.runtime.fieldset import FIELD_MANAGER, applied_digest

WHOLE = cache_transform()
STATUS_ONLY = cache_transform(("status",))


def deployment(name: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(
        json.dumps(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": name,
                    "namespace": "team-a",
                    "uid": f"uid-{name}",
                    "resourceVersion": "7",
                    "selfLink": "/x",
                    "annotations": {
                        "note": "x" * (SHARED_STRING_MAX_LEN + 1),
                        LAST_APPLIED_ANNOTATION: "{...}",
                    },
                    "managedFields": [
                        {
                            "manager": FIELD_MANAGER,
                            "operation": "Apply",
                            "fieldsV1": {"f:spec": {"f:replicas": {}}},
                        },
                        {"manager": "kube-controller-manager", "operation": "Update"},
                    ],
                },
                "spec": {
                    "replicas": 1,
                    "paused": False,
                    "template": {"spec": {"containers": [{"name": "mlflow", "ports": [5000]}]}},
                },
                "status": {"replicas": 1},
            }
        )
    )
    return decoded


def test_values_are_unchanged() -> None:
    original = deployment("a")
    assert share_strings(json.loads(json.dumps(original))) == original


def test_keys_and_short_strings_are_shared_between_objects() -> None:
    a, b = WHOLE(deployment("a")), WHOLE(deployment("b"))
    key_a = next(k for k in a if k == "apiVersion")
    key_b = next(k for k in b if k == "apiVersion")
    assert key_a is key_b
    assert a["apiVersion"] is b["apiVersion"]
    container_a = a["spec"]["template"]["spec"]["containers"][0]
    container_b = b["spec"]["template"]["spec"]["containers"][0]
    assert container_a["name"] is container_b["name"]
    # Long strings (certificates, messages) are left alone: they are rarely repeated.
    assert a["metadata"]["annotations"]["note"] is not b["metadata"]["annotations"]["note"]


def test_objects_stay_independent() -> None:
    a, b = WHOLE(deployment("a")), WHOLE(deployment("b"))
    assert a["spec"] is not b["spec"]
    assert (
        a["spec"]["template"]["spec"]["containers"]
        is not (b["spec"]["template"]["spec"]["containers"])
    )


def test_managed_fields_and_last_applied_go_the_digest_stays() -> None:
    original = deployment("a")
    cached = WHOLE(deployment("a"))
    assert "managedFields" not in cached["metadata"]
    assert LAST_APPLIED_ANNOTATION not in cached["metadata"]["annotations"]
    assert cached[APPLIED] == applied_digest(original)
    assert isinstance(cached[APPLIED], bytes)
    others_only = deployment("b")
    del others_only["metadata"]["managedFields"][0]
    assert WHOLE(others_only)[APPLIED] is None


def test_slim_kinds_keep_metadata_and_the_named_fields() -> None:
    cached = STATUS_ONLY(deployment("a"))
    assert set(cached) == {"apiVersion", "kind", "metadata", "status", APPLIED, APPLIED_FROM}
    assert cached["status"] == {"replicas": 1}
    assert set(cached["metadata"]) == {"name", "namespace", "uid", "resourceVersion", "annotations"}
    assert cached[APPLIED] == applied_digest(deployment("a"))
    metadata_only = cache_transform(())(deployment("a"))
    assert set(metadata_only) == {"apiVersion", "kind", "metadata", APPLIED, APPLIED_FROM}


def test_an_object_we_created_with_a_post_is_marked() -> None:
    """Its digest is of our Update entry; `CREATED` says it must be taken over before a change."""
    created = deployment("a")
    for entry in created["metadata"]["managedFields"]:
        if entry["manager"] == FIELD_MANAGER:
            entry["operation"] = "Update"
    cached = cache_transform(())(created)
    assert cached[CREATED] is True
    assert cached[APPLIED] == applied_digest(created) is not None
    assert CREATED not in cache_transform(())(deployment("a"))
    assert CREATED in SYNTHETIC_KEYS


def _with_stale_digest(cached: dict[str, Any]) -> dict[str, Any]:
    """A cached form whose digest could only have been reused, never computed."""
    return {**cached, APPLIED: b"reused"}


def test_digest_is_reused_while_what_it_depends_on_is_unchanged() -> None:
    previous = _with_stale_digest(STATUS_ONLY(deployment("a")))
    status_update = deployment("a")
    status_update["metadata"]["resourceVersion"] = "8"
    status_update["status"] = {"replicas": 1, "readyReplicas": 1}
    status_update["metadata"]["managedFields"].append({"manager": "kubelet", "operation": "Update"})
    assert STATUS_ONLY(status_update, previous)[APPLIED] == b"reused"


def test_digest_is_computed_again_when_an_input_changed() -> None:
    previous = _with_stale_digest(STATUS_ONLY(deployment("a")))
    ours_changed = deployment("a")
    ours_changed["spec"]["replicas"] = 2
    set_changed = deployment("a")
    set_changed["metadata"]["managedFields"][0]["fieldsV1"] = {"f:spec": {"f:paused": {}}}
    label_owned = deployment("a")
    label_owned["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"] = {"f:labels": {}}
    label_owned["metadata"]["labels"] = {"team": "a"}
    relabelled = copy.deepcopy(label_owned)
    relabelled["metadata"]["labels"] = {"team": "b"}
    for changed in (ours_changed, set_changed, label_owned):
        cached = STATUS_ONLY(changed, previous)
        assert cached[APPLIED] == applied_digest(changed)
    label_previous = _with_stale_digest(STATUS_ONLY(label_owned))
    assert STATUS_ONLY(relabelled, label_previous)[APPLIED] == applied_digest(relabelled)
    assert STATUS_ONLY(deployment("a"), {"metadata": {}})[APPLIED] == applied_digest(
        deployment("a")
    )
