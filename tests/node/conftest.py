"""The node tier: one lab per session (control plane, real node, Traefik, S3, PostgreSQL).

Tests here get the lab's cluster through the same fixture names as the rest of the suite
(`cluster`, `kubectl`, `new_client`, `trackingserver_crd`), overridden here so no session-wide
value of the kwok tier is reused. With ``USE_EXISTING_CLUSTER=true`` they run against
``KUBECONFIG`` when ``EXPERIMENT_LAB_INGRESS`` says where its Traefik listens (see docs/lab.md),
and skip with that reason otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lightkube import AsyncClient, KubeConfig

from experiment_lab.cluster import Cluster, Kubectl, use_existing_cluster
from experiment_lab.lab import running_lab
from experiment_lab.leakcheck import watch_cluster
from experiment_lab.operator import operator_in_thread
from experiment_lab.tier import NodeTier, existing_node_tier
from experiment_operator.api.crd import CRD_NAME
from experiment_operator.trackingserver.children import ChildOptions

CRD_FILE = Path(__file__).resolve().parents[2] / "config" / "crd" / "bases"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/node/" in str(item.path):
            item.add_marker(pytest.mark.node)
            item.add_marker(pytest.mark.timeout(900))


@pytest.fixture(scope="session")
def node_tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeTier]:
    if use_existing_cluster():
        yield existing_node_tier()
        return
    with running_lab(tmp_path_factory.mktemp("lab"), progress=print) as lab:
        watch = watch_cluster(lab.cluster.kubeconfig, harvest=True)
        try:
            yield NodeTier.of(lab)
        finally:
            watch.stop()


@pytest.fixture(scope="session")
def cluster(node_tier: NodeTier) -> Cluster:
    return node_tier.cluster


@pytest.fixture(scope="session")
def new_client(cluster: Cluster) -> Callable[[], AsyncClient]:
    def make() -> AsyncClient:
        return AsyncClient(config=KubeConfig.from_file(cluster.kubeconfig), field_manager="tests")

    return make


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> Kubectl:
    return cluster.kubectl


@pytest.fixture(scope="session")
def trackingserver_crd(cluster: Cluster) -> str:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
    return CRD_NAME


@pytest.fixture(scope="module")
def operator(node_tier: NodeTier, trackingserver_crd: str) -> Iterator[None]:
    """The operator in-process (one per module, on its own thread so that synchronous tests
    may block), starting MLflow from the tier's image by default."""
    options = ChildOptions(mlflow_image=node_tier.mlflow_image)
    with operator_in_thread(node_tier.cluster.kubeconfig, options=options):
        yield
