"""Fixtures of the reliability tests (issue 13): their own control plane with an audit log, the
operator's ServiceAccount, and replica groups (see experiment_lab.reliability)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import yaml
from lightkube import AsyncClient, KubeConfig

from experiment_lab.attribution import AUDIT_POLICY
from experiment_lab.binaries import REPO_ROOT, find_binaries
from experiment_lab.cluster import Cluster, use_existing_cluster
from experiment_lab.controlplane import ControlPlane
from experiment_lab.convergence import create_namespaces
from experiment_lab.leakcheck import watch_cluster
from experiment_lab.reliability import OPERATOR_NAMESPACE, Lab, ReplicaGroups, Replicas
from experiment_lab.serviceaccount import operator_account

CRD_DIR = REPO_ROOT / "config" / "crd" / "bases"


@pytest.fixture(scope="package")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    if use_existing_cluster():
        pytest.skip("restarts, compacts and throttles its own control plane (not KUBECONFIG)")
    workdir = tmp_path_factory.mktemp("reliability")
    policy = workdir / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    binaries = await asyncio.to_thread(find_binaries)
    plane = ControlPlane(workdir / "controlplane", binaries, audit_policy=policy)
    await asyncio.to_thread(plane.start)
    watch = None
    admin = AsyncClient(config=KubeConfig.from_file(plane.kubeconfig), field_manager="tests")
    try:
        cluster = Cluster(plane.kubeconfig, str(binaries / "kubectl"), plane)
        await asyncio.to_thread(cluster.install_third_party_crds)
        cluster.kubectl("apply", "--server-side", "-f", str(CRD_DIR))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        watch = watch_cluster(plane.kubeconfig)
        await create_namespaces(admin, [OPERATOR_NAMESPACE])
        async with operator_account(
            admin, plane.kubeconfig, OPERATOR_NAMESPACE, workdir
        ) as account:
            yield Lab(plane, cluster, admin, account, workdir)
    finally:
        if watch is not None:
            watch.stop()
        await admin.close()
        await asyncio.to_thread(plane.stop)


@pytest.fixture
async def replicas_for(lab: Lab) -> AsyncIterator[ReplicaGroups]:
    """`replicas_for(namespaces)`: replicas watching those namespaces, with their own Lease."""
    made: list[Replicas] = []

    def make(namespaces: list[str]) -> Replicas:
        group = Replicas(lab, (OPERATOR_NAMESPACE, f"lease-{uuid.uuid4().hex[:6]}"), namespaces)
        made.append(group)
        return group

    yield make
    for group in made:
        await group.close()
