"""The README's demo, in its one-shot mode, so it cannot silently rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_once(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiment_lab.demo",
            "--once",
            f"--workdir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    operator_log = tmp_path / "operator.log"
    detail = result.stdout + result.stderr
    if operator_log.exists():
        detail += "\n--- operator log ---\n" + operator_log.read_text()[-5000:]
    assert result.returncode == 0, detail
    assert "Ready=True" in result.stdout, detail
    assert "deployment.apps/trackingserver" in result.stdout, detail
    assert "ingressroute.traefik.io/trackingserver" in result.stdout, detail
    assert "Synced" in result.stdout, detail
    assert "mlflow1234" not in detail, "a credential leaked into the demo output"
