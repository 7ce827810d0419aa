"""Operator replicas as separate processes, the way a Deployment runs them: each is a "Pod"
with a name (its leader-election identity), a UID, and its own ServiceAccount token; a process
can be killed (-9) and started again in the same Pod (a container restart: same name, UID and
token) or as a new Pod.

Each replica's token has its own `jti`, which the API server's audit log records with every
request (see `attribution`), and may reach the API server through its own `faults.TcpProxy`,
so one replica can be partitioned while the other is not.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from lightkube import AsyncClient
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ServiceAccountToken
from prometheus_client.parser import text_string_to_metric_families

from experiment_lab import credentials
from experiment_lab.hostprocess import free_port
from experiment_lab.serviceaccount import OperatorAccount, cluster_entry, token_kubeconfig

log = logging.getLogger(__name__)

TEST_LEASE_TIMINGS = (4.0, 3.0, 0.5)
"""(lease duration, renew deadline, retry period) short enough for tests to fail over fast."""


def token_id(token: str) -> str:
    """The audit log's credential id of a ServiceAccount token: `JTI=<its jti claim>`."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"JTI={claims['jti']}"


def summed_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> each sample name's value, summed over its labels."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


@dataclass(frozen=True)
class Credentials:
    kubeconfig: Path
    credential: str
    """`JTI=...`, as the audit log attributes requests."""


async def issue_credentials(
    admin: AsyncClient,
    account: OperatorAccount,
    admin_kubeconfig: Path,
    path: Path,
    *,
    server: str | None = None,
    seconds: int = 3600,
) -> Credentials:
    """A kubeconfig with a fresh token of the operator's ServiceAccount, optionally reaching the
    API server at `server` (e.g. through a proxy); the token is registered as a credential."""
    token = await admin.create(
        ServiceAccountToken(
            metadata=ObjectMeta(name=account.name, namespace=account.namespace),
            spec=TokenRequestSpec(audiences=[], expirationSeconds=seconds),
        ),
        account.name,
        namespace=account.namespace,
    )
    assert token.status is not None
    credentials.register(token.status.token, "a ServiceAccount token")
    cluster = cluster_entry(admin_kubeconfig)
    if server is not None:
        cluster["server"] = server
    _write_private(path, token_kubeconfig(cluster, account.username, token.status.token))
    return Credentials(path, token_id(token.status.token))


def _write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


@dataclass
class Replica:
    """One operator Pod: `experiment-operator run` with leader election, restartable."""

    name: str
    credentials: Credentials
    log_dir: Path
    lease: tuple[str, str]
    """(namespace, name) of the leader-election Lease."""
    timings: tuple[float, float, float] = TEST_LEASE_TIMINGS
    extra_args: list[str] = field(default_factory=list)
    pod_uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exit_codes: list[int] = field(default_factory=list)
    """Exit codes seen by `supervise` (kills not included)."""
    started_at: float = 0.0
    """Wall-clock time of the last start."""
    held: bool = False
    """While set, `supervise` does not restart the process (e.g. until another took over)."""
    metrics_port: int = 0

    @property
    def credential(self) -> str:
        return self.credentials.credential

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the process (again: a container restart in the same Pod)."""
        assert not self.running, f"{self.name} is running"
        self.starts += 1
        self.started_at = time.time()
        self.metrics_port = free_port()
        lease, renew, retry = self.timings
        argv = [
            str(Path(sys.executable).parent / "experiment-operator"),
            "run",
            f"--kubeconfig={self.credentials.kubeconfig}",
            "--leader-elect",
            f"--leader-election-namespace={self.lease[0]}",
            f"--leader-election-id={self.lease[1]}",
            f"--leader-election-identity={self.name}",
            f"--pod-uid={self.pod_uid}",
            f"--leader-election-lease-duration={lease:g}s",
            f"--leader-election-renew-deadline={renew:g}s",
            f"--leader-election-retry-period={retry:g}s",
            f"--metrics-bind-address=127.0.0.1:{self.metrics_port}",
            "--health-probe-bind-address=0",
            "--log-format=json",
            "--log-level=debug",
            *self.extra_args,
        ]
        credentials.scan_file(self.log_path)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        log.info("replica %s started (pid %d)", self.name, self.process.pid)

    async def kill(self) -> float:
        """kill -9 and reap; returns the wall-clock time of the kill."""
        assert self.process is not None
        killed = time.time()
        self.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.process.wait)
        return killed

    async def stop(self, grace: float = 20.0) -> None:
        """SIGTERM (a graceful rollout: the Lease is released), SIGKILL after `grace`."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, grace)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)

    async def supervise(self, backoff: float = 1.0) -> None:
        """Start the process again whenever it exits, like the kubelet (restartPolicy: Always)
        restarting a container in the same Pod, unless `held`; run as a task, cancel to stop.
        Exits other than kills are recorded in `exit_codes`."""
        reaped: subprocess.Popen[bytes] | None = None
        while True:
            await asyncio.sleep(0.2)
            process = self.process
            if process is None or self.running:
                continue
            if process is not reaped and process.returncode != -signal.SIGKILL:
                log.info("replica %s exited (%s)", self.name, process.returncode)
                self.exit_codes.append(process.returncode)
            reaped = process
            if not self.held:
                await asyncio.sleep(backoff)
                if not self.held and not self.running:
                    self.start()

    async def wait_exit(self) -> int:
        assert self.process is not None
        return await asyncio.to_thread(self.process.wait)

    async def metrics(self) -> dict[str, float]:
        """The replica's /metrics, summed over labels; empty when it does not answer."""
        try:
            async with httpx2.AsyncClient(timeout=5.0) as http:
                text = (await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        except httpx2.TransportError:
            return {}
        return summed_metrics(text)

    async def leading(self) -> bool:
        values = await self.metrics()
        return values.get("leader_election_master_status", 0.0) == 1.0
