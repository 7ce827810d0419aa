"""Lease leader election against a real API server: one leader, hand-over, crash, lost renewal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
import yaml
from lightkube import AsyncClient, KubeConfig
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.resources.coordination_v1 import Lease
from lightkube.types import PatchType

from experiment_lab.cluster import Cluster
from experiment_lab.wait import eventually
from experiment_operator.runtime.leaderelection import LeaderElector

pytestmark = pytest.mark.integration

LEASE = "test-lock"
TIMINGS = {"lease_duration": 4.0, "renew_deadline": 3.0, "retry_period": 0.5}

CHILD = """
import asyncio, sys
from lightkube import AsyncClient, KubeConfig
from experiment_operator.runtime.leaderelection import LeaderElector

async def main() -> None:
    client = AsyncClient(config=KubeConfig.from_file(sys.argv[1]))
    elector = LeaderElector(client, namespace=sys.argv[2], name=sys.argv[3], identity="child",
                            lease_duration=4, renew_deadline=3, retry_period=0.5)
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

    def make(identity: str, client: AsyncClient | None = None) -> Candidate:
        client = client or new_client()
        elector = LeaderElector(
            client, namespace=namespace, name=LEASE, identity=identity, **TIMINGS
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
    await asyncio.sleep(2 * TIMINGS["lease_duration"])  # b keeps trying for two lease durations
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
    await asyncio.sleep(2 * TIMINGS["lease_duration"])
    leaders = [c for c in group if c.leading.is_set()]
    assert len(leaders) == 1
    assert [c.elector.is_leader for c in group].count(True) == 1
    assert (await _lease(kube, namespace)).holderIdentity == leaders[0].elector.identity


async def test_crashed_leader_is_replaced_after_lease_expiry(
    candidates: Callable[..., Candidate], cluster: Cluster, kube: AsyncClient, namespace: str
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(cluster.kubeconfig),
        namespace,
        LEASE,
        stdout=asyncio.subprocess.PIPE,
        env=cluster.env,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.strip() == b"LEADING"
        survivor = candidates("survivor")
        survivor.start()
        await asyncio.sleep(1)  # let it observe the child's renewals
        assert not survivor.leading.is_set()

        os.kill(child.pid, signal.SIGKILL)
        await child.wait()
        killed = time.monotonic()
        await asyncio.sleep(1)
        assert not survivor.leading.is_set(), "took over before the dead leader's lease expired"
        await asyncio.wait_for(
            survivor.leading.wait(), TIMINGS["lease_duration"] + 2 * TIMINGS["retry_period"] + 2
        )
        assert time.monotonic() - killed >= TIMINGS["lease_duration"] - 2 * TIMINGS["retry_period"]
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    spec = await _lease(kube, namespace)
    assert (spec.holderIdentity, spec.leaseTransitions) == ("survivor", 1)


async def test_leader_stops_when_lease_is_stolen(
    candidates: Callable[..., Candidate], kube: AsyncClient, namespace: str
) -> None:
    leader = candidates("victim")
    leader.start()
    await asyncio.wait_for(leader.leading.wait(), 10)
    theft = {"spec": {"holderIdentity": "thief"}}  # no resourceVersion precondition: forced
    await kube.patch(Lease, LEASE, theft, namespace=namespace, patch_type=PatchType.MERGE)
    stolen = time.monotonic()

    await asyncio.wait_for(leader.stopped.wait(), TIMINGS["lease_duration"])
    assert leader.task is not None
    await asyncio.wait_for(leader.task, 1)  # run() returns: the caller exits
    assert time.monotonic() - stolen < TIMINGS["lease_duration"]
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
    async with _TcpProxy(server.hostname, server.port) as proxy:
        raw = yaml.safe_load(cluster.kubeconfig.read_text())
        for entry in raw["clusters"]:
            entry["cluster"]["server"] = f"https://{server.hostname}:{proxy.port}"
        client = AsyncClient(config=KubeConfig.from_dict(raw, fname=cluster.kubeconfig))
        leader = candidates("partitioned", client)
        leader.start()
        await asyncio.wait_for(leader.leading.wait(), 10)
        await asyncio.sleep(1)  # a few successful renewals through the proxy
        assert not leader.stopped.is_set()
        await proxy.cut()
        cut = time.monotonic()
        await asyncio.wait_for(leader.stopped.wait(), TIMINGS["lease_duration"])
        assert time.monotonic() - cut < TIMINGS["lease_duration"]
        assert leader.task is not None
        await asyncio.wait_for(leader.task, 1)


async def test_lead_failure_releases_the_lease_and_propagates(
    new_client: Callable[[], AsyncClient], kube: AsyncClient, namespace: str
) -> None:
    async def crash() -> None:
        raise RuntimeError("reconciler crashed")

    client = new_client()
    try:
        elector = LeaderElector(client, namespace=namespace, name=LEASE, identity="x", **TIMINGS)
        with pytest.raises(RuntimeError, match="reconciler crashed"):
            await asyncio.wait_for(elector.run(crash), 10)
    finally:
        await client.close()
    spec = await _lease(kube, namespace)
    assert (spec.holderIdentity, spec.leaseDurationSeconds) == (None, 1)


class _TcpProxy:
    """Forwards TCP to the API server until `cut()`, which drops every connection: a partition."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> _TcpProxy:
        self._server = await asyncio.start_server(self._serve, self._target[0], 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.cut()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
