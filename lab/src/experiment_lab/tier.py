"""The node tier as tests see it: the lab's own, or an existing cluster with a real node.

On an existing cluster (``USE_EXISTING_CLUSTER=true``) the tests need to know where its Traefik
listens and which MLflow images its nodes can run:

- ``EXPERIMENT_LAB_INGRESS=ADDRESS[:WEB_PORT[:WEBSECURE_PORT]]`` (required, else the tier skips),
- ``EXPERIMENT_LAB_MLFLOW_IMAGE`` (default: the operator's default, the official image),
- ``EXPERIMENT_LAB_SEED_IMAGE`` (an image with the seed's contract; default ``mlflow:aiscope``),
- ``EXPERIMENT_LAB_STORAGE_CLASS`` (a StorageClass that provisions volumes; default ``standard``).

Checks that need the lab's own servers or its node (S3, PostgreSQL, processes on the node) skip
there with that reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from experiment_lab.cluster import Cluster
from experiment_lab.images import MLFLOW_IMAGE, SEED_MLFLOW_IMAGE
from experiment_lab.ingress import IngressEndpoint
from experiment_lab.lab import Lab
from experiment_lab.provisioner import STORAGE_CLASS
from experiment_operator.trackingserver.mlflow import DEFAULT_MLFLOW_IMAGE

INGRESS_ENV = "EXPERIMENT_LAB_INGRESS"


@dataclass
class NodeTier:
    cluster: Cluster
    ingress: IngressEndpoint
    mlflow_image: str
    seed_image: str
    storage_class: str
    lab: Lab | None = None

    @classmethod
    def of(cls, lab: Lab) -> NodeTier:
        return cls(lab.cluster, lab.ingress, MLFLOW_IMAGE, SEED_MLFLOW_IMAGE, STORAGE_CLASS, lab)

    def need_lab(self) -> Lab:
        """The lab's own servers and node; skips the test on an existing cluster."""
        if self.lab is None:
            pytest.skip("needs the lab's own node and servers (not USE_EXISTING_CLUSTER)")
        return self.lab


def existing_node_tier() -> NodeTier:
    """The node tier of ``KUBECONFIG``'s cluster, or a skip saying what is missing."""
    spec = os.environ.get(INGRESS_ENV)
    if not spec:
        pytest.skip(f"the node tier on an existing cluster needs {INGRESS_ENV} (see docs/lab.md)")
    address, *ports = spec.split(":")
    defaults = ["80", "443"]
    web, websecure = (int(port) for port in [*ports, *defaults[len(ports) :]][:2])
    kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
    return NodeTier(
        Cluster(kubeconfig=kubeconfig, kubectl_path=os.environ.get("KUBECTL", "kubectl")),
        IngressEndpoint(address, web, websecure),
        os.environ.get("EXPERIMENT_LAB_MLFLOW_IMAGE", DEFAULT_MLFLOW_IMAGE),
        os.environ.get("EXPERIMENT_LAB_SEED_IMAGE", "mlflow:aiscope"),
        os.environ.get("EXPERIMENT_LAB_STORAGE_CLASS", "standard"),
    )
