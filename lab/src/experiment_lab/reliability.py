"""The reliability tests' harness: a control plane of their own with an audit log that records
who wrote what, the operator's ServiceAccount, operator replicas as separate processes (see
`replicas`) with optional proxies (see `faults`), and convergence and figure helpers.

Lease timings are short so failovers are quick; `RELIABILITY_LEASE_TIMINGS=15,10,2` runs the
same tests with the production defaults (for docs/reliability.md's figures), and
`RELIABILITY_FIGURES=file` collects the measured figures as JSON lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError

from experiment_lab.attribution import Request, Write, read_requests, read_writes
from experiment_lab.cluster import Cluster
from experiment_lab.controlplane import ControlPlane
from experiment_lab.convergence import Report, converged, create_namespaces
from experiment_lab.faults import TcpProxy
from experiment_lab.replicas import TEST_LEASE_TIMINGS, Credentials, Replica, issue_credentials
from experiment_lab.serviceaccount import OperatorAccount
from experiment_lab.wait import eventually
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.leaderelection import HOLDER_ANNOTATION
from experiment_operator.trackingserver.children import ChildOptions

AUDIT_FLUSH = 2.5
"""The audit log is written in batches of at most 1 s: wait this long before reading it."""
OPERATOR_NAMESPACE = "reliability-operator"
FIGURES_ENV = "RELIABILITY_FIGURES"
"""When set, each test appends its measured figures (JSON lines) to this file."""


def lease_timings() -> tuple[float, float, float]:
    raw = os.environ.get("RELIABILITY_LEASE_TIMINGS")
    if not raw:
        return TEST_LEASE_TIMINGS
    lease, renew, retry = (float(v) for v in raw.split(","))
    return (lease, renew, retry)


def record_figures(test: str, **figures: object) -> None:
    """Print the figures (shown with -s) and append them to $RELIABILITY_FIGURES."""
    line = json.dumps({"test": test, "timings": lease_timings(), **figures}, default=str)
    print(f"FIGURES {line}")
    if path := os.environ.get(FIGURES_ENV):
        with Path(path).open("a") as out:
            out.write(line + "\n")


@dataclass
class Lab:
    """What the reliability tests share."""

    plane: ControlPlane
    cluster: Cluster
    admin: AsyncClient
    account: OperatorAccount
    workdir: Path
    options: ChildOptions = field(default_factory=ChildOptions)

    @property
    def audit_log(self) -> Path:
        return self.plane.audit_log

    async def writes(self, credentials: set[str] | None = None) -> list[Write]:
        """The writes of the operator's ServiceAccount (of those tokens only, if given), read
        once the audit log caught up."""
        await asyncio.sleep(AUDIT_FLUSH)
        writes = await asyncio.to_thread(read_writes, self.audit_log, [self.account.username])
        return [w for w in writes if credentials is None or w.credential in credentials]

    async def requests(self, credentials: set[str]) -> list[Request]:
        """Every request (reads too) of these tokens, once the audit log caught up."""
        await asyncio.sleep(AUDIT_FLUSH)
        found = await asyncio.to_thread(read_requests, self.audit_log, [self.account.username])
        return [r for r in found if r.credential in credentials]

    async def namespaces(self, count: int) -> list[str]:
        names = [f"rel-{uuid.uuid4().hex[:6]}" for _ in range(count)]
        await create_namespaces(self.admin, names)
        return names

    async def converge(self, namespaces: list[str], within: float) -> Report:
        """Wait until every TrackingServer in `namespaces` converged; the last report.

        A restarted API server answers reads with 429 (a watch cache still initialising) or
        503, or not at all, for a while: those mean "not yet", not a failure."""
        last = Report()

        async def done() -> bool:
            nonlocal last
            try:
                last = await converged(self.admin, namespaces, self.options)
            except httpx2.TransportError:
                return False
            except ApiError as err:
                if err.status.code in (429, 503):
                    return False
                raise
            return last.ok

        try:
            await eventually(done, within=within, interval=2.0)
        except AssertionError:
            raise AssertionError(f"not converged in {within}s: {last}") from None
        return last

    async def lease_holder(self, lease: tuple[str, str]) -> str:
        """The Lease's holderIdentity ("" when free or absent)."""
        return (await self.lease_record(lease))[0]

    async def lease_record(self, lease: tuple[str, str]) -> tuple[str, str]:
        """(holderIdentity, the holding process's incarnation annotation)."""
        obj = await kubeapi.get(self.admin, LEASE_KIND, *lease) or {}
        holder = str((obj.get("spec") or {}).get("holderIdentity") or "")
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        return holder, str(annotations.get(HOLDER_ANNOTATION, ""))

    async def wait_holder(
        self, lease: tuple[str, str], identity: str, within: float, *, not_process: str = ""
    ) -> None:
        """Wait until `identity` holds the Lease (in another process than `not_process`, the
        incarnation annotation of a holder that was killed)."""

        async def holds() -> bool:
            holder, process = await self.lease_record(lease)
            return holder == identity and process != not_process

        await eventually(holds, f"{identity} holds the Lease", within=within, interval=0.1)


