"""One handle for tests, the demo and benchmarks: a local control plane or an existing cluster."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from experiment_lab.binaries import REPO_ROOT, find_binaries
from experiment_lab.controlplane import ControlPlane

THIRD_PARTY_CRDS_ENV = "EXPERIMENT_OPERATOR_THIRD_PARTY_CRDS"


class Kubectl(Protocol):
    """Run the real kubectl against the test cluster."""

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...


def use_existing_cluster() -> bool:
    return os.environ.get("USE_EXISTING_CLUSTER", "").lower() in {"1", "true", "yes"}


def third_party_crds_dir() -> Path:
    """Traefik and Gateway API CRDs: ``$EXPERIMENT_OPERATOR_THIRD_PARTY_CRDS`` or ../shared/crds."""
    return Path(os.environ.get(THIRD_PARTY_CRDS_ENV) or REPO_ROOT.parent / "shared" / "crds")


@dataclass
class Cluster:
    """What a test needs of a cluster, whichever kind it is."""

    kubeconfig: Path
    kubectl_path: str
    control_plane: ControlPlane | None = None

    @property
    def existing(self) -> bool:
        return self.control_plane is None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.kubectl_path, *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            check=check,
        )

    async def restart_apiserver(self) -> None:
        await self._local().restart_apiserver()

    async def compact_etcd(self) -> int:
        return await self._local().compact_etcd()

    def _local(self) -> ControlPlane:
        if self.control_plane is None:
            import pytest

            pytest.skip("needs the local control plane (not USE_EXISTING_CLUSTER)")
        return self.control_plane

    def install_third_party_crds(self, gateway_api: str | None = None) -> None:
        """Install the Traefik and Gateway API CRDs; on an existing cluster only missing ones.

        ``gateway_api`` ("v1.4.0"): only that Gateway API bundle (the one a real Traefik
        implements); otherwise every bundle, in order, the newest last.
        """
        for path in sorted(third_party_crds_dir().glob("*.yaml")):
            if (
                gateway_api
                and path.name.startswith("gateway-api-")
                and gateway_api not in path.name
            ):
                continue
            if not self.existing:
                self.kubectl("apply", "--server-side", "-f", str(path))
                continue
            result = self.kubectl("create", "-f", str(path), check=False)
            errors = [line for line in result.stderr.splitlines() if "AlreadyExists" not in line]
            if result.returncode != 0 and errors:
                raise RuntimeError(f"installing {path.name} failed: {result.stderr}")


@contextmanager
def cluster_for_tests(workdir: Path) -> Iterator[Cluster]:
    """Yield the cluster of ``KUBECONFIG`` (``USE_EXISTING_CLUSTER=true``) or a fresh local one
    whose state and logs live in ``workdir``."""
    if use_existing_cluster():
        kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
        yield Cluster(kubeconfig=kubeconfig, kubectl_path=os.environ.get("KUBECTL", "kubectl"))
        return
    binaries = find_binaries()
    plane = ControlPlane(workdir, binaries)
    plane.start()
    try:
        yield Cluster(plane.kubeconfig, str(binaries / "kubectl"), plane)
    finally:
        plane.stop()
