"""The benchmark's world: a control plane with an audit log, the operator's ServiceAccount, and
the operator as a separate process whose RSS and metrics are sampled from outside."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from lightkube import AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace

from experiment_lab.audit import AuditLogTail, RequestCounts
from experiment_lab.binaries import REPO_ROOT
from experiment_lab.cluster import Cluster
from experiment_lab.controlplane import ControlPlane
from experiment_lab.hostprocess import free_port
from experiment_lab.replicas import summed_metrics
from experiment_lab.serviceaccount import OperatorAccount, operator_account
from experiment_operator.runtime import kubeapi

from .cpu import control_plane_pids, process_seconds

log = logging.getLogger("bench")

BENCH_DIR = Path(__file__).resolve().parent
AUDIT_POLICY = BENCH_DIR / "audit-policy.yaml"
CRD_FILE = REPO_ROOT / "config" / "crd" / "bases" / "experiment.aiscope_trackingservers.yaml"
OPERATOR_NAMESPACE = "bench-operator"
AUDIT_FLUSH = 2.5
"""The audit log is written in batches of at most 1 s: wait this long before reading a window."""


def rss_mib(pid: int) -> float:
    """Resident set size of a process (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class OperatorProcess:
    """`experiment-operator run` as a child process, authenticated as the ServiceAccount; or,
    with `peer`, the original Go controller built from its source (see RESULTS.md)."""

    kubeconfig: Path
    log_dir: Path
    extra_args: list[str] = field(default_factory=list)
    resync_period: float | None = None
    """Passed as `--resync-period` when set (the operator's default, 10 h, otherwise)."""
    peer: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    _runs: int = 0
    _sampler: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.health_port, self.metrics_port = free_port(), free_port()
        self._runs += 1
        probes = [
            f"--kubeconfig={self.kubeconfig}",
            f"--health-probe-bind-address=127.0.0.1:{self.health_port}",
            f"--metrics-bind-address=127.0.0.1:{self.metrics_port}",
        ]
        if self.peer is not None:
            argv = [str(self.peer), *probes, *self.extra_args]
        else:
            program = str(Path(sys.executable).parent / "experiment-operator")
            argv = [program, "run", *probes, "--no-leader-elect", "--log-format=json"]
            argv += self.extra_args
        if self.resync_period is not None and self.peer is None:
            argv.append(f"--resync-period={self.resync_period:g}s")
        log_path = self.log_dir / f"operator-{self._runs}.log"
        with log_path.open("ab") as out:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.started_at = time.monotonic()
        self.rss_samples = []
        self._sampler = asyncio.create_task(self._sample_rss())
        log.info("operator started (pid %d, log %s)", self.process.pid, log_path)

    async def stop(self, grace: float = 20.0) -> None:
        """SIGTERM and wait (the graceful path a Deployment rollout takes)."""
        if self._sampler is not None:
            self._sampler.cancel()
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, grace)
        except subprocess.TimeoutExpired:
            log.warning("operator did not stop in %.0fs; killing it", grace)
            process.kill()
            await asyncio.to_thread(process.wait)

    async def kill(self) -> None:
        """SIGKILL: a crash, no clean-up of any kind."""
        if self._sampler is not None:
            self._sampler.cancel()
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            await asyncio.to_thread(process.wait)

    @property
    def pid(self) -> int:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError("the operator is not running (see its log in the bench workdir)")
        return self.process.pid

    async def _sample_rss(self) -> None:
        while self.process is not None and self.process.poll() is None:
            self.rss_samples.append((time.monotonic(), rss_mib(self.process.pid)))
            await asyncio.sleep(0.5)

    async def steady_rss(self, seconds: float = 5.0) -> float:
        """Median RSS over the next `seconds` (single readings jump with Python's allocator)."""
        since = time.monotonic()
        await asyncio.sleep(seconds)
        return statistics.median(rss for t, rss in self.rss_samples if t >= since)

    def cpu_seconds(self) -> float:
        return process_seconds(self.pid)

    def peak_rss(self) -> float:
        return max((rss for _, rss in self.rss_samples), default=0.0)

    async def _get(self, port: int, path: str) -> httpx2.Response:
        async with httpx2.AsyncClient(timeout=5.0) as http:
            return await http.get(f"http://127.0.0.1:{port}{path}")

    async def wait_ready(self, within: float = 120.0) -> float:
        """Seconds from process start until `/readyz` answered 200 (caches synced)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            _ = self.pid  # fail fast when it exited
            try:
                if (await self._get(self.health_port, "/readyz")).status_code == 200:
                    return time.monotonic() - self.started_at
            except httpx2.TransportError:
                pass
            await asyncio.sleep(0.05)
        raise TimeoutError(f"operator not ready after {within}s")

    async def metrics(self) -> dict[str, float]:
        """Samples of the operator's /metrics, summed over labels (e.g. per result)."""
        text = (await self._get(self.metrics_port, "/metrics")).text
        return summed_metrics(text)

    async def reconciles(self) -> float:
        return (await self.metrics()).get("controller_runtime_reconcile_total", 0.0)

    async def quiesce(
        self, *, at_least: float = 0, quiet: float = 3.0, within: float = 600.0
    ) -> float:
        """Wait until `at_least` reconciles happened and the total stopped rising for `quiet`
        seconds with an empty queue; return the monotonic time of the last rise."""
        deadline = time.monotonic() + within
        last_total, last_rise = -1.0, time.monotonic()
        while time.monotonic() < deadline:
            values = await self.metrics()
            total = values.get("controller_runtime_reconcile_total", 0.0)
            if total != last_total:
                last_total, last_rise = total, time.monotonic()
            idle = values.get("workqueue_depth", 0.0) == 0
            if total >= at_least and idle and time.monotonic() - last_rise >= quiet:
                return last_rise
            await asyncio.sleep(0.25)
        raise TimeoutError(f"reconciles still rising (or < {at_least}) after {within}s")