LEASE_KIND = kubeapi.KindInfo("coordination.k8s.io", "v1", "Lease", "leases", namespaced=True)


@dataclass
class Replicas:
    """Operator replicas of one test (and their proxies), all stopped at its end."""

    lab: Lab
    lease: tuple[str, str]
    namespaces: list[str]
    made: list[Replica] = field(default_factory=list)
    proxies: dict[str, TcpProxy] = field(default_factory=dict)
    supervisors: list[asyncio.Task[None]] = field(default_factory=list)

    async def new(
        self,
        name: str,
        *,
        proxied: bool = False,
        timings: tuple[float, float, float] | None = None,
        supervised: bool = False,
        restart_delay: float = 1.0,
        extra_args: list[str] | None = None,
    ) -> Replica:
        """A replica (not started) with its own token; `proxied` puts a TcpProxy in front."""
        server = None
        if proxied:
            port = self.lab.plane.apiserver_port
            proxy = TcpProxy("127.0.0.1", port)
            await proxy.start()
            self.proxies[name] = proxy
            server = f"https://127.0.0.1:{proxy.port}"
        creds: Credentials = await issue_credentials(
            self.lab.admin,
            self.lab.account,
            self.lab.plane.kubeconfig,
            self.lab.workdir / f"{self.lease[1]}-{name}.kubeconfig",
            server=server,
        )
        log_dir = self.lab.workdir / self.lease[1]
        log_dir.mkdir(exist_ok=True)
        replica = Replica(
            name,
            creds,
            log_dir,
            self.lease,
            timings or lease_timings(),
            [f"--namespace={','.join(self.namespaces)}", *(extra_args or [])],
        )
        self.made.append(replica)
        if supervised:
            replica.start()
            self.supervisors.append(asyncio.create_task(replica.supervise(restart_delay)))
        return replica

    @property
    def credentials(self) -> set[str]:
        """The audit log's ids of this group's tokens."""
        return {replica.credential for replica in self.made}

    async def writes(self) -> list[Write]:
        """This group's writes (other tests' replicas share the ServiceAccount, not tokens)."""
        return await self.lab.writes(self.credentials)

    async def requests(self) -> list[Request]:
        return await self.lab.requests(self.credentials)

    async def close(self) -> None:
        for task in self.supervisors:
            task.cancel()
        await asyncio.gather(*self.supervisors, return_exceptions=True)
        await asyncio.gather(*(r.stop() for r in self.made))
        for proxy in self.proxies.values():
            with contextlib.suppress(Exception):
                await proxy.close()


ReplicaGroups = Callable[[list[str]], Replicas]
"""The `replicas_for` fixture: a replica group for some namespaces, with its own Lease."""
