"""Install the generated TrackingServer CRD once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiment_operator.api.crd import CRD_NAME, FILE_NAME
from experiment_operator.envtest.cluster import Kubectl

CRD_FILE = Path(__file__).resolve().parents[3] / "config" / "crd" / "bases" / FILE_NAME


@pytest.fixture(scope="session")
def trackingserver_crd(kubectl: Kubectl) -> str:
    """Apply the committed CRD (idempotent) and wait until it is established."""
    applied = kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE), check=False
    )
    assert applied.returncode == 0, applied.stderr
    kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
    return CRD_NAME
