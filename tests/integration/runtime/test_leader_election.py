"""Lease leader election against a real API server: one leader, hand-over, crash, lost renewal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
import yaml
from lightkube import AsyncClient, KubeConfig
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.resources.coordination_v1 import Lease
from lightkube.types import PatchType

from experiment_lab.cluster import Cluster
from experiment_lab.faults import TcpProxy
from experiment_lab.wait import eventually
from experiment_operator.runtime.leaderelection import LeaderElector

pytestmark = pytest.mark.integration

LEASE = "test-lock"
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 4.0, 3.0, 0.5

CHILD = """
import asyncio, sys
from lightkube import AsyncClient, KubeConfig
from experiment_operator.runtime.leaderelection import LeaderElector

async def main() -> None:
    client = AsyncClient(config=KubeConfig.from_file(sys.argv[1]))
    elector = LeaderElector(client, namespace=sys.argv[2], name=sys.argv[3], identity=sys.argv[4],
                            instance=sys.argv[5], lease_duration=4, renew_deadline=3,
                            retry_period=0.5)
    async def lead() -> None:
        print("LEADING", flush=True)
        await asyncio.Event().wait()
    await elector.run(lead)

asyncio.run(main())
"""


@dataclass
class Candidate:
    """An elector running in this process, recording when its `lead()` starts and stops."""

    elector: LeaderElector
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def lead(self) -> None:
        self.leading.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.stopped.set()

    def start(self) -> None:
        self.task = asyncio.create_task(self.elector.run(self.lead))


@pytest.fixture
async def candidates(
    new_client: Callable[[], AsyncClient], namespace: str
) -> AsyncIterator[Callable[..., Candidate]]:
    made: list[tuple[AsyncClient, Candidate]] = []

    def make(identity: str, client: AsyncClient | None = None, instance: str = "") -> Candidate:
        client = client or new_client()
        elector = LeaderElector(
            client,
            namespace=namespace,
            name=LEASE,
            identity=identity,
            instance=instance,
            lease_duration=LEASE_DURATION,
            renew_deadline=RENEW_DEADLINE,
            retry_period=RETRY_PERIOD,
        )
        candidate = Candidate(elector)
        made.append((client, candidate))
        return candidate

    yield make
    for client, candidate in made:
        if candidate.task is not None:
            candidate.task.cancel()
            with contextlib.suppress(BaseException):
                await candidate.task
        await client.close()


async def _lease(kube: AsyncClient, namespace: str) -> LeaseSpec:
    lease = await kube.get(Lease, LEASE, namespace=namespace)
    assert lease.spec is not None
    return lease.spec


async def test_one_leader_and_graceful_handover(
    candidates: Callable[..., Candidate], kube: AsyncClient, namespace: str
) -> None:
    a, b = candidates("a"), candidates("b")
    a.start()
    await asyncio.wait_for(a.leading.wait(), 10)
    b.start()
    await asyncio.sleep(2 * LEASE_DURATION)  # b keeps trying for two lease durations
    assert a.elector.is_leader
    assert not b.leading.is_set()
    assert not b.elector.is_leader
    spec = await _lease(kube, namespace)
    assert (spec.holderIdentity, spec.leaseTransitions, spec.leaseDurationSeconds) == ("a", 0, 4)
    assert spec.acquireTime is not None
    assert spec.renewTime is not None
    assert spec.renewTime > spec.acquireTime

    assert a.task is not None
    a.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await a.task
    assert a.stopped.is_set()
    assert not a.elector.is_leader
    # Released, so b need not wait out the lease: it leads on its next retry.
    await asyncio.wait_for(b.leading.wait(), 3)
    spec = await _lease(kube, namespace)
    assert (spec.holderIdentity, spec.leaseTransitions) == ("b", 1)


async def test_simultaneous_candidates_elect_exactly_one(
    candidates: Callable[..., Candidate], kube: AsyncClient, namespace: str
) -> None:
    group = [candidates(f"c{i}") for i in range(3)]
    for candidate in group:
        candidate.start()
    await eventually(lambda: any(c.leading.is_set() for c in group), within=10, interval=0.05)
    await asyncio.sleep(2 * LEASE_DURATION)
    leaders = [c for c in group if c.leading.is_set()]
    assert len(leaders) == 1
    assert [c.elector.is_leader for c in group].count(True) == 1
    assert (await _lease(kube, namespace)).holderIdentity == leaders[0].elector.identity


@asynccontextmanager
async def child_leader(
    cluster: Cluster, namespace: str, identity: str = "child", instance: str = ""
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A leader in another process (so it can be killed -9), yielded once it leads."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(cluster.kubeconfig),
        namespace,
        LEASE,
        identity,
        instance,
        stdout=asyncio.subprocess.PIPE,
        env=cluster.env,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.strip() == b"LEADING"
        yield child
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def kill(child: asyncio.subprocess.Process) -> float:
    os.kill(child.pid, signal.SIGKILL)
    await child.wait()
    return time.monotonic()


async def test_crashed_leader_is_replaced_after_lease_expiry(
    candidates: Callable[..., Candidate], cluster: Cluster, kube: AsyncClient, namespace: str
) -> None:
    async with child_leader(cluster, namespace) as child:
        survivor = candidates("survivor")
        survivor.start()
        await asyncio.sleep(1)  # let it observe the child's renewals
        assert not survivor.leading.is_set()
        killed = await kill(child)
        await asyncio.sleep(1)
        assert not survivor.leading.is_set(), "took over before the dead leader's lease expired"
        await asyncio.wait_for(survivor.leading.wait(), LEASE_DURATION + 2 * RETRY_PERIOD + 2)
        assert time.monotonic() - killed >= LEASE_DURATION - 2 * RETRY_PERIOD
    spec = await _lease(kube, namespace)
    assert (spec.holderIdentity, spec.leaseTransitions) == ("survivor", 1)


async def test_restarted_container_takes_its_lease_back_at_once(
    candidates: Callable[..., Candidate], cluster: Cluster, kube: AsyncClient, namespace: str
) -> None:
    """Same Pod name and UID: the previous process is dead (the kubelet runs one at a time)."""
    async with child_leader(cluster, namespace, "pod-a", "uid-a") as child:
        await kill(child)
    restarted = candidates("pod-a", instance="uid-a")
    started = time.monotonic()
    restarted.start()
    await asyncio.wait_for(restarted.leading.wait(), LEASE_DURATION)
    assert time.monotonic() - started < LEASE_DURATION - RETRY_PERIOD, "it waited for expiry"
    spec = await _lease(kube, namespace)
    assert (spec.holderIdentity, spec.leaseTransitions) == ("pod-a", 1)


async def test_same_name_in_another_pod_waits_for_expiry(
    candidates: Callable[..., Candidate], cluster: Cluster, namespace: str
) -> None:
    """A Pod of the same name with another UID (a recreated StatefulSet Pod, or two processes
    on one host): the previous holder may be alive, so only expiry proves it is not."""
    async with child_leader(cluster, namespace, "pod-a", "uid-a") as child:
        killed = await kill(child)
    other = candidates("pod-a", instance="uid-b")
    other.start()
    await asyncio.wait_for(other.leading.wait(), LEASE_DURATION + 2 * RETRY_PERIOD + 2)
    assert time.monotonic() - killed >= LEASE_DURATION - 2 * RETRY_PERIOD


async def test_two_live_processes_with_one_name_never_both_lead(
    candidates: Callable[..., Candidate], cluster: Cluster, namespace: str
) -> None:
    async with child_leader(cluster, namespace, "pod-a", "uid-a"):
        twin = candidates("pod-a", instance="uid-b")
        twin.start()
        await asyncio.sleep(2 * LEASE_DURATION)
        assert not twin.leading.is_set()


async def test_leader_steps_down_when_a_newer_process_of_its_pod_takes_over(
    candidates: Callable[..., Candidate], namespace: str
) -> None:
    """Should the kubelet ever run two processes of one container, the newer one wins and the
    older stops at its next renewal; it never takes the lease back."""
    old = candidates("pod-a", instance="uid-a")
    old.start()
    await asyncio.wait_for(old.leading.wait(), 10)
    new = candidates("pod-a", instance="uid-a")
    new.start()
    await asyncio.wait_for(new.leading.wait(), LEASE_DURATION)
    await asyncio.wait_for(old.stopped.wait(), RENEW_DEADLINE + 2 * RETRY_PERIOD)
    await asyncio.sleep(2 * RETRY_PERIOD)
    assert new.elector.is_leader
    assert not new.stopped.is_set()


async def test_leader_stops_when_lease_is_stolen(
    candidates: Callable[..., Candidate], kube: AsyncClient, namespace: str
) -> None:
    leader = candidates("victim")
    leader.start()
    await asyncio.wait_for(leader.leading.wait(), 10)
    theft = {"spec": {"holderIdentity": "thief"}}  # no resourceVersion precondition: forced
    await kube.patch(Lease, LEASE, theft, namespace=namespace, patch_type=PatchType.MERGE)
    stolen = time.monotonic()

    await asyncio.wait_for(leader.stopped.wait(), LEASE_DURATION)
    assert leader.task is not None
    await asyncio.wait_for(leader.task, 1)  # run() returns: the caller exits
    assert time.monotonic() - stolen < LEASE_DURATION
    assert not leader.elector.is_leader
    assert (await _lease(kube, namespace)).holderIdentity == "thief"  # and it is not released


async def test_partitioned_leader_stops_before_its_lease_expires(
    candidates: Callable[..., Candidate], cluster: Cluster, namespace: str
) -> None:
    config = KubeConfig.from_file(cluster.kubeconfig).get()
    assert config is not None
    server = urlsplit(config.cluster.server)
    assert server.hostname is not None
    assert server.port is not None
    async with TcpProxy(server.hostname, server.port) as proxy:
        raw = yaml.safe_load(cluster.kubeconfig.read_text())
        for entry in raw["clusters"]:
            entry["cluster"]["server"] = f"https://{server.hostname}:{proxy.port}"
        client = AsyncClient(config=KubeConfig.from_dict(raw, fname=cluster.kubeconfig))
        leader = candidates("partitioned", client)
        leader.start()
        await asyncio.wait_for(leader.leading.wait(), 10)
        await asyncio.sleep(1)  # a few successful renewals through the proxy
        assert not leader.stopped.is_set()
        proxy.partition()
        cut = time.monotonic()
        await asyncio.wait_for(leader.stopped.wait(), LEASE_DURATION)
        assert time.monotonic() - cut < LEASE_DURATION
        assert leader.task is not None
        await asyncio.wait_for(leader.task, 1)


async def test_lead_failure_releases_the_lease_and_propagates(
    new_client: Callable[[], AsyncClient], kube: AsyncClient, namespace: str
) -> None:
    async def crash() -> None:
        raise RuntimeError("reconciler crashed")

    client = new_client()
    try:
        elector = LeaderElector(
            client,
            namespace=namespace,
            name=LEASE,
            identity="x",
            lease_duration=LEASE_DURATION,
            renew_deadline=RENEW_DEADLINE,
            retry_period=RETRY_PERIOD,
        )
        with pytest.raises(RuntimeError, match="reconciler crashed"):
            await asyncio.wait_for(elector.run(crash), 10)
    finally:
        await client.close()
    spec = await _lease(kube, namespace)
    assert (spec.holderIdentity, spec.leaseDurationSeconds) == (None, 1)
