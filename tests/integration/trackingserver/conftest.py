"""Fixtures: the operator's ServiceAccount identity for in-process operators (see
`experiment_operator.envtest.operator.run_operator`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from lightkube import AsyncClient

from experiment_operator import rbac
from experiment_operator.api.trackingserver import GROUP, PLURAL
from experiment_operator.envtest.cluster import Cluster
from experiment_operator.envtest.serviceaccount import OperatorAccount, operator_account
from experiment_operator.runtime import kubeapi


def _grants_patch_on_trackingservers() -> bool:
    return any(
        GROUP in r.groups and PLURAL in r.resources and "patch" in r.verbs
        for r in rbac.OPERATOR_RULES
    )


@asynccontextmanager
async def finalizer_rbac(client: AsyncClient, account: OperatorAccount) -> AsyncIterator[None]:
    """Finalizers (the original controller's, and volume retention) need `patch` on
    trackingservers. Until the generated RBAC (rbac.py, owned by the packaging work) grants it,
    grant exactly that one rule here so every other permission is still proven by the tests."""
    if _grants_patch_on_trackingservers():
        yield
        return
    name = f"experiment-operator-finalizers-{uuid.uuid4().hex[:6]}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["patch"]}],
    }
    binding = rbac.binding(
        name,
        role_kind="ClusterRole",
        role_name=name,
        account=account.name,
        account_namespace=account.namespace,
    )
    base = "apis/rbac.authorization.k8s.io/v1"
    await kubeapi.request(client, "POST", f"{base}/clusterroles", body=role)
    await kubeapi.request(client, "POST", f"{base}/clusterrolebindings", body=binding)
    try:
        yield
    finally:
        await kubeapi.request(client, "DELETE", f"{base}/clusterrolebindings/{name}")
        await kubeapi.request(client, "DELETE", f"{base}/clusterroles/{name}")


@asynccontextmanager
async def operator_identity(
    new_client: Callable[[], AsyncClient], cluster: Cluster, workdir: Path
) -> AsyncIterator[OperatorAccount]:
    """A namespace with the operator's ServiceAccount and generated RBAC."""
    admin = new_client()
    namespace = f"op-{uuid.uuid4().hex[:8]}"
    await kubeapi.request(
        admin,
        "POST",
        "api/v1/namespaces",
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    try:
        async with (
            operator_account(admin, cluster.kubeconfig, namespace, workdir) as account,
            finalizer_rbac(admin, account),
        ):
            yield account
    finally:
        await kubeapi.request(admin, "DELETE", f"api/v1/namespaces/{namespace}")
        await admin.close()


@pytest.fixture(scope="module")
async def operator_kubeconfig(
    new_client: Callable[[], AsyncClient],
    cluster: Cluster,
    trackingserver_crd: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Path]:
    """A kubeconfig authenticated as the operator's ServiceAccount (for this module)."""
    async with operator_identity(new_client, cluster, tmp_path_factory.mktemp("sa")) as account:
        yield account.kubeconfig


# --- reading and writing objects in tests ---
