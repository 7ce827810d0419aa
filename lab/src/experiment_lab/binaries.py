"""Locate (building once if needed) the Go-built binaries of the control plane and the lab."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "hack" / "controlplane" / "build.sh"


def find_binaries() -> Path:
    """Return the directory holding kube-apiserver, etcd, kwok and friends.

    ``KUBEBUILDER_ASSETS`` wins when set (envtest's convention); otherwise the build script
    builds into the user cache on first use and prints progress on stderr.
    """
    env_dir = os.environ.get("KUBEBUILDER_ASSETS")
    if env_dir and not BUILD_SCRIPT.exists():
        return Path(env_dir)
    return _build("controlplane")


def find_lab_binaries() -> Path:
    """Return the directory holding the node tier's binaries: kubelet, kube-proxy and the rest.

    Built from the same Kubernetes pin as the control plane (``KUBEBUILDER_ASSETS`` does not
    cover them), into the user cache on first use, with progress on stderr.
    """
    return _build("lab")


def _build(binary_set: str) -> Path:
    if not BUILD_SCRIPT.exists():
        raise FileNotFoundError(
            f"{BUILD_SCRIPT} not found: run from a checkout of the repository"
            " (for the control plane alone, KUBEBUILDER_ASSETS may name a directory with it)"
        )
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), binary_set], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])
