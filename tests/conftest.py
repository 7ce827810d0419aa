"""Fixtures shared by every test that needs a real API server (poll with envtest.wait.eventually).

The session starts one local control plane (or uses ``KUBECONFIG`` with
``USE_EXISTING_CLUSTER=true``); each test gets a fresh namespace and its own async client.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from experiment_lab.cluster import Cluster, Kubectl, cluster_for_tests
from experiment_lab.leakcheck import watch_cluster
from experiment_lab.serviceaccount import OperatorAccount, operator_account
from experiment_operator.api.crd import CRD_NAME, FILE_NAME

CRD_FILE = Path(__file__).resolve().parents[1] / "config" / "crd" / "bases" / FILE_NAME


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Under pytest's basetemp: the logs of the last few runs are kept, older ones removed.
    with cluster_for_tests(tmp_path_factory.mktemp("controlplane")) as handle:
        handle.install_third_party_crds()
        # Events and status the operator writes are checked for credentials; on the suite's own
        # cluster every Secret's values count as credentials (see experiment_lab.leakcheck).
        watch = watch_cluster(handle.kubeconfig, harvest=not handle.existing)
        try:
            yield handle
        finally:
            watch.stop()


@pytest.fixture(scope="session")
def new_client(cluster: Cluster) -> Callable[[], AsyncClient]:
    """Make a fresh admin client; the caller closes it."""

    def make() -> AsyncClient:
        return AsyncClient(config=KubeConfig.from_file(cluster.kubeconfig), field_manager="tests")

    return make


@pytest.fixture
async def kube(new_client: Callable[[], AsyncClient]) -> AsyncIterator[AsyncClient]:
    client = new_client()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def namespace(kube: AsyncClient) -> AsyncIterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    await kube.create(Namespace(metadata=ObjectMeta(name=name, labels={"e2e": "true"})))
    yield name
    await kube.delete(Namespace, name)


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> Kubectl:
    return cluster.kubectl


@pytest.fixture(scope="session")
def trackingserver_crd(kubectl: Kubectl) -> str:
    """Apply the committed TrackingServer CRD (idempotent) and wait until it is established."""
    applied = kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE), check=False
    )
    assert applied.returncode == 0, applied.stderr
    kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
    return CRD_NAME


@pytest.fixture
async def operator_sa(
    kube: AsyncClient, cluster: Cluster, namespace: str, tmp_path: Path
) -> AsyncIterator[OperatorAccount]:
    """The operator's ServiceAccount in the test's namespace with the generated cluster-wide RBAC;
    run the operator with ``operator_sa.kubeconfig`` so a missing permission fails the test."""
    async with operator_account(kube, cluster.kubeconfig, namespace, tmp_path) as account:
        yield account


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration and tests/e2e needs a real API server."""
    for item in items:
        if "/tests/integration/" in str(item.path) or "/tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.integration)
