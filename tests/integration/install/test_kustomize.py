"""`kubectl apply -k config/default` installs the operator (dry run, then for real)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from experiment_lab.binaries import REPO_ROOT
from experiment_lab.cluster import Cluster, Kubectl
from experiment_operator.manifests import dump, install
from experiment_operator.rbac import rules

DEFAULT = str(REPO_ROOT / "config" / "default")
ACCOUNT = f"system:serviceaccount:{install.NAMESPACE}:{install.NAMES.account}"


UNKNOWN_TO_KUSTOMIZE = {"FlowSchema"}
"""Cluster-scoped kinds newer than kustomize's built-in schema: its namespace transformer sets
metadata.namespace on them, which kubectl ignores for cluster-scoped objects (the apply test
below installs config/default as it is)."""


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def _as_installed(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] in UNKNOWN_TO_KUSTOMIZE:
        obj["metadata"].pop("namespace", None)
    return obj


def test_kustomize_output_is_what_python_installs(kubectl: Kubectl) -> None:
    """`experiment-operator manifests` (render_install) prints exactly what config/default holds."""
    built = kubectl("kustomize", DEFAULT).stdout
    objects = [_as_installed(o) for o in yaml.safe_load_all(built) if o]
    from_kustomize = {_key(o): o for o in objects}
    from_python = {_key(o): o for o in install.install_objects()}
    assert from_kustomize == from_python


@pytest.fixture
def cleanup_install(cluster: Cluster) -> Iterator[None]:
    """Remove what the install made, except the shared CRD other tests rely on."""
    yield
    role, binding = install.NAMES.role, install.NAMES.role_binding
    cluster.kubectl(
        "delete", "--ignore-not-found", "--timeout=120s", "namespace", install.NAMESPACE
    )
    cluster.kubectl("delete", "--ignore-not-found", "clusterrolebinding", binding)
    cluster.kubectl("delete", "--ignore-not-found", "clusterrole", role)
    cluster.kubectl(
        "delete", "--ignore-not-found", "flowschema", install.NAMES.leader_election_flow_schema
    )


@pytest.mark.usefixtures("cleanup_install")
def test_apply_k_config_default(cluster: Cluster, kubectl: Kubectl) -> None:
    # The server-side dry run needs the namespace to exist; nothing else is created by it.
    kubectl("apply", "-f", "-", input=dump([install.namespace()]))
    dry = kubectl("apply", "-k", DEFAULT, "--dry-run=server", check=False)
    assert dry.returncode == 0, dry.stderr
    assert "(server dry run)" in dry.stdout
    assert "would violate PodSecurity" not in dry.stderr
    assert kubectl("get", "deployment", "-n", install.NAMESPACE, "-o", "name").stdout == ""
    if cluster.existing:
        pytest.skip("a real install would start the operator image in a shared cluster")

    applied = kubectl("apply", "-k", DEFAULT, check=False)
    assert applied.returncode == 0, applied.stderr
    # Pods are only admitted under the namespace's enforced `restricted` Pod Security level.
    rollout = kubectl(
        "rollout", "status", "-n", install.NAMESPACE, f"deployment/{install.DEPLOYMENT}",
        "--timeout=120s", check=False,
    )  # fmt: skip
    assert rollout.returncode == 0, rollout.stdout + rollout.stderr

    role = yaml.safe_load(kubectl("get", "clusterrole", install.NAMES.role, "-o", "yaml").stdout)
    assert role["rules"] == rules()

    def can(*args: str) -> str:
        return kubectl("auth", "can-i", f"--as={ACCOUNT}", *args, check=False).stdout.strip()

    assert can("watch", "trackingservers.experiment.aiscope", "-A") == "yes"
    assert can("patch", "trackingservers.experiment.aiscope", "--subresource=status") == "yes"
    assert can("update", "leases.coordination.k8s.io", "-n", install.NAMESPACE) == "yes"
    assert can("update", "leases.coordination.k8s.io", "-n", "default") == "no"
    assert can("update", "trackingservers.experiment.aiscope") == "no"
    assert can("list", "configmaps", "-A") == "no"
