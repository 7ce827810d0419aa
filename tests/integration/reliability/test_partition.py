"""A partition between the leader and the API server (issue 13, item 4).

The leader reaches the API server through a proxy that black-holes its traffic for 30 s, as a
network partition does: nothing fails fast, requests hang, and bytes written meanwhile are
delivered when the partition heals unless the connection was reset. The leader must stop
writing before its Lease can expire for the other replica (renew deadline < lease duration);
the other takes over; nothing the partitioned leader sent may reach the API server after that
(no split brain, judged from the audit log); and everything converges.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from experiment_lab.attribution import holders, object_writes, split_brain
from experiment_lab.convergence import Workload, create_all, keys
from experiment_lab.reliability import Lab, ReplicaGroups, lease_timings, record_figures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

PARTITION_SECONDS = 30.0


async def test_partitioned_leader_steps_down_without_split_brain(
    lab: Lab, replicas_for: ReplicaGroups
) -> None:
    lease_duration = lease_timings()[0]
    namespaces = await lab.namespaces(2)
    group = replicas_for(namespaces)
    a = await group.new("operator-a", proxied=True, supervised=True)
    await lab.wait_holder(group.lease, a.name, within=120)
    b = await group.new("operator-b", supervised=True)
    workload = Workload()
    crs = keys(50, namespaces)
    await create_all(lab.admin, workload, crs[:40])
    await asyncio.sleep(1.5)  # the leader is busy: writes are in flight
    proxy = group.proxies[a.name]
    proxy.partition()
    partitioned_at = time.time()
    await lab.wait_holder(group.lease, b.name, within=lease_duration + 60)
    await create_all(lab.admin, workload, crs[40:])  # work for the new leader
    await asyncio.sleep(max(0.0, partitioned_at + PARTITION_SECONDS - time.time()))
    proxy.heal()
    healed_at = time.time()
    await lab.converge(namespaces, within=600)

    writes = await group.writes()
    violations = split_brain(writes, group.lease)
    by_a = [w for w in object_writes(writes) if w.credential == a.credential]
    last_by_a = max((w.received for w in by_a if w.received >= partitioned_at - 60), default=None)
    took_over = next(
        at
        for at, who in holders(writes, group.lease)
        if who == b.credential and at >= partitioned_at
    )
    record_figures(
        "partition",
        partition_seconds=round(healed_at - partitioned_at, 1),
        leader_last_write_after_partition=None
        if last_by_a is None
        else round(last_by_a - partitioned_at, 2),
        takeover_after_partition=round(took_over - partitioned_at, 2),
        partitioned_leader_exits=a.exit_codes,
        other_replica_exits=b.exit_codes,  # a renewal slower than the renew deadline (load)
        writes_dropped_by_reset=proxy.dropped_on_reset,
        split_brain_writes=len(violations),
        writes_by_a_after_heal=sum(w.received >= healed_at for w in by_a),
    )
    assert violations == [], [
        (round(v.write.received - partitioned_at, 2), v.write.verb, v.write.resource)
        for v in violations[:5]
    ]
    assert a.exit_codes, "the partitioned leader did not step down"
