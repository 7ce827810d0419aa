"""The models parse what the seed's users wrote and never reveal credentials."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from experiment_operator.api import READY, TrackingServer, find_condition, set_condition

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((FIXTURES / name).read_text())
    return data


def test_blog_sample_parses() -> None:
    ts = TrackingServer.from_api(load("seed-blog-sample.yaml"))
    assert ts.metadata.name == "trackingserver"
    assert ts.metadata.namespace == "aiscope-devops-platform"
    assert ts.spec.size == 1
    assert ts.spec.url == "https://mlflow.platform.aiscope.io/platform"
    assert ts.spec.tls_enabled
    assert ts.spec.plaintext_credentials
    assert not ts.spec.volume_enabled
    assert ts.spec.volume_retention_policy == "Delete"
    assert ts.spec.s3_credentials_secret_ref is None


def test_repo_sample_parses() -> None:
    ts = TrackingServer.from_api(load("seed-repo-sample.yaml"))
    assert ts.spec.size == 2
    assert ts.spec.volume_size == "50G"
    assert ts.spec.storage_class_name == "ceph-rbd"
    assert ts.spec.volume_enabled


def test_secret_reference_defaults() -> None:
    obj = load("seed-blog-sample.yaml")
    for key in ("aws_access_key", "aws_secret_key"):
        del obj["spec"][key]
    obj["spec"]["s3CredentialsSecretRef"] = {"name": "s3"}
    ref = TrackingServer.from_api(obj).spec.s3_credentials_secret_ref
    assert ref is not None
    assert (ref.access_key_id_key, ref.secret_access_key_key) == (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    )


@pytest.mark.parametrize("render", [repr, str])
def test_credentials_never_in_repr(render: Any) -> None:
    ts = TrackingServer.from_api(load("seed-blog-sample.yaml"))
    text = render(ts) + render(ts.spec)
    assert "mlflow1234" not in text
    assert "PRIVATE KEY" not in text
    assert "sqlite:////" not in text
    assert "aws_access_key=SecretStr('**********')" in repr(ts.spec)


def test_set_condition_keeps_transition_time_while_status_holds() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    first = set_condition([], READY, "False", "Progressing", "a", observed_generation=1, now=t0)
    later = t0 + timedelta(minutes=5)
    same = set_condition(first, READY, "False", "Other", "b", observed_generation=2, now=later)
    ready = find_condition(same, READY)
    assert ready is not None
    assert ready.last_transition_time == t0
    assert (ready.reason, ready.observed_generation) == ("Other", 2)
    flipped = set_condition(same, READY, "True", "Available", "", observed_generation=2, now=later)
    assert len(flipped) == 1
    assert flipped[0].last_transition_time == later
    assert flipped[0].to_api() == {
        "type": "Ready",
        "status": "True",
        "observedGeneration": 2,
        "lastTransitionTime": "2026-01-01T00:05:00Z",
        "reason": "Available",
        "message": "",
    }
