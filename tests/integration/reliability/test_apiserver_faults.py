"""API server restarts and etcd compaction during a burst (issue 13, item 2), and throttling by
API Priority and Fairness (item 3)."""

from __future__ import annotations

import asyncio
import time

import pytest

from experiment_lab.attribution import (
    duplicates,
    object_writes,
    retry_gaps,
    writes_by_resource,
)
from experiment_lab.convergence import Workload, create_all, keys
from experiment_lab.faults import squeezed
from experiment_lab.reliability import Lab, ReplicaGroups, record_figures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

PRODUCTION_TIMINGS = (15.0, 10.0, 2.0)
PATIENT_TIMINGS = (60.0, 40.0, 2.0)
"""A Lease that outlives an API server restart on a slow machine: the same process sees the
restarts, so what is tested is its informers relisting, not a fresh process listing."""


async def retrying(call: object, attempts: int = 30) -> None:
    """Await a coroutine factory until it stops failing (the API server is coming back)."""
    assert callable(call)
    for attempt in range(attempts):
        try:
            await call()
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(1)


async def test_apiserver_restart_after_compaction_during_a_burst(
    lab: Lab, replicas_for: ReplicaGroups
) -> None:
    namespaces = await lab.namespaces(2)
    group = replicas_for(namespaces)
    operator = await group.new("operator-a", timings=PATIENT_TIMINGS, supervised=True)
    await lab.wait_holder(group.lease, operator.name, within=120)
    workload = Workload()
    crs = keys(60, namespaces)
    halves = [crs[:30], crs[30:]]

    await create_all(lab.admin, workload, halves[0])
    await asyncio.sleep(1)  # reconciles in flight
    faults_at = time.time()
    revision = await lab.plane.compact_etcd()
    started = time.monotonic()
    await lab.plane.restart_apiserver()  # its new watch cache cannot serve compacted revisions
    restart_took = time.monotonic() - started
    await retrying(lambda: create_all(lab.admin, workload, halves[1]))
    faults_done = time.time()
    await lab.converge(namespaces, within=600)
    converged_after = time.time() - faults_done

    writes = await group.writes()
    writes = [w for w in writes if w.received >= faults_at - 60]
    after = [r for r in await group.requests() if r.received >= faults_at]
    lists = sorted({r.uri.split("?")[0] for r in after if r.verb == "list"})
    gone = [r for r in after if r.code == 410]
    relist_lines = sum(
        "expired, relisting" in line
        for run in range(1, operator.starts + 1)
        for line in (operator.log_dir / f"{operator.name}-{run}.log").read_text().splitlines()
    )
    repeated = duplicates(writes)
    record_figures(
        "apiserver-restart",
        crs=len(crs),
        restart_seconds=round(restart_took, 1),
        compacted_revision=revision,
        operator_restarts=operator.starts - 1,
        relisted_collections=len(lists),
        answered_410=len(gone),
        relist_log_lines=relist_lines,
        converged_after_faults=round(converged_after, 1),
        duplicate_writes=len(repeated),
        object_writes=writes_by_resource(writes),
    )
    assert repeated == [], [(w.verb, w.resource, w.namespace, w.name) for w in repeated[:5]]
    assert len(object_writes(writes)) > 0
    if operator.starts == 1:  # the same process saw the faults: its informers relisted
        assert relist_lines > 0, "no informer relisted after the compaction"


async def test_throttled_by_priority_and_fairness(lab: Lab, replicas_for: ReplicaGroups) -> None:
    """One seat for the operator's ServiceAccount, rejections (429, Retry-After: 1) instead of
    queuing: the operator waits as told, retries, never crashes, and still converges."""
    namespaces = await lab.namespaces(1)
    group = replicas_for(namespaces)
    operator = await group.new("operator-a", timings=PRODUCTION_TIMINGS)
    operator.start()
    await lab.wait_holder(group.lease, operator.name, within=120)
    crs = keys(20, namespaces)
    account = (lab.account.namespace, lab.account.name)
    async with squeezed(lab.admin, account):
        await asyncio.sleep(2)  # the API server's flow-control configuration catches up
        throttled_at = time.time()
        await create_all(lab.admin, Workload(), crs)
        await lab.converge(namespaces, within=600)
        converged_in = time.time() - throttled_at
        metrics = await operator.metrics()
    requests = [r for r in await group.requests() if r.received >= throttled_at]
    rejected = [r for r in requests if r.code == 429]
    lease_rejected = [r for r in rejected if "/leases/" in r.uri]
    gaps = retry_gaps(requests)
    retries = metrics.get("rest_client_request_retries_total", 0.0)
    record_figures(
        "throttling",
        crs=len(crs),
        requests=len(requests),
        rejected_429=len(rejected),
        lease_requests_rejected=len(lease_rejected),
        retries_metric=retries,
        min_wait_before_retry=round(min(gaps), 2) if gaps else None,
        converged_in=round(converged_in, 1),
        operator_restarts=operator.starts - 1,
    )
    assert operator.running, "the operator exited under throttling"
    assert operator.starts == 1, "the operator exited under throttling"
    assert rejected, "the squeeze did not throttle (no 429 in the audit log)"
    assert lease_rejected == [], "Lease renewals were throttled (the FlowSchema did not apply)"
    assert retries > 0
    assert gaps
    assert min(gaps) >= 0.9, "retried before the server's Retry-After (1 s)"
