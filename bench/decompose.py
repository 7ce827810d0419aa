"""`python -m bench.decompose`: where the operator's run costs more than the floor.

The floor creates each CR's children directly; the operator's run also has the CRs, their
owner references, a status write and an Event per CR, server-side applies instead of creates,
the operator's watches and the operator itself. Each variant here adds one of those to the one
before, with no operator, each on a fresh control plane, so the difference between neighbours
is what that habit costs the cluster (seconds until every Deployment is available, and CPU per
process). Every variant runs each CR as one flow (CR, then its children concurrently), ten
flows at a time: the same pace for all, not the floor's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from lightkube import AsyncClient

from experiment_lab.binaries import find_binaries
from experiment_operator.api.trackingserver import GROUP, KIND, VERSION
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.apply import CREATE_ONLY, FIELD_MANAGER, with_controller_reference
from experiment_operator.runtime.informer import Informer
from experiment_operator.runtime.kubeapi import Key, KindInfo, Obj
from experiment_operator.runtime.store import Change
from experiment_operator.trackingserver.labels import MANAGED_BY_SELECTOR
from experiment_operator.trackingserver.resources import (
    WATCHED_KINDS,
    TrackingServerResource,
    child_kinds,
)

from . import workload
from .cpu import CpuWindow
from .floor import children_of, create, fresh_cluster
from .observe import DEPLOYMENT, rolled_out

VARIANTS = ("floor", "cr", "status", "apply", "watches")
"""Each adds one habit of the operator's run to the one before."""
TRACKING_SERVER = KindInfo.of(TrackingServerResource)
FLOWS = 10
WITHIN = 600.0


async def _write_child(client: AsyncClient, variant: str, obj: Obj) -> None:
    kind, meta = KindInfo.for_object(obj), obj["metadata"]
    if VARIANTS.index(variant) < VARIANTS.index("apply"):
        await create(client, obj)
        return
    guarded = {**obj, "metadata": {**meta, "resourceVersion": CREATE_ONLY}}
    await kubeapi.request(
        client,
        "PATCH",
        kind.path(meta["namespace"], meta["name"]),
        params={"fieldManager": FIELD_MANAGER, "force": "true"},
        body=guarded,
        content_type=kubeapi.APPLY_CONTENT_TYPE,
    )


async def _flow(client: AsyncClient, variant: str, key: Key, owners: dict[Key, Obj]) -> None:
    """One CR's writes up to its children, as the variant makes them."""
    children = children_of(key)
    if variant != "floor":
        cr = workload.trackingserver(key).to_dict()
        cr |= {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND}
        owner = await kubeapi.request(client, "POST", TRACKING_SERVER.path(key[0]), body=cr)
        children = [with_controller_reference(child, owner) for child in children]
        owners[key] = owner
    await asyncio.gather(*(_write_child(client, variant, child) for child in children))


async def _report_ready(client: AsyncClient, owner: Obj) -> None:
    """What the operator writes once a server is available: its status and one Event."""
    meta = owner["metadata"]
    namespace, name, now = meta["namespace"], meta["name"], "2026-01-01T00:00:00Z"
    condition = {
        "type": "Ready",
        "status": "True",
        "reason": "Available",
        "message": "MLflow is available",
        "lastTransitionTime": now,
        "observedGeneration": meta["generation"],
    }
    await kubeapi.request(
        client,
        "PATCH",
        TRACKING_SERVER.path(namespace, name, "status"),
        body={"status": {"conditions": [condition], "observedGeneration": meta["generation"]}},
        content_type=kubeapi.MERGE_PATCH_CONTENT_TYPE,
    )
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": name,
            "namespace": namespace,
            "uid": meta["uid"],
        },
        "reason": "Ready",
        "message": "MLflow is available",
        "type": "Normal",
        "source": {"component": "trackingserver-controller"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    await kubeapi.request(client, "POST", f"api/v1/namespaces/{namespace}/events", body=event)


async def _watches(client: AsyncClient) -> list[Informer]:
    """The operator's watches: its CRs, and the labelled objects of every served child kind and
    the Pods."""
    kinds = [
        k
        for k in [*child_kinds(), *WATCHED_KINDS]
        if await kubeapi.is_served(client, KindInfo.of(k))
    ]
    informers = [Informer(client, kind, label_selector=MANAGED_BY_SELECTOR) for kind in kinds]
    return [*informers, Informer(client, TrackingServerResource)]


async def _burst(
    variant: str, client: AsyncClient, keys: list[Key], pids: dict[str, int]
) -> dict[str, Any]:
    available: dict[Key, float] = {}
    changed = asyncio.Event()

    def on_deployment(change: Change) -> None:
        obj = change.obj
        if change.type != "DELETED" and rolled_out(obj):
            available.setdefault(kubeapi.key_of(obj), time.monotonic())
            changed.set()

    informers = [Informer(client, DEPLOYMENT, label_selector=MANAGED_BY_SELECTOR)]
    informers[0].add_handler(on_deployment)
    if variant == "watches":
        informers += await _watches(client)
    tasks = [asyncio.create_task(informer.run()) for informer in informers]
    try:
        for informer in informers:
            await informer.has_synced.wait()
        owners: dict[Key, Obj] = {}
        t0, cpu = time.monotonic(), CpuWindow(pids)
        await workload.bounded((_flow(client, variant, k, owners) for k in keys), FLOWS)
        reported: set[Key] = set()
        reports = VARIANTS.index(variant) >= VARIANTS.index("status")
        while len(available) < len(keys) or (reports and len(reported) < len(keys)):
            due = [k for k in available if reports and k not in reported]
            if due:
                reported.update(due)
                await workload.bounded((_report_ready(client, owners[k]) for k in due), FLOWS)
                continue
            if time.monotonic() - t0 > WITHIN:
                raise TimeoutError(f"{variant}: {len(available)}/{len(keys)} available")
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=2.0)
        ready = max(available.values()) - t0
        return {"variant": variant, "ready_seconds": round(ready, 1), "cpu": cpu.close()}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_variant(workdir: Path, binaries: Path, variant: str, n: int) -> dict[str, Any]:
    """One variant on a fresh control plane of its own."""
    shutil.rmtree(workdir / variant, ignore_errors=True)  # a variant's earlier run
    async with fresh_cluster(workdir / variant, binaries, "bench") as (client, pids):
        namespaces = [f"bench-{i:02d}" for i in range(10)]
        await workload.create_namespaces(client, namespaces)
        return await _burst(variant, client, workload.cr_keys(n, namespaces), pids)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.decompose", description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="TrackingServers per variant")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="in this order")
    parser.add_argument("--workdir", type=Path, default=Path(".local/bench/decompose"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    binaries = find_binaries()
    for variant in variants:
        print(json.dumps(asyncio.run(run_variant(args.workdir, binaries, variant, args.n))))


if __name__ == "__main__":
    main()
