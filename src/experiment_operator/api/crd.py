"""Generate the TrackingServer CustomResourceDefinition from the pydantic models.

The models are the single source: pydantic's JSON schema is turned into a *structural* OpenAPI v3
schema (references inlined, `null` unions dropped, keywords Kubernetes rejects removed), and the
CEL rules attached to the models travel along as `x-kubernetes-validations`.

    python -m experiment_operator.api.crd [--check] DIR

writes DIR/experiment.aiscope_trackingservers.yaml; with --check it only compares and exits 1
when the file is missing or stale.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from experiment_operator.api.trackingserver import (
    GROUP,
    KIND,
    PLURAL,
    SINGULAR,
    VERSION,
    TrackingServerSpec,
    TrackingServerStatus,
)

CRD_NAME = f"{PLURAL}.{GROUP}"
FILE_NAME = f"{GROUP}_{PLURAL}.yaml"
CATEGORIES = ["aiscope"]

# Keywords of pydantic's JSON schema that are not part of a structural CRD schema (or that we
# deliberately leave to the models: defaults live in pydantic so stored objects stay as written).
_DROPPED = {"title", "default", "writeOnly", "readOnly", "examples"}
_DROPPED_FORMATS = {"password"}

_NAME_RULE = {
    "rule": "size(self.metadata.name) <= 63 && "
    "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
    "message": "metadata.name must be a DNS-1035 label (at most 63 lowercase letters, digits "
    "or '-', starting with a letter and ending with a letter or digit): it names the Service",
}

_HEADER = (
    "# Generated from src/experiment_operator/api/trackingserver.py by\n"
    "# `python -m experiment_operator.api.crd config/crd/bases`; do not edit.\n"
)


def _description(text: str) -> str:
    """Join wrapped docstring lines into paragraphs so `kubectl explain` can reflow them."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Rewrite one pydantic JSON-schema node into structural OpenAPI v3."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        target = defs[ref.rsplit("/", 1)[-1]]
        node = {**target, **node}
    any_of = node.pop("anyOf", None)
    if any_of is not None and node.get("x-kubernetes-int-or-string"):
        node["anyOf"] = any_of  # the one anyOf a structural schema allows
    elif any_of is not None:
        branches = [b for b in any_of if b != {"type": "null"}]
        if len(branches) != 1:
            raise ValueError(f"cannot express anyOf {any_of!r} in a structural schema")
        branch = branches[0]
        if "$ref" in branch:
            branch = {**defs[branch["$ref"].rsplit("/", 1)[-1]]}
        node = {**branch, **node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or (key == "format" and value in _DROPPED_FORMATS):
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "additionalProperties":
            if isinstance(value, dict):  # a map's values; `false` is implied by the schema
                out[key] = _structural(value, defs)
        elif key == "items":
            out[key] = _structural(value, defs)
        elif key == "description":
            out[key] = _description(value)
        elif key == "x-kubernetes-validations":
            out[key] = [{"rule": v["rule"], "message": v["message"]} for v in value]
        else:
            out[key] = value
    return _ordered(out)


_ORDER = ["description", "type", "format", "enum", "minimum", "maximum", "minLength", "maxLength"]


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    """Stable, readable key order: description and type first, then the rest as generated."""
    first = {k: node[k] for k in _ORDER if k in node}
    return {**first, **{k: v for k, v in node.items() if k not in first}}


def _model_schema(model: type[TrackingServerSpec] | type[TrackingServerStatus]) -> Any:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    return _structural(schema, defs)


def openapi_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the TrackingServer version."""
    return {
        "description": "TrackingServer runs an MLflow tracking server: a Deployment, a Service, "
        "optionally a PersistentVolumeClaim and a TLS Secret, and the routing for its URL "
        "(Traefik IngressRoute or nginx Ingress).",
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation "
                "of an object.",
                "type": "string",
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this "
                "object represents.",
                "type": "string",
            },
            "metadata": {"type": "object"},
            "spec": _model_schema(TrackingServerSpec),
            "status": _model_schema(TrackingServerStatus),
        },
        "x-kubernetes-validations": [_NAME_RULE],
    }


def _ready(field: str) -> str:
    return f'.status.conditions[?(@.type=="Ready")].{field}'


def crd() -> dict[str, Any]:
    """The complete CustomResourceDefinition as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "categories": CATEGORIES,
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": "S3_ENDPOINT_URL",
                            "type": "string",
                            "jsonPath": ".spec.s3_endpoint_url",
                        },
                        {
                            "name": "ARTIFACT_ROOT",
                            "type": "string",
                            "jsonPath": ".spec.artifact_root",
                        },
                        {"name": "READY", "type": "string", "jsonPath": _ready("status")},
                        {"name": "URL", "type": "string", "jsonPath": ".status.url"},
                        {"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                        {
                            "name": "REASON",
                            "type": "string",
                            "jsonPath": _ready("reason"),
                            "priority": 1,
                        },
                    ],
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def render_crd() -> str:
    """The CRD as the YAML text committed under config/crd/bases."""
    body = yaml.safe_dump(crd(), sort_keys=False, width=100, allow_unicode=True)
    return f"{_HEADER}---\n{body}"


def main(argv: list[str] | None = None) -> int:
    """Write (or, with --check, verify) DIR/experiment.aiscope_trackingservers.yaml."""
    parser = argparse.ArgumentParser(prog="python -m experiment_operator.api.crd")
    parser.add_argument("directory", type=Path, help="output directory, e.g. config/crd/bases")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the file is missing or out of date"
    )
    args = parser.parse_args(argv)
    path: Path = args.directory / FILE_NAME
    text = render_crd()
    if args.check:
        current = path.read_text() if path.exists() else None
        if current != text:
            print(f"{path} is stale: run python -m experiment_operator.api.crd {args.directory}")
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
