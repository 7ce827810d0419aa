"""Locate (building once if needed) the control-plane binaries."""

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
    if not BUILD_SCRIPT.exists():
        raise FileNotFoundError(
            f"{BUILD_SCRIPT} not found: set KUBEBUILDER_ASSETS to a directory with the binaries"
        )
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])
