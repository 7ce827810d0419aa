"""The manager's cache transform: only our managedFields are kept, and decoded objects share
their keys and short strings (memory), without changing any value."""

from __future__ import annotations

import json
from typing import Any

from experiment_operator.runtime.apply import FIELD_MANAGER
from experiment_operator.runtime.manager import (
    SHARED_STRING_MAX_LEN,
    cache_transform,
    share_strings,
)


def deployment(name: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(
        json.dumps(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": name,
                    "namespace": "team-a",
                    "annotations": {"note": "x" * (SHARED_STRING_MAX_LEN + 1)},
                    "managedFields": [
                        {
                            "manager": FIELD_MANAGER,
                            "operation": "Apply",
                            "fieldsV1": {"f:spec": {}},
                        },
                        {"manager": "kube-controller-manager", "operation": "Update"},
                    ],
                },
                "spec": {
                    "replicas": 1,
                    "paused": False,
                    "template": {"spec": {"containers": [{"name": "mlflow", "ports": [5000]}]}},
                },
            }
        )
    )
    return decoded


def test_values_are_unchanged() -> None:
    original = deployment("a")
    assert share_strings(json.loads(json.dumps(original))) == original


def test_keys_and_short_strings_are_shared_between_objects() -> None:
    a, b = cache_transform(deployment("a")), cache_transform(deployment("b"))
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
    a, b = cache_transform(deployment("a")), cache_transform(deployment("b"))
    assert a["spec"] is not b["spec"]
    assert (
        a["spec"]["template"]["spec"]["containers"]
        is not (b["spec"]["template"]["spec"]["containers"])
    )


def test_only_our_managed_fields_are_kept() -> None:
    cached = cache_transform(deployment("a"))
    assert [e["manager"] for e in cached["metadata"]["managedFields"]] == [FIELD_MANAGER]
    others_only = deployment("b")
    del others_only["metadata"]["managedFields"][0]
    assert "managedFields" not in cache_transform(others_only)["metadata"]
