"""Schemas of the Kubernetes types some spec fields embed (env, resources, affinity, ...).

They are generated from lightkube-models, the pinned Kubernetes API (1.35) the operator already
depends on, the way kubebuilder embeds `corev1` types: every property with its type, required
fields and description, so the API server validates and prunes them and `kubectl explain`
describes them. Quantities become int-or-string and untyped maps string maps, as upstream.
`tests/unit/api/test_kubetypes.py` checks the result against the upstream OpenAPI schemas.
"""

from __future__ import annotations

import inspect
import re
from typing import Annotated, Any

from lightkube.models import core_v1
from msgspec import inspect as mi
from pydantic import WithJsonSchema

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
QUANTITY: dict[str, Any] = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "pattern": QUANTITY_PATTERN,
    "x-kubernetes-int-or-string": True,
}
_QUANTITY_FIELDS = {
    ("ResourceRequirements", "limits"): "map",
    ("ResourceRequirements", "requests"): "map",
    ("ResourceFieldSelector", "divisor"): "value",
}
"""Fields lightkube types as str or dict that are Quantities (or maps of them) upstream."""
_BULLET = re.compile(r"^\* \*\*(?P<name>\w+)\*\* ``[^`]*`` - (?P<text>.*)$")


def _field_descriptions(cls: type) -> tuple[str, dict[str, str]]:
    """The class description and each field's, from lightkube's docstring bullets."""
    doc = inspect.getdoc(cls) or ""
    head, _, params = doc.partition("**parameters**")
    fields: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in params.splitlines():
        bullet = _BULLET.match(line.strip())
        if bullet is not None:
            current = fields.setdefault(bullet["name"], [bullet["text"]])
        elif current is not None and line.strip():
            current.append(line.strip())
    return " ".join(head.split()), {k: " ".join(v) for k, v in fields.items()}


def _schema(t: mi.Type, owner: str = "", field: str = "") -> dict[str, Any]:
    quantity = _QUANTITY_FIELDS.get((owner, field))
    if isinstance(t, mi.UnionType):
        [inner] = [u for u in t.types if not isinstance(u, mi.NoneType)]
        return _schema(inner, owner, field)
    if quantity == "value":
        return dict(QUANTITY)
    if isinstance(t, mi.StrType):
        return {"type": "string"}
    if isinstance(t, mi.BoolType):
        return {"type": "boolean"}
    if isinstance(t, mi.IntType):
        return {"type": "integer", "format": "int64"}
    if isinstance(t, mi.FloatType):
        return {"type": "number"}
    if isinstance(t, mi.ListType):
        return {"type": "array", "items": _schema(t.item_type)}
    if isinstance(t, mi.DictType | mi.AnyType):
        value = dict(QUANTITY) if quantity == "map" else {"type": "string"}
        return {"type": "object", "additionalProperties": value}
    if isinstance(t, mi.StructType):
        return _struct(t)
    raise TypeError(f"no schema for {t!r} ({owner}.{field})")


def _struct(t: mi.StructType) -> dict[str, Any]:
    description, described = _field_descriptions(t.cls)
    properties: dict[str, Any] = {}
    for f in t.fields:
        prop = _schema(f.type, t.cls.__name__, f.encode_name)
        if described.get(f.encode_name):  # the field's own words, not its type's
            rest = {k: v for k, v in prop.items() if k != "description"}
            prop = {"description": described[f.encode_name], **rest}
        properties[f.encode_name] = prop
    node: dict[str, Any] = {"description": description, "type": "object"}
    node["properties"] = properties
    required = [f.encode_name for f in t.fields if f.required]
    if required:
        node["required"] = required
    return node


def kube_schema(cls: type, *, array: bool = False) -> dict[str, Any]:
    """The structural schema of a lightkube model class (or of a list of them)."""
    node = _struct(mi.type_info(cls))  # type: ignore[arg-type]
    if array:
        return {"type": "array", "items": node}
    return node


def kube_type(cls: type, *, array: bool = False) -> WithJsonSchema:
    """A pydantic annotation giving a plain-dict field the schema of a Kubernetes type."""
    return WithJsonSchema(kube_schema(cls, array=array))


KubeObject = dict[str, Any]
ResourceRequirements = Annotated[KubeObject, kube_type(core_v1.ResourceRequirements)]
EnvVars = Annotated[list[KubeObject], kube_type(core_v1.EnvVar, array=True)]
EnvFromSources = Annotated[list[KubeObject], kube_type(core_v1.EnvFromSource, array=True)]
Tolerations = Annotated[list[KubeObject], kube_type(core_v1.Toleration, array=True)]
Affinity = Annotated[KubeObject, kube_type(core_v1.Affinity)]
LocalObjectReferences = Annotated[
    list[KubeObject], kube_type(core_v1.LocalObjectReference, array=True)
]
"""Plain-dict field types with the schema of their Kubernetes type: passed to the Pod as given."""
