"""hack/controlplane/build.sh's contract: sets, KUBEBUILDER_ASSETS, stdout (no Go build here)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from experiment_lab.binaries import BUILD_SCRIPT

CONTROL_PLANE = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "etcd",
    "kwok",
    "helm",
)


def run(*args: str, assets: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBEBUILDER_ASSETS": str(assets)}
    return subprocess.run(
        ["bash", str(BUILD_SCRIPT), *args], env=env, capture_output=True, text=True, check=False
    )


def fake_assets(directory: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        (directory / name).write_text("#!/bin/sh\n")
        (directory / name).chmod(0o755)
    return directory


def test_kubebuilder_assets_is_the_control_plane_set(tmp_path: Path) -> None:
    assets = fake_assets(tmp_path, CONTROL_PLANE)
    for args in ((), ("controlplane",)):
        result = run(*args, assets=assets)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"{assets}\n"


def test_kubebuilder_assets_lacking_a_binary_fails_naming_them(tmp_path: Path) -> None:
    assets = fake_assets(tmp_path, CONTROL_PLANE[:-1])
    result = run("controlplane", assets=assets)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "lacks one of: kube-apiserver" in result.stderr


def test_an_unknown_set_prints_the_usage(tmp_path: Path) -> None:
    result = run("controlplane", "everything", assets=tmp_path)
    assert result.returncode == 2
    assert "Usage:" in result.stderr
    assert "lab" in result.stderr
