"""The floor: the same children as the operator makes, created directly by a client at full
speed, with no operator, on a fresh control plane of its own; seconds until every Deployment is
available. What the cluster allows; the operator's time is reported as a ratio to it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
from lightkube import AsyncClient, KubeConfig

from experiment_lab.cluster import Cluster
from experiment_lab.controlplane import ControlPlane
from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.informer import Informer
from experiment_operator.runtime.kubeapi import Key, KindInfo, Obj
from experiment_operator.trackingserver.children import ChildOptions, build_children
from experiment_operator.trackingserver.labels import MANAGED_BY_SELECTOR

from . import workload
from .cpu import CpuWindow, control_plane_pids
from .harness import AUDIT_POLICY, CRD_FILE
from .observe import DEPLOYMENT, rolled_out

log = logging.getLogger("bench")


def children_of(key: Key) -> list[Obj]:
    """The children the operator makes for the bench's CR `key` (no owner: no CR exists)."""
    cr = workload.trackingserver(key).to_dict()
    ts = TrackingServer.from_api(cr)
    return build_children(ts, ChildOptions(), tls_secret_present=True)


async def create(client: AsyncClient, obj: Obj) -> None:
    """POST one object (its namespace from its metadata)."""
    kind = KindInfo.for_object(obj)
    await kubeapi.request(client, "POST", kind.path(obj["metadata"]["namespace"]), body=obj)


@contextlib.asynccontextmanager
async def fresh_cluster(
    workdir: Path, binaries: Path, field_manager: str
) -> AsyncIterator[tuple[AsyncClient, dict[str, int]]]:
    """A fresh control plane with the CRDs installed: an admin client and the processes' pids
    (the benchmark's own among them), for a burst with no operator."""
    plane = ControlPlane(workdir, binaries, audit_policy=AUDIT_POLICY)
    await asyncio.to_thread(plane.start, log.info)
    try:
        cluster = Cluster(plane.kubeconfig, str(binaries / "kubectl"), plane)
        await asyncio.to_thread(cluster.install_third_party_crds)
        cluster.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        config = KubeConfig.from_file(plane.kubeconfig)
        # A loaded machine answers slowly; the burst must not fail on lightkube's 10 s default.
        timeout = httpx2.Timeout(60.0)
        client = AsyncClient(config=config, field_manager=field_manager, timeout=timeout)
        try:
            yield client, {**control_plane_pids(plane), "bench": os.getpid()}
        finally:
            await client.close()
    finally:
        await asyncio.to_thread(plane.stop)


async def floor(workdir: Path, binaries: Path, keys: list[Key], within: float) -> dict[str, Any]:
    """Create every child of `keys` (bounded concurrency, as the benchmark creates CRs) and
    wait until each Deployment is available."""
    async with fresh_cluster(workdir / "floor", binaries, "floor") as (client, pids):
        return await _run(client, keys, within, pids)


async def _run(
    client: AsyncClient, keys: list[Key], within: float, pids: dict[str, int]
) -> dict[str, Any]:
    namespaces = sorted({ns for ns, _ in keys})
    await workload.create_namespaces(client, namespaces)
    available: dict[Key, float] = {}
    changed = asyncio.Event()

    def on_deployment(change: Any) -> None:
        obj = change.obj
        if change.type != "DELETED" and rolled_out(obj):
            available.setdefault((obj["metadata"]["namespace"], obj["metadata"]["name"]),
                                 time.monotonic())  # fmt: skip
            changed.set()

    informer = Informer(client, DEPLOYMENT, label_selector=MANAGED_BY_SELECTOR)
    informer.add_handler(on_deployment)
    watching = asyncio.create_task(informer.run())
    await informer.has_synced.wait()
    objects = [child for key in keys for child in children_of(key)]
    t0, cpu = time.monotonic(), CpuWindow(pids)
    try:
        await workload.bounded(create(client, obj) for obj in objects)
        created = time.monotonic() - t0
        log.info("floor: %d objects created in %.1fs", len(objects), created)
        deadline = t0 + within
        while len(available) < len(keys):
            if time.monotonic() > deadline:
                raise TimeoutError(f"floor: {len(available)}/{len(keys)} available")
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=5.0)
        cpu_seconds = cpu.close()
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    return {
        "n": len(keys),
        "objects": len(objects),
        "requests_per_cr": round(len(objects) / len(keys), 2),
        "create_calls_seconds": round(created, 2),
        "ready_seconds": round(max(available.values()) - t0, 2),
        "cpu_seconds": cpu_seconds,
    }
