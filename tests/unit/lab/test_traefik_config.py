"""Golden static configurations of the lab's Traefik (v3 with the demo entry point, and v2).

Regenerate with `UPDATE_GOLDEN=1 pytest tests/unit/lab/test_traefik_config.py`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from experiment_lab.traefik import class_manifests, dynamic_config, static_config

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "lab"
WORKDIR = Path("/lab/traefik")
COMMON: dict[str, Any] = {
    "address": "10.87.3.1",
    "web_port": 80,
    "websecure_port": 443,
    "api_port": 40123,
    "workdir": WORKDIR,
}
CASES = {
    "traefik-v3-demo": static_config(**COMMON, extra_web="127.0.0.1:8080"),
    "traefik-v2": static_config(**COMMON, legacy=True),
    "traefik-demo-dynamic": dynamic_config("10.87.3.1", 80),
    "traefik-classes": {"items": class_manifests()},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    path = GOLDEN / f"{name}.yaml"
    rendered = yaml.safe_dump(CASES[name], sort_keys=True)
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered)
    assert rendered == path.read_text()


def test_every_entry_point_and_route_name_is_what_the_operator_writes() -> None:
    config = CASES["traefik-v3-demo"]
    assert {"web", "websecure"} <= set(config["entryPoints"])
    defaults = [name for name, ep in config["entryPoints"].items() if ep.get("asDefault")]
    assert sorted(defaults) == ["web", "websecure"]
    assert "asDefault" not in yaml.safe_dump(CASES["traefik-v2"])
