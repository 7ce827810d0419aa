"""The operator's ServiceAccount gets exactly the generated RBAC: enough, and no more."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import ConfigMap, Namespace, Node, Secret

from experiment_lab.cluster import Cluster
from experiment_lab.serviceaccount import operator_account

TrackingServer = create_namespaced_resource(
    "experiment.aiscope", "v1alpha2", "TrackingServer", "trackingservers"
)


@pytest.fixture
async def other_namespace(kube: AsyncClient) -> AsyncIterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    await kube.create(Namespace(metadata=ObjectMeta(name=name)))
    yield name
    await kube.delete(Namespace, name)


async def _code(call: Callable[[], Awaitable[Any]]) -> int:
    """HTTP status of an API call (200 when it succeeds), retrying 429 "storage is
    (re)initializing", which a just-installed CRD answers until its watch cache is ready."""
    for _ in range(50):
        try:
            await call()
        except ApiError as err:
            if err.status.code != 429:
                return err.status.code or 0
            await asyncio.sleep(0.2)
            continue
        return 200
    return 429


async def _list(client: AsyncClient, kind: Any, **kwargs: Any) -> None:
    async for _ in client.list(kind, **kwargs):
        break


def _lease(namespace: str) -> Lease:
    return Lease(
        metadata=ObjectMeta(name="experiment-operator", namespace=namespace),
        spec=LeaseSpec(holderIdentity="test", acquireTime=datetime.now(UTC)),
    )


@pytest.mark.usefixtures("trackingserver_crd")
async def test_cluster_wide_account_can_do_its_job_and_nothing_else(
    kube: AsyncClient, cluster: Cluster, namespace: str, other_namespace: str, tmp_path: Path
) -> None:
    async with operator_account(kube, cluster.kubeconfig, namespace, tmp_path) as account:
        client = AsyncClient(config=KubeConfig.from_file(account.kubeconfig))
        try:
            assert await _code(lambda: _list(client, TrackingServer, namespace="*")) == 200
            selector = {"app.kubernetes.io/managed-by": "experiment-operator"}
            assert await _code(lambda: _list(client, Secret, namespace="*", labels=selector)) == 200
            assert await _code(lambda: client.create(_lease(namespace))) == 200
            # Not granted: kinds it does not manage, Leases elsewhere, cluster-scoped objects.
            assert await _code(lambda: _list(client, ConfigMap, namespace=namespace)) == 403
            assert await _code(lambda: client.create(_lease(other_namespace))) == 403
            assert await _code(lambda: _list(client, Node)) == 403
        finally:
            await client.close()


@pytest.mark.usefixtures("trackingserver_crd")
async def test_namespaced_account_is_confined_to_its_namespaces(
    kube: AsyncClient, cluster: Cluster, namespace: str, other_namespace: str, tmp_path: Path
) -> None:
    async with operator_account(
        kube, cluster.kubeconfig, namespace, tmp_path, watch_namespaces=[other_namespace]
    ) as account:
        client = AsyncClient(config=KubeConfig.from_file(account.kubeconfig))
        try:
            assert (
                await _code(lambda: _list(client, TrackingServer, namespace=other_namespace)) == 200
            )
            assert await _code(lambda: _list(client, TrackingServer, namespace="*")) == 403
            assert await _code(lambda: _list(client, Secret, namespace=namespace)) == 403
            assert await _code(lambda: client.create(_lease(namespace))) == 200
        finally:
            await client.close()
