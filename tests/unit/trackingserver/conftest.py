"""Seed samples as parsed TrackingServers, with the UID the API server would have given them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from experiment_operator.api.trackingserver import TrackingServer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
UID = "fff12ab5-3043-4724-805a-9b5733afb98f"


def load_sample(name: str, **spec: Any) -> TrackingServer:
    """A seed sample (`blog` or `repo`) with spec overrides; None removes a field."""
    obj: dict[str, Any] = yaml.safe_load((FIXTURES / f"seed-{name}-sample.yaml").read_text())
    obj["metadata"]["uid"] = UID
    for key, value in spec.items():
        if value is None:
            obj["spec"].pop(key, None)
        else:
            obj["spec"][key] = value
    return TrackingServer.from_api(obj)


@pytest.fixture
def sample() -> Callable[..., TrackingServer]:
    return load_sample
