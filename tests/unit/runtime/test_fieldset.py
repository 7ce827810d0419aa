"""No-op detection by field sets: the live object projected onto our Apply entry's fieldsV1
equals (by digest) the body that produced it, and stops doing so when anything of ours drifts
or when the body changes (a field added, changed or dropped)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from experiment_operator.runtime.fieldset import (
    FIELD_MANAGER,
    applied_digest,
    desired_digest,
    project,
)

APPLIED_BODY: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "ts",
        "namespace": "ns",
        "labels": {"app": "x"},
        "ownerReferences": [{"uid": "u-1", "kind": "TrackingServer", "controller": True}],
    },
    "spec": {
        "replicas": 1,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "mlflow",
                        "image": "mlflow:2",
                        "args": ["--serve"],
                        "ports": [{"containerPort": 5000, "name": "server"}],
                    }
                ]
            }
        },
    },
}

OUR_FIELDS: dict[str, Any] = {
    "f:metadata": {
        "f:labels": {".": {}, "f:app": {}},
        "f:ownerReferences": {
            ".": {},
            'k:{"uid":"u-1"}': {".": {}, "f:controller": {}, "f:kind": {}, "f:uid": {}},
        },
    },
    "f:spec": {
        "f:replicas": {},
        "f:template": {
            "f:spec": {
                "f:containers": {
                    'k:{"name":"mlflow"}': {
                        ".": {},
                        "f:name": {},
                        "f:image": {},
                        "f:args": {'v:"--serve"': {}},
                        "f:ports": {
                            'k:{"containerPort":5000,"protocol":"TCP"}': {
                                ".": {},
                                "f:containerPort": {},
                                "f:name": {},
                            }
                        },
                    }
                }
            }
        },
    },
}


def live_object(fields: dict[str, Any] = OUR_FIELDS) -> dict[str, Any]:
    """What the server returns: our fields plus server defaults and other managers' parts."""
    live = copy.deepcopy(APPLIED_BODY)
    live["metadata"].update(uid="obj-1", resourceVersion="42", generation=1)
    live["metadata"]["labels"]["other"] = "theirs"
    live["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1"}
    container = live["spec"]["template"]["spec"]["containers"][0]
    container["terminationMessagePath"] = "/dev/termination-log"
    container["ports"][0]["protocol"] = "TCP"
    live["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "s"})
    live["spec"]["revisionHistoryLimit"] = 10
    live["status"] = {"replicas": 1}
    live["metadata"]["managedFields"] = [
        {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {}},
        {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": fields},
    ]
    return live


def test_unchanged_object_matches_the_body_that_made_it() -> None:
    assert applied_digest(live_object()) == desired_digest(APPLIED_BODY)


def test_identity_and_guards_do_not_count() -> None:
    body = copy.deepcopy(APPLIED_BODY)
    body["metadata"].update(uid="obj-1", resourceVersion="9")
    assert desired_digest(body) == desired_digest(APPLIED_BODY)


def test_projection_keeps_only_our_list_elements_and_keys() -> None:
    projected = project(live_object(), OUR_FIELDS)
    containers = projected["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["mlflow"]
    assert containers[0]["ports"] == [{"containerPort": 5000, "name": "server"}]
    assert projected["metadata"]["labels"] == {"app": "x"}
    assert "status" not in projected


def _body(**container: Any) -> dict[str, Any]:
    body = copy.deepcopy(APPLIED_BODY)
    body["spec"]["template"]["spec"]["containers"][0].update(container)
    return body


@pytest.mark.parametrize(
    "body",
    [
        _body(image="mlflow:3"),  # a value changed
        _body(args=["--serve", "--more"]),  # a set element added
        _body(env=[{"name": "A", "value": "1"}]),  # a field added
        {**APPLIED_BODY, "spec": {**APPLIED_BODY["spec"], "replicas": 2}},
    ],
)
def test_a_changed_body_differs(body: dict[str, Any]) -> None:
    assert applied_digest(live_object()) != desired_digest(body)


def test_a_field_we_stop_sending_differs() -> None:
    body = copy.deepcopy(APPLIED_BODY)
    del body["metadata"]["labels"]
    assert applied_digest(live_object()) != desired_digest(body)


def test_drift_differs() -> None:
    changed = live_object()
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "evil"
    assert applied_digest(changed) != desired_digest(APPLIED_BODY)
    # Someone else took the field over (it left our set): the projection lacks it.
    fields = copy.deepcopy(OUR_FIELDS)
    del fields["f:spec"]["f:replicas"]
    assert applied_digest(live_object(fields)) != desired_digest(APPLIED_BODY)


def test_an_object_we_never_wrote_has_no_digest() -> None:
    live = live_object()
    live["metadata"]["managedFields"][1].update(operation="Update", manager="someone-else")
    assert applied_digest(live) is None
    live["metadata"]["managedFields"][1].update(operation="Apply", manager=FIELD_MANAGER)
    live["metadata"]["managedFields"][1]["subresource"] = "status"
    assert applied_digest(live) is None


def test_an_object_we_created_with_a_post_has_the_digest_of_our_update_entry() -> None:
    """The create's set is the body's when the server added no defaults."""
    live = live_object()
    live["metadata"]["managedFields"][1]["operation"] = "Update"
    assert applied_digest(live) == desired_digest(APPLIED_BODY)
