"""Generated docs: the TrackingServer field reference (from the CRD schema) and the permissions.

The schema says what the API server enforces (types, limits, CEL rules and their messages);
defaults are not in the schema (the models apply them, so stored objects stay as written), so
they are read from the pydantic models.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from experiment_operator import rbac
from experiment_operator.api.crd import CRD_NAME, crd
from experiment_operator.api.trackingserver import (
    API_VERSION,
    KIND,
    KUBERNETES_TYPED_FIELDS,
    TrackingServerSpec,
    TrackingServerStatus,
)

_HEADER = """\
<!-- Generated from src/experiment_operator/api by
     `python -m experiment_operator.manifests write`; do not edit. -->
"""


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class inside `Model`, `Model | None` or `list[Model]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def model_defaults(model: type[BaseModel], prefix: str) -> dict[str, str]:
    """`{"spec.volumeSize": '""', ...}`: the defaults the models apply, by JSON path."""
    out: dict[str, str] = {}
    for name, field in model.model_fields.items():
        path = f"{prefix}.{field.alias or name}"
        default = field.default
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        if default is not PydanticUndefined and default is not None:
            out[path] = f"`{default!r}`" if not isinstance(default, str) else f'`"{default}"`'
        nested = _model_of(field.annotation)
        if nested is not None:
            out.update(model_defaults(nested, f"{path}[]" if _is_list(field.annotation) else path))
    return out


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


def _type(node: dict[str, Any]) -> str:
    kind = str(node.get("type", "object"))
    if kind == "array":
        return f"array of {_type(node.get('items', {}))}"
    fmt = node.get("format")
    return f"{kind} ({fmt})" if fmt else kind


def _constraints(node: dict[str, Any]) -> list[str]:
    out = []
    if "enum" in node:
        out.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    for key, text in (("minimum", "≥ {}"), ("maximum", "≤ {}"), ("minLength", "length ≥ {}")):
        if key in node and not (key == "maximum" and node[key] == 2**31 - 1):
            out.append(text.format(node[key]))
    if "maxLength" in node:
        out.append(f"length ≤ {node['maxLength']}")
    if "maxItems" in node:
        out.append(f"at most {node['maxItems']} items")
    if "pattern" in node:
        out.append(f"matches `{node['pattern']}`")
    return out


def _fields(node: dict[str, Any], path: str, defaults: dict[str, str]) -> list[str]:
    """One bullet per field below `node`, depth first, in schema order."""
    lines: list[str] = []
    required = set(node.get("required", []))
    for name, sub in node.get("properties", {}).items():
        field_path = f"{path}.{name}"
        facts = [_type(sub), "required" if name in required else "optional"]
        if field_path in defaults:
            facts.append(f"default {defaults[field_path]}")
        facts += _constraints(sub)
        lines.append(f"- **`{field_path}`** — {', '.join(facts)}  ")
        lines.append(f"  {sub.get('description', '')}")
        for rule in sub.get("x-kubernetes-validations", []):
            lines.append(f"  - Rejected unless valid: “{rule['message']}”")
        if path == "spec" and name in KUBERNETES_TYPED_FIELDS:
            core_type = KUBERNETES_TYPED_FIELDS[name]
            lines.append(
                f"  - The Kubernetes type core/v1 `{core_type}`, validated as in a Pod; "
                f"`kubectl explain trackingserver.spec.{name}` describes its fields."
            )
            continue
        if sub.get("type") == "object":
            lines += _fields(sub, field_path, defaults)
        if sub.get("type") == "array" and sub.get("items", {}).get("type") == "object":
            lines += _fields(sub["items"], f"{field_path}[]", defaults)
    return lines


def render_permissions() -> str:
    """docs/permissions.md: the operator's RBAC rules and why each is needed."""
    lines = [
        _HEADER.replace("src/experiment_operator/api", "src/experiment_operator/rbac.py"),
        "# The operator's permissions",
        "",
        "Generated from the one table in `src/experiment_operator/rbac.py`, which also produces",
        "`config/rbac/` and the Helm chart's roles. Why Secrets need `list` and `watch`, and",
        "what the operator never does: [security.md](security.md).",
        "",
        "In every watched namespace (a ClusterRole by default; a Role per namespace with",
        "`--namespace` / the chart's `watchNamespaces`):",
        "",
        *_rule_table(rbac.OPERATOR_RULES),
        "",
        "In the operator's own namespace only (a Role, for leader election):",
        "",
        *_rule_table(rbac.LEADER_ELECTION_RULES),
        "",
        "With the cluster-wide install, a FlowSchema (API Priority and Fairness, precedence",
        f"{rbac.LEADER_ELECTION_FLOW_PRECEDENCE}) sends these Lease requests to the built-in",
        "`leader-election` priority level, so throttling the operator's other requests never",
        "starves its Lease renewals.",
    ]
    return "\n".join(lines) + "\n"


def _rule_table(table: tuple[rbac.Rule, ...]) -> list[str]:
    lines = ["| API group | Resources | Verbs | Why |", "| --- | --- | --- | --- |"]
    for rule in table:
        groups = ", ".join(f"`{g}`" if g else "core" for g in rule.groups)
        resources = ", ".join(f"`{r}`" for r in rule.resources)
        lines.append(f"| {groups} | {resources} | {', '.join(rule.verbs)} | {rule.why} |")
    return lines


def render_reference() -> str:
    """The Markdown reference: resource facts, printer columns, every field, every rule."""
    definition = crd()
    version = definition["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    spec, status = schema["properties"]["spec"], schema["properties"]["status"]
    defaults = {
        **model_defaults(TrackingServerSpec, "spec"),
        **model_defaults(TrackingServerStatus, "status"),
    }
    names = definition["spec"]["names"]
    lines = [
        _HEADER,
        f"# {KIND} field reference",
        "",
        f"`apiVersion: {API_VERSION}`, `kind: {KIND}` — CRD `{CRD_NAME}`, namespaced, "
        f"plural `{names['plural']}`, categories {', '.join(names['categories'])} "
        "(`kubectl get aiscope`). The status is a subresource.",
        "",
        schema["description"],
        "",
        "`kubectl get trackingservers` shows:",
        "",
        "| Column | From | Only with `-o wide` |",
        "| --- | --- | --- |",
    ]
    for column in version["additionalPrinterColumns"]:
        wide = "yes" if column.get("priority", 0) > 0 else ""
        lines.append(f"| {column['name']} | `{column['jsonPath']}` | {wide} |")
    lines += ["", "## spec", "", spec["description"], ""]
    lines += _fields(spec, "spec", defaults)
    lines += ["", "Rules across fields (checked by the API server on create and update):", ""]
    for rule in spec.get("x-kubernetes-validations", []):
        lines.append(f"- “{rule['message']}”")
    for rule in schema.get("x-kubernetes-validations", []):
        lines.append(f"- “{rule['message']}”")
    lines += ["", "## status", "", status["description"], ""]
    lines += _fields(status, "status", defaults)
    return "\n".join(lines) + "\n"
