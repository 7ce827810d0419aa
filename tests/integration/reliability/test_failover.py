"""Crash anywhere with leader election on (issue 13, item 1).

Two operator processes; the leader is killed -9 at random moments while TrackingServers are
created and changed, and each time the other must take over. Judged from the API server's audit
log: only the Lease holder ever writes, how long each takeover took; and at the end every
TrackingServer is Ready at its generation with exactly the children it should have.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time

import pytest

from experiment_lab.attribution import (
    LEASES,
    duplicates,
    holders,
    object_writes,
    split_brain,
    writes_by_resource,
)
from experiment_lab.convergence import IMAGE, Workload, create_all, keys, set_image
from experiment_lab.reliability import Lab, ReplicaGroups, lease_timings, record_figures
from experiment_lab.replicas import Replica

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CRS = 200
KILLS = 10
NEW_IMAGE = "ghcr.io/mlflow/mlflow:v2.20.0"


def first_after(writes_at: list[tuple[float, str]], credential: str, since: float) -> float:
    """When `credential` first wrote the Lease successfully after `since`."""
    return next(at for at, who in writes_at if who == credential and at >= since)


async def test_killing_the_leader_during_a_burst(lab: Lab, replicas_for: ReplicaGroups) -> None:
    seed = int(os.environ.get("RELIABILITY_SEED") or time.time())
    rng = random.Random(seed)
    lease_duration = lease_timings()[0]
    namespaces = await lab.namespaces(4)
    group = replicas_for(namespaces)
    # Supervised like containers (restarted when they exit), so that a leader stepping down on
    # its own (a renewal slower than the renew deadline on a loaded machine) comes back.
    a = await group.new("operator-a", supervised=True)
    await lab.wait_holder(group.lease, a.name, within=120)
    b = await group.new("operator-b", supervised=True)
    pods = {a.name: a, b.name: b}

    workload = Workload()
    crs = keys(CRS, namespaces)
    burst = asyncio.create_task(create_all(lab.admin, workload, crs))
    images = {key: IMAGE for key in crs}
    kills: list[tuple[float, Replica, Replica]] = []
    started = time.time()
    spec_changes = 0
    for _ in range(KILLS):
        await asyncio.sleep(rng.uniform(0.2, 2.0))
        if burst.done():  # keep work in flight: change a few specs right before the kill
            changed = rng.sample(crs, 10)
            spec_changes += len(changed)
            for key in changed:
                images[key] = NEW_IMAGE if images[key] == IMAGE else IMAGE
            await asyncio.gather(
                set_image(lab.admin, [k for k in changed if images[k] == NEW_IMAGE], NEW_IMAGE),
                set_image(lab.admin, [k for k in changed if images[k] == IMAGE], IMAGE),
            )
            await asyncio.sleep(rng.uniform(0.0, 0.5))
        leader = pods[await lab.lease_holder(group.lease)]
        other = b if leader is a else a
        leader.held = True  # restarted only once the other took over, or it takes its Lease back
        kills.append((await leader.kill(), leader, other))
        await lab.wait_holder(group.lease, other.name, within=lease_duration + 60)
        leader.held = False  # its container restarts and finds the Lease held by the other
    await burst
    last_kill = time.time()
    await lab.converge(namespaces, within=600)
    converged_after = time.time() - last_kill

    writes = await group.writes()
    writes = [w for w in writes if w.received >= started - 5 or w.resource == LEASES]
    lease_writes = list(holders(writes, group.lease))
    failovers, first_writes = [], []
    for killed_at, _, other in kills:
        took_over = first_after(lease_writes, other.credential, killed_at)
        failovers.append(took_over - killed_at)
        first = next(
            (w.received for w in object_writes(writes) if w.credential == other.credential
             and w.received >= took_over),
            None,
        )  # fmt: skip
        if first is not None:
            first_writes.append(first - took_over)
    violations = split_brain(writes, group.lease)
    repeated = duplicates(writes)
    record_figures(
        "failover",
        seed=seed,
        crs=CRS,
        spec_changes=spec_changes,
        kills=len(kills),
        failover_max=round(max(failovers), 2),
        failover_median=round(statistics.median(failovers), 2),
        failover_all=[round(f, 2) for f in failovers],
        first_write_after_takeover_median=round(statistics.median(first_writes), 2)
        if first_writes
        else None,
        converged_after_last_kill=round(converged_after, 1),
        split_brain_writes=len(violations),
        duplicate_writes=len(repeated),
        object_writes=writes_by_resource(writes),
    )
    assert violations == [], f"writes by a replica that did not hold the Lease: {violations[:3]}"
    assert max(failovers) <= lease_duration + 30, failovers


async def test_restarted_container_takes_the_lease_back_at_once(
    lab: Lab, replicas_for: ReplicaGroups
) -> None:
    """The common crash: the container restarts in the same Pod (same name and UID) and takes
    its own Lease back at once; a new Pod (another name) must wait for the Lease to expire."""
    namespaces = await lab.namespaces(1)
    group = replicas_for(namespaces)
    pod = await group.new("operator-a", supervised=True, restart_delay=0)
    await lab.wait_holder(group.lease, pod.name, within=120)
    await create_all(lab.admin, Workload(), keys(20, namespaces))
    lease_duration = lease_timings()[0]

    same, fresh = [], []
    for _ in range(3):
        _, dead = await lab.lease_record(group.lease)
        killed = await pod.kill()  # the supervisor restarts it, as the kubelet would
        await lab.wait_holder(group.lease, pod.name, within=60, not_process=dead)
        same.append((killed, pod.started_at, pod.credential))
        await asyncio.sleep(1)
    for index in range(2):
        pod.held = True  # its Pod is gone; a new one (another name) replaces it
        killed = await pod.kill()
        pod = await group.new(f"operator-new-{index}", supervised=True, restart_delay=0)
        await lab.wait_holder(group.lease, pod.name, within=lease_duration + 60)
        fresh.append((killed, pod.started_at, pod.credential))
    await lab.converge(namespaces, within=300)

    writes = await group.writes()
    lease_writes = list(holders(writes, group.lease))
    # kill → the restarted process's first Lease write; and from its start (its own startup:
    # imports, cache sync) to that write.
    same_identity = [first_after(lease_writes, c, at) - at for at, _, c in same]
    new_identity = [first_after(lease_writes, c, at) - at for at, _, c in fresh]
    same_from_start = [first_after(lease_writes, c, at) - s for at, s, c in same]
    new_from_start = [first_after(lease_writes, c, at) - s for at, s, c in fresh]
    record_figures(
        "restart",
        same_identity=[round(s, 2) for s in same_identity],
        new_identity=[round(s, 2) for s in new_identity],
        same_identity_from_start=[round(s, 2) for s in same_from_start],
        new_identity_from_start=[round(s, 2) for s in new_from_start],
        lease_duration=lease_duration,
    )
    assert split_brain(writes, group.lease) == []
    assert max(same_identity) < min(new_identity), "the restart waited for expiry"