@dataclass
class Bench:
    """What every scenario uses: the cluster, an admin client, the audit log and the operator."""

    cluster: Cluster
    admin: AsyncClient
    account: OperatorAccount
    audit: AuditLogTail
    operator: OperatorProcess
    workdir: Path

    async def requests(self, since: float, until: float | None = None) -> RequestCounts:
        """The operator's requests received in a wall-clock window (after the log caught up)."""
        await asyncio.sleep(AUDIT_FLUSH)
        return self.audit.counts(since, until)

    def pids(self) -> dict[str, int]:
        """The processes a CPU window measures: the control plane's, the operator, this one."""
        plane = self.cluster.control_plane
        own = control_plane_pids(plane) if plane is not None else {}
        return {**own, "operator": self.operator.pid, "bench": os.getpid()}

    async def kubernetes_version(self) -> str:
        http = self.admin._client._client
        response = await http.get("/version")
        return str(response.json().get("gitVersion", "unknown"))


@asynccontextmanager
async def bench_environment(
    workdir: Path, binaries: Path, *, operator_args: list[str], peer: Path | None = None
) -> AsyncIterator[Bench]:
    """Start everything, yield the Bench, and stop everything (also on errors or Ctrl-C).
    With `peer`, the operator process is the original controller (whose RBAC is not ours: its
    ServiceAccount is made cluster-admin)."""
    workdir = workdir / ("peer" if peer is not None else "operator")
    plane = ControlPlane(workdir / "controlplane", binaries, audit_policy=AUDIT_POLICY)
    await asyncio.to_thread(plane.start, log.info)
    admin: AsyncClient | None = None
    try:
        cluster = Cluster(plane.kubeconfig, str(binaries / "kubectl"), plane)
        await asyncio.to_thread(cluster.install_third_party_crds)
        cluster.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        admin = AsyncClient(
            config=KubeConfig.from_file(plane.kubeconfig),
            field_manager="bench",
            timeout=httpx2.Timeout(60.0),  # a loaded machine answers slowly
        )
        await admin.create(Namespace(metadata=ObjectMeta(name=OPERATOR_NAMESPACE)))
        async with operator_account(
            admin, plane.kubeconfig, OPERATOR_NAMESPACE, workdir, token_seconds=24 * 3600
        ) as account:
            if peer is not None:
                await _cluster_admin(admin, account)
            operator = OperatorProcess(account.kubeconfig, workdir, operator_args, peer=peer)
            audit = AuditLogTail(plane.audit_log, account.username)
            try:
                yield Bench(cluster, admin, account, audit, operator, workdir)
            finally:
                await operator.stop()
                audit.close()
    finally:
        if admin is not None:
            await admin.close()
        await asyncio.to_thread(plane.stop)


async def _cluster_admin(admin: AsyncClient, account: OperatorAccount) -> None:
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "bench-peer-cluster-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": account.name,
                      "namespace": account.namespace}],
    }  # fmt: skip
    path = "apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
    await kubeapi.request(admin, "POST", path, body=binding)
