"""Start and stop etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok.

The API server listens on ``address`` (loopback, or the node tier's host address so that Pods
reach it through the ``kubernetes`` Service) and talks to real kubelets with a client certificate
of its own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiment_lab import pki as pki_mod
from experiment_lab.hostprocess import Component, StartError, free_port
from experiment_lab.kwok import KWOK_NODE_ANNOTATION, fake_node_manifest

log = logging.getLogger(__name__)

SERVICE_CIDR = "10.0.0.0/16"
"""Room for the benchmarks' thousands of Services (a /24 runs out after 254)."""
START_TIMEOUT = 60.0


class ControlPlaneError(StartError):
    """A component failed to start; the message names its log file."""


@dataclass
class ControlPlane:
    """A real control plane on loopback ports under ``workdir``.

    ``audit_policy`` turns on the API server's audit log (``workdir/audit.log``), which the
    benchmarks read to count requests per user.
    """

    workdir: Path
    binaries: Path
    audit_policy: Path | None = None
    fake_nodes: int = 1
    """kwok's fake nodes; 0 leaves kwok out (the node tier's Pods run on a real kubelet)."""
    address: str = "127.0.0.1"
    apiserver_flags: tuple[str, ...] = ()
    """Added to kube-apiserver's command line (e.g. a feature gate a test turns off)."""
    components: dict[str, Component] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.etcd_port = free_port()
        self.apiserver_port = free_port(self.address)
        self.kubeconfig = self.workdir / "kubeconfig"
        self.pki = pki_mod.generate(self.workdir / "pki", ips=[self.address])
        self._write_kubeconfig()

    # -- public API --------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.apiserver_port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses (kubectl, the operator) that talk to this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def start(self, progress: Callable[[str], None] = log.info) -> None:
        """Start every component and wait until each is healthy; stop all on failure."""
        started = time.monotonic()
        try:
            self._start("etcd", self._etcd_argv(), self._etcd_healthy)
            self._start("kube-apiserver", self._apiserver_argv(), self._apiserver_healthy)
            self._start("kube-controller-manager", self._kcm_argv(), self._https_healthy)
            self._start("kube-scheduler", self._scheduler_argv(), self._https_healthy)
            if self.fake_nodes:
                self._create_fake_nodes()
                self._start("kwok", self._kwok_argv(), self._nodes_ready)
        except BaseException:
            self.stop()
            raise
        progress(f"control plane healthy in {time.monotonic() - started:.1f}s ({self.server})")

    def stop(self) -> None:
        """Stop components in reverse order; safe to call twice."""
        for component in reversed(list(self.components.values())):
            component.stop()

    async def restart_apiserver(self) -> None:
        """Restart kube-apiserver; its new watch cache makes older resourceVersions 410 Gone.

        The new process is started from the event loop's thread (it dies with the thread that
        started it, see `die_with_parent`); only the waits run in a worker thread.
        """
        old = self.components["kube-apiserver"]
        await asyncio.to_thread(old.stop)
        component = self._spawn("kube-apiserver", self._apiserver_argv())
        await asyncio.to_thread(self._wait_healthy, component, self._apiserver_healthy)

    async def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision, returning that revision."""
        return await asyncio.to_thread(self._compact_etcd)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [str(self.binaries / "kubectl"), *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    # -- components --------------------------------------------------------------------------

    def _start(self, name: str, argv: list[str], healthy: Callable[[str], bool]) -> None:
        self._wait_healthy(self._spawn(name, argv), healthy)

    def _spawn(self, name: str, argv: list[str]) -> Component:
        component = Component(name, argv, self.workdir / f"{name}.log")
        self.components[name] = component
        component.start()
        return component

    def _wait_healthy(self, component: Component, healthy: Callable[[str], bool]) -> None:
        name = component.name
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not component.running():
                break
            if healthy(name):
                return
            time.sleep(0.1)
        reason = "exited" if not component.running() else f"not healthy after {START_TIMEOUT}s"
        raise ControlPlaneError(f"{name} {reason}; log: {component.log_path}\n{component.tail()}")

    def _etcd_argv(self) -> list[str]:
        peer = free_port()
        url = f"http://127.0.0.1:{self.etcd_port}"
        return [
            str(self.binaries / "etcd"),
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={url}",
            f"--advertise-client-urls={url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        p = self.pki
        argv = [
            str(self.binaries / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            f"--bind-address={self.address}",
            f"--advertise-address={self.address}",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={p.serving_cert}",
            f"--tls-private-key-file={p.serving_key}",
            f"--client-ca-file={p.ca_cert}",
            f"--service-account-key-file={p.sa_public}",
            f"--service-account-signing-key-file={p.sa_private}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--kubelet-client-certificate={p.kubelet_client_cert}",
            f"--kubelet-client-key={p.kubelet_client_key}",
            f"--kubelet-certificate-authority={p.ca_cert}",
            "--kubelet-preferred-address-types=InternalIP",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
            *self.apiserver_flags,
        ]
        if self.audit_policy:
            argv += [
                f"--audit-policy-file={self.audit_policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-mode=batch",
                "--audit-log-batch-max-wait=1s",
            ]
        return argv

    def _component_kubeconfig_args(self) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            f"--cert-dir={self.workdir / 'component-certs'}",
        ]

    def _kcm_argv(self) -> list[str]:
        self._kcm_port = free_port()
        return [
            str(self.binaries / "kube-controller-manager"),
            *self._component_kubeconfig_args(),
            f"--secure-port={self._kcm_port}",
            f"--service-account-private-key-file={self.pki.sa_private}",
            f"--root-ca-file={self.pki.ca_cert}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
            "--concurrent-gc-syncs=50",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ]

    def _scheduler_argv(self) -> list[str]:
        self._scheduler_port = free_port()
        return [
            str(self.binaries / "kube-scheduler"),
            *self._component_kubeconfig_args(),
            f"--secure-port={self._scheduler_port}",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ]

    def _kwok_argv(self) -> list[str]:
        return [
            str(self.binaries / "kwok"),
            f"--kubeconfig={self.kubeconfig}",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            "--cidr=10.244.0.1/16",
            "--node-ip=10.244.0.1",
            # Heartbeats through a node Lease. Without them the node lifecycle controller marks
            # the node NotReady after --node-monitor-grace-period (50 s) and sets every Pod's
            # Ready condition to False; kwok makes the node Ready again but never the Pods, so
            # Deployments older than a minute lose their available replicas for good.
            "--node-lease-duration-seconds=40",
        ]

    # -- health ------------------------------------------------------------------------------

    def _etcd_healthy(self, _: str) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.etcd_port}/health", timeout=2
            ) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except OSError:
            return False

    def _apiserver_healthy(self, _: str) -> bool:
        return self._get(f"{self.server}/readyz") == 200

    def _https_healthy(self, name: str) -> bool:
        port = self._kcm_port if name == "kube-controller-manager" else self._scheduler_port
        return self._get(f"https://127.0.0.1:{port}/healthz", verify=False) == 200

    def _nodes_ready(self, _: str) -> bool:
        out = self.kubectl(
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}",
            check=False,
        )
        statuses = out.split()
        return len(statuses) >= self.fake_nodes and all(s == "True" for s in statuses)

    def _get(self, url: str, *, verify: bool = True) -> int | None:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(self.pki.admin_cert, self.pki.admin_key)
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as resp:
                status: int = resp.status
                return status
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return None

    # -- helpers -----------------------------------------------------------------------------

    def _create_fake_nodes(self) -> None:
        for index in range(self.fake_nodes):
            self.kubectl("apply", "-f", "-", input=json.dumps(fake_node_manifest(index)))

    def _compact_etcd(self) -> int:
        base = f"http://127.0.0.1:{self.etcd_port}/v3/kv"
        key = base64.b64encode(b"\0").decode()
        revision = int(
            self._etcd_post(f"{base}/range", {"key": key, "limit": 1})["header"]["revision"]
        )
        self._etcd_post(f"{base}/compaction", {"revision": revision, "physical": True})
        return revision

    @staticmethod
    def _etcd_post(url: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result

    def _write_kubeconfig(self) -> None:
        p = self.pki
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {"server": self.server, "certificate-authority": str(p.ca_cert)},
                }
            ],
            "users": [
                {
                    "name": "envtest-admin",
                    "user": {
                        "client-certificate": str(p.admin_cert),
                        "client-key": str(p.admin_key),
                    },
                }
            ],
            "contexts": [
                {"name": "envtest", "context": {"cluster": "envtest", "user": "envtest-admin"}}
            ],
            "current-context": "envtest",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
