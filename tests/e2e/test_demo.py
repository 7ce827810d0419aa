"""The README's demo, in its one-shot mode, so it cannot silently rot.

It starts a lab of its own (the node tier, in a second slot beside the session's), so it is a
node-tier test: it needs root and the lab's packages, images and binaries (`make lab`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from experiment_lab.cluster import use_existing_cluster
from experiment_lab.hostprocess import free_port

pytestmark = [pytest.mark.integration, pytest.mark.node, pytest.mark.timeout(900)]


@pytest.mark.skipif(use_existing_cluster(), reason="the demo starts its own lab")
def test_demo_once(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "experiment_lab.demo", "--once", f"--workdir={tmp_path}",
         f"--port={port}"],
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )  # fmt: skip
    operator_log = tmp_path / "operator.log"
    detail = result.stdout + result.stderr
    if operator_log.exists():
        detail += "\n--- operator log ---\n" + operator_log.read_text()[-5000:]
    assert result.returncode == 0, detail
    out = result.stdout
    assert "aiscope-devops-platform/trackingserver: Ready=True" in out, detail
    assert "demo/mlflow: Ready=True" in out, detail
    assert "logged run" in out, detail
    assert f"UI:       http://localhost:{port}/demo/" in out, detail
    assert "deployment.apps/mlflow" in out, detail
    assert "ingressroute.traefik.io/mlflow" in out, detail
    assert "lab-node" in out, detail  # the Pods' node, in `kubectl get pods -o wide`
    assert "mlflow1234" not in detail, "a credential leaked into the demo output"
