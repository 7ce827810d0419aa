"""The embedded Kubernetes types in the CRD agree with the upstream 1.35 OpenAPI schemas
(kubernetes-validate's copy): the same properties, types and required fields, all the way down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from experiment_operator.api.crd import crd
from experiment_operator.api.trackingserver import KUBERNETES_TYPED_FIELDS

UPSTREAM = (
    Path(kubernetes_validate.__file__).parent
    / "kubernetes-json-schema"
    / "v1.35.0-local-strict"
    / "_definitions.json"
)
DEFS: dict[str, Any] = json.loads(UPSTREAM.read_text())["$defs"]
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"


def resolve(node: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    ref = node.get("$ref")
    if ref is None:
        return node, None
    name = ref.rsplit("/", 1)[-1]
    return DEFS[name], name


def upstream_type(node: dict[str, Any]) -> str:
    types = node.get("type", "object")
    types = [types] if isinstance(types, str) else [t for t in types if t != "null"]
    return str(types[0])


def compare(ours: dict[str, Any], theirs: dict[str, Any], path: str) -> None:
    theirs, name = resolve(theirs)
    if name == QUANTITY:
        assert ours.get("x-kubernetes-int-or-string") is True, path
        return
    kind = upstream_type(theirs)
    assert ours.get("type") == kind, f"{path}: {ours.get('type')} != {kind}"
    if kind == "array":
        compare(ours["items"], theirs["items"], f"{path}[]")
    elif kind == "object" and "properties" in theirs:
        assert set(ours["properties"]) == set(theirs["properties"]), path
        assert set(ours.get("required", [])) == set(theirs.get("required", [])), path
        for prop, sub in theirs["properties"].items():
            compare(ours["properties"][prop], sub, f"{path}.{prop}")
    elif kind == "object":
        value, _ = resolve(theirs["additionalProperties"])
        ours_value = ours["additionalProperties"]
        if value is DEFS[QUANTITY]:
            assert ours_value.get("x-kubernetes-int-or-string") is True, path
        else:
            assert ours_value == {"type": upstream_type(value)}, path


@pytest.mark.parametrize("field", list(KUBERNETES_TYPED_FIELDS))
def test_embedded_type_matches_upstream(field: str) -> None:
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    ours = spec["properties"][field]
    core_type = KUBERNETES_TYPED_FIELDS[field]
    theirs: dict[str, Any] = {"$ref": f"#/$defs/io.k8s.api.core.v1.{core_type}"}
    if ours["type"] == "array":
        compare(ours["items"], theirs, f"spec.{field}[]")
    else:
        compare(ours, theirs, f"spec.{field}")
