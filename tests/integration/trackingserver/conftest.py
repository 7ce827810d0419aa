"""Fixtures: the operator's ServiceAccount identity for in-process operators (see
`experiment_lab.operator.run_operator`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from lightkube import AsyncClient

from experiment_lab.cluster import Cluster
from experiment_lab.serviceaccount import OperatorAccount, operator_account
from experiment_operator.runtime import kubeapi


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
        async with operator_account(admin, cluster.kubeconfig, namespace, workdir) as account:
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
