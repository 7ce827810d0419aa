"""Start and stop the lab's real node: namespaces, containerd, kubelet, kube-proxy, CoreDNS.

The node's processes run inside the PID, mount and network namespaces held by
`experiment_lab.node.init`; the host sees one veth link (``eolabN``) with a route to the Pod
network. What outlives the namespaces on the host is cleaned by `Node.remove_leftovers`: the
kubelet's cgroups, the runtime directory and the link (normally gone with its namespace).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from experiment_lab import pki as pki_mod
from experiment_lab.controlplane import ControlPlane
from experiment_lab.hostprocess import Component, StartError, die_with_parent
from experiment_lab.node import configs
from experiment_lab.node.init import READY_FILE
from experiment_lab.node.slot import NODE_NAME, Slot

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

CGROUP_ROOT = Path("/sys/fs/cgroup")
START_TIMEOUT = 90.0


class NodeError(StartError):
    """The node could not start; the message says which part and where its log is."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result


def _wait(what: str, ready: Callable[[], bool], timeout: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive():
            raise NodeError(f"{what} exited")
        time.sleep(0.2)
    raise NodeError(f"{what} not ready after {timeout:.0f} s")


@dataclass
class Node:
    """One real node in ``slot``; logs and generated files in ``workdir``."""

    slot: Slot
    workdir: Path
    binaries: Path
    """The lab set: kubelet, kube-proxy, coredns."""
    init: subprocess.Popen[bytes] | None = None
    components: dict[str, Component] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.paths = configs.NodePaths(self.slot.runtime_dir)
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def init_pid(self) -> int:
        """The host PID of the namespaces' PID 1 (the child of ``unshare``)."""
        assert self.init is not None
        children = Path(f"/proc/{self.init.pid}/task/{self.init.pid}/children").read_text()
        return int(children.split()[0])

    # -- namespaces and network --------------------------------------------------------------

    def start_namespaces(self) -> None:
        """Make the namespaces, the link between host and node, and the route to the Pods."""
        self.remove_leftovers()
        self.paths.root.mkdir(mode=0o755, parents=True)
        self.make_cgroup_root()
        with (self.workdir / "init.log").open("ab") as out:
            self.init = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--net",
                 "--mount", "--propagation", "private",
                 sys.executable, "-m", "experiment_lab.node.init", str(self.paths.root)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )  # fmt: skip
        ready = self.paths.root / READY_FILE
        _wait("the node's namespaces", ready.exists, 30, lambda: self.init_alive)
        slot, pid = self.slot, str(self.init_pid)
        _run("ip", "link", "add", slot.link, "type", "veth", "peer", "name", "eth0", "netns", pid)
        _run("ip", "addr", "add", f"{slot.host_ip}/30", "dev", slot.link)
        _run("ip", "link", "set", slot.link, "up")
        self.run("ip", "addr", "add", f"{slot.node_ip}/30", "dev", "eth0")
        self.run("ip", "link", "set", "eth0", "up")
        self.run("ip", "route", "add", "default", "via", slot.host_ip)
        _run("ip", "route", "add", slot.pod_cidr, "via", slot.node_ip, "dev", slot.link)

    @property
    def init_alive(self) -> bool:
        return self.init is not None and self.init.poll() is None

    def enter(self, *, pid: bool = True) -> list[str]:
        """The command prefix that runs a program inside the node's namespaces."""
        flags = ["--pid", "--net", "--mount"] if pid else ["--net", "--mount"]
        return ["nsenter", "--target", str(self.init_pid), *flags, "--"]

    def run(self, *argv: str) -> str:
        """Run a short command inside the node (``ip``, ``iptables``) and return its output."""
        return _run(*self.enter(pid=False), *argv).stdout

    def processes(self, pattern: str) -> list[str]:
        """The node's processes whose command line matches ``pattern`` (``pgrep -a -f``)."""
        result = subprocess.run(
            [*self.enter(), "pgrep", "-a", "-f", pattern],
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout.splitlines()

    def ctr(self) -> list[str]:
        """``ctr`` against the node's containerd (the socket is visible from the host)."""
        return ["ctr", "--address", str(self.paths.containerd_socket), "--namespace", "k8s.io"]

    def _spawn(self, name: str, argv: list[str]) -> Component:
        # setpriv: the program gets SIGTERM when nsenter (its parent) dies with the lab.
        wrapped = [*self.enter(), "setpriv", "--pdeathsig", "TERM", "--", *argv]
        component = Component(name, wrapped, self.workdir / f"{name}.log")
        self.components[name] = component
        component.start()
        return component

    # -- components --------------------------------------------------------------------------

    def start_runtime(self) -> None:
        """containerd with the CRI plugin and the Pod network's CNI configuration."""
        self.paths.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        conflist = configs.cni_conflist(self.slot, self.paths)
        (self.paths.cni_conf_dir / "10-lab.conflist").write_text(json.dumps(conflist, indent=2))
        self.paths.containerd_config.write_text(configs.containerd_config(self.paths))
        containerd = self._spawn(
            "containerd", ["containerd", "--config", str(self.paths.containerd_config)]
        )

        def answers() -> bool:
            return subprocess.run([*self.ctr(), "version"], capture_output=True).returncode == 0

        _wait(f"containerd (log: {containerd.log_path})", answers, 30, containerd.running)

    def start_kubelet(self, plane: ControlPlane, progress: Progress) -> None:
        """kubelet and kube-proxy with their own certificates, then CoreDNS; wait for Ready."""
        p, slot, paths = plane.pki, self.slot, self.paths
        paths.pki.mkdir(exist_ok=True)
        kubelet_kc = self._client(plane, "kubelet", f"system:node:{NODE_NAME}", "system:nodes")
        pki_mod.issue(
            p, paths.pki / "kubelet-serving.crt", paths.pki / "kubelet-serving.key",
            cn=NODE_NAME, ips=[slot.node_ip], dns_names=[NODE_NAME],
        )  # fmt: skip
        config = self.workdir / "kubelet.yaml"
        config.write_text(yaml.safe_dump(configs.kubelet_config(slot, paths, p.ca_cert)))
        kubelet = self._spawn(
            "kubelet",
            [str(self.binaries / "kubelet"), f"--config={config}", f"--kubeconfig={kubelet_kc}",
             f"--root-dir={paths.kubelet_root}", f"--cert-dir={paths.pki}",
             f"--hostname-override={NODE_NAME}", f"--node-ip={slot.node_ip}", "--v=1"],
        )  # fmt: skip
        proxy_kc = self._client(plane, "kube-proxy", "system:kube-proxy", None)
        proxy_config = self.workdir / "kube-proxy.yaml"
        proxy_config.write_text(yaml.safe_dump(configs.kube_proxy_config(slot, proxy_kc)))
        self._spawn("kube-proxy", [str(self.binaries / "kube-proxy"), f"--config={proxy_config}"])
        self._start_dns(plane)

        def ready() -> bool:
            out = plane.kubectl(
                "get", "node", NODE_NAME, "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False,
            )  # fmt: skip
            return out.strip() == "True"

        started = time.monotonic()
        _wait(f"the kubelet (log: {kubelet.log_path})", ready, START_TIMEOUT, kubelet.running)
        progress(f"node {NODE_NAME} Ready in {time.monotonic() - started:.1f} s ({slot.node_ip})")

    def _start_dns(self, plane: ControlPlane) -> None:
        """CoreDNS on the node's address, behind the ``kube-dns`` Service (kube-proxy routes)."""
        kc = self._client(plane, "coredns", "lab-coredns", "system:masters")
        corefile = self.workdir / "Corefile"
        corefile.write_text(configs.corefile(self.slot, kc))
        for manifest in configs.dns_objects(self.slot):
            plane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(manifest))
        self._spawn("coredns", [str(self.binaries / "coredns"), "-conf", str(corefile)])

    def _client(self, plane: ControlPlane, name: str, user: str, group: str | None) -> Path:
        """A kubeconfig for ``user`` (in ``group``) with its own client certificate."""
        cert, key = self.paths.pki / f"{name}.crt", self.paths.pki / f"{name}.key"
        pki_mod.issue(plane.pki, cert, key, cn=user, org=group)
        path = self.paths.pki / f"{name}.kubeconfig"
        path.write_text(
            yaml.safe_dump(configs.kubeconfig(plane.server, plane.pki.ca_cert, cert, key, user))
        )
        return path

    # -- teardown ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every component, end the namespaces, remove what is left on the host."""
        for name in ("coredns", "kube-proxy", "kubelet"):
            if name in self.components:
                self.components[name].stop(timeout=10)
        if self.init is not None:
            self.init.terminate()  # --kill-child: init gets SIGKILL, its namespaces end
            try:
                self.init.wait(15)
            except subprocess.TimeoutExpired:
                self.init.kill()
                self.init.wait()
        for component in self.components.values():
            component.stop(timeout=5)
        self.components.clear()
        self.remove_leftovers()

    def make_cgroup_root(self) -> None:
        """The kubelet requires its cgroup root in every hierarchy; cpuset needs its CPUs set."""
        for hierarchy in self._hierarchies():
            path = hierarchy / self.slot.cgroup_root.lstrip("/")
            path.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (path / name).exists() and not (path / name).read_text().strip():
                    (path / name).write_text((hierarchy / name).read_text())

    def remove_leftovers(self) -> None:
        """Remove the slot's cgroups (deepest first, once their processes are gone), its link
        and its runtime directory: safe to call when nothing is there."""
        deadline = time.monotonic() + 20
        for hierarchy in self._hierarchies():
            top = hierarchy / self.slot.cgroup_root.lstrip("/")
            if not top.is_dir():
                continue
            for path in sorted(
                (p for p in [top, *top.rglob("*")] if p.is_dir()),
                key=lambda p: len(p.parts),
                reverse=True,
            ):
                while True:
                    try:
                        path.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            log.warning("cgroup %s still busy", path)
                            break
                        time.sleep(0.2)
        if Path(f"/sys/class/net/{self.slot.link}").exists():
            _run("ip", "link", "delete", self.slot.link, check=False)
        shutil.rmtree(self.paths.root, ignore_errors=True)

    @staticmethod
    def _hierarchies() -> list[Path]:
        """Mounted cgroup v1 hierarchies (or the v2 root) where the kubelet makes cgroups."""
        if (CGROUP_ROOT / "cgroup.controllers").exists():
            return [CGROUP_ROOT]
        return sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink())
