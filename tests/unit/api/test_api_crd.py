"""The committed CRD is the generated one, and it is a structural, fully described schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from experiment_operator.api.crd import FILE_NAME, crd, main, render_crd

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "config" / "crd" / "bases" / FILE_NAME
FORBIDDEN = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "default", "writeOnly"}


def schema() -> dict[str, Any]:
    result: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return result


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")


def test_committed_crd_is_current() -> None:
    assert COMMITTED.read_text() == render_crd(), (
        "stale CRD: run python -m experiment_operator.api.crd config/crd/bases"
    )


def test_check_mode(tmp_path: Path) -> None:
    assert main(["--check", str(tmp_path)]) == 1
    assert main([str(tmp_path)]) == 0
    assert main(["--check", str(tmp_path)]) == 0


def test_schema_is_structural() -> None:
    for path, node in walk(schema()):
        if node.get("x-kubernetes-int-or-string"):  # the one anyOf a structural schema allows
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            assert not (FORBIDDEN - {"anyOf"}) & node.keys(), path
            continue
        assert not FORBIDDEN & node.keys(), path
        assert "type" in node, path
        if "additionalProperties" in node:
            assert "properties" not in node, path


def test_every_field_has_a_description() -> None:
    for path, node in walk(schema()):
        if path in {".metadata"} or (path.endswith("[]") and node.get("type") != "object"):
            continue
        assert node.get("description"), f"{path} has no description"


def test_seed_fields_keep_their_names_and_requiredness() -> None:
    """The seed's required fields stay required, except `image` and `s3_endpoint_url`: the
    operator has a default image, and an empty endpoint already meant AWS's."""
    spec = schema()["properties"]["spec"]
    assert set(spec["required"]) == {"size", "artifact_root", "backend_uri", "url"}
    seed_names = {
        "size",
        "image",
        "s3_endpoint_url",
        "aws_access_key",
        "aws_secret_key",
        "artifact_root",
        "backend_uri",
        "url",
        "volumeSize",
        "storageClassName",
        "cert",
        "key",
    }
    assert seed_names <= spec["properties"].keys()
    assert spec["properties"]["size"]["format"] == "int32"


def test_printer_columns_start_as_the_seed() -> None:
    version = crd()["spec"]["versions"][0]
    names = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert names == ["S3_ENDPOINT_URL", "ARTIFACT_ROOT", "READY", "URL", "AGE"]
    assert version["subresources"] == {"status": {}}


def test_every_cel_rule_has_a_message() -> None:
    text = yaml.safe_dump(schema())
    assert "x-kubernetes-validations" in text
    for _, node in walk(schema()):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"], rule
