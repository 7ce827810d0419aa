"""Which of a few fixed address blocks, names and directories a node tier uses.

Several labs may run on one machine (two checkouts, a test session beside the demo). Each takes
a free slot under an exclusive lock held for its lifetime, so their links, pod networks, cgroups
and runtime directories never collide; a lab killed with SIGKILL frees its slot with its lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SLOTS = 8
LOCK_DIR = Path("/run/lock")
NODE_NAME = "lab-node"
CLUSTER_DNS = "10.0.0.10"
"""The ``kube-dns`` Service's ClusterIP, inside the control plane's Service range."""


class NoFreeSlot(RuntimeError):
    """Every slot is held by a running lab."""


@dataclass(frozen=True)
class Slot:
    """Names and addresses of slot ``index``; all derived, nothing stored."""

    index: int

    @property
    def host_ip(self) -> str:
        """The host's end of the link: the API server, Traefik, S3 and PostgreSQL listen here."""
        return f"10.87.{self.index}.1"

    @property
    def node_ip(self) -> str:
        """The node's end of the link: the kubelet and CoreDNS listen here."""
        return f"10.87.{self.index}.2"

    @property
    def link_cidr(self) -> str:
        return f"10.87.{self.index}.0/30"

    @property
    def pod_cidr(self) -> str:
        return f"10.{100 + self.index}.0.0/16"

    @property
    def link(self) -> str:
        """The host's interface name (the node's end is ``eth0`` in its namespace)."""
        return f"eolab{self.index}"

    @property
    def bridge(self) -> str:
        return "cni0"

    @property
    def cgroup_root(self) -> str:
        """The kubelet's ``cgroupRoot``: every Pod cgroup lives under it."""
        return f"/experiment-lab-{self.index}"

    @property
    def runtime_dir(self) -> Path:
        """Sockets and state: short, since a unix socket path must stay under 108 bytes."""
        return Path(f"/tmp/experiment-lab-{self.index}")

    @property
    def lock_path(self) -> Path:
        return LOCK_DIR / f"experiment-lab-slot-{self.index}.lock"


@contextmanager
def acquire_slot() -> Iterator[Slot]:
    """Hold the first free slot until the context ends (or the process dies)."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    for index in range(SLOTS):
        slot = Slot(index)
        fd = os.open(slot.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield slot
        finally:
            os.close(fd)
        return
    raise NoFreeSlot(f"all {SLOTS} lab slots are in use (locks in {LOCK_DIR})")
