"""The lab leaves nothing behind: not after a clean stop, not after a crash and the next start.

A second lab is started as ``python -m experiment_lab serve`` (as ``make cluster-up`` does),
killed with SIGKILL once ready, started again (its start cleans what the crash left) and stopped
with SIGTERM. Then nothing of its slot may remain on the host: no process, mount, interface,
route, firewall rule, cgroup, directory, and no machine-wide sysctl changed.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from experiment_lab.node.init import FAKE_SYSCTLS
from experiment_lab.node.slot import Slot
from experiment_lab.tier import NodeTier

START_WITHIN = 600.0


def sysctls() -> dict[str, str]:
    names = [*FAKE_SYSCTLS, "net/ipv4/ip_forward", "net/netfilter/nf_conntrack_max"]
    return {
        n: Path("/proc/sys", n).read_text().strip() for n in names if Path("/proc/sys", n).exists()
    }


def _mentions(text: str, marks: tuple[str, ...]) -> bool:
    """Whether a command line or mount line names one of ``marks`` as a whole path (so slot 1's
    /tmp/experiment-lab-1 does not match /tmp/experiment-lab-16446-...-postgres)."""
    return any(re.search(rf"{re.escape(mark)}(?=[/\s:]|$)", text) for mark in marks)


def traces(slot: Slot, workdir: Path, lab_pids: tuple[int, ...]) -> list[str]:
    """Everything on the host that belongs to ``slot`` or to the labs in ``workdir`` (whose
    ``serve`` processes had ``lab_pids``; PostgreSQL's data directory is named after them)."""
    found: list[str] = []
    marks = (str(slot.runtime_dir), str(workdir), slot.host_ip)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if _mentions(cmdline, marks):
            found.append(f"process {proc.name}: {cmdline[:120]}")
    found += [f"mount {line}" for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if _mentions(line, marks)]  # fmt: skip
    if Path(f"/sys/class/net/{slot.link}").exists():
        found.append(f"interface {slot.link}")
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    found += [f"route {r}" for r in routes.splitlines() if slot.pod_cidr in r or slot.link in r]
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    found += [f"iptables {r}" for r in rules.splitlines()
              if slot.pod_cidr in r or slot.link in r or slot.host_ip in r]  # fmt: skip
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if (hierarchy / slot.cgroup_root.lstrip("/")).exists():
            found.append(f"cgroup {hierarchy / slot.cgroup_root.lstrip('/')}")
    if slot.runtime_dir.exists():
        found.append(f"directory {slot.runtime_dir}")
    for pid in lab_pids:
        found += [f"directory {p}" for p in Path("/tmp").glob(f"experiment-lab-{pid}-*")]
    return found


@contextmanager
def holding(slot: Slot) -> Iterator[None]:
    """Keep other labs out of ``slot`` while it is inspected (skip if one runs there already:
    on a developer's machine another lab may take a slot the moment it is free)."""
    fd = os.open(slot.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pytest.skip(f"another lab took slot {slot.index} before it could be inspected")
        yield
    finally:
        os.close(fd)


def start(state: Path) -> tuple[subprocess.Popen[bytes], Slot]:
    (state / "ready").unlink(missing_ok=True)
    log = (state / "serve.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "experiment_lab", "serve", str(state), "--tier", "node"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + START_WITHIN
    while not (state / "ready").exists():
        assert process.poll() is None, (state / "serve.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the lab did not start"
        time.sleep(1)
    env = dict(line.split("=", 1) for line in (state / "lab.env").read_text().split())
    return process, Slot(int(env["EXPERIMENT_LAB_NODE"].split(".")[2]))


def test_a_crashed_lab_is_cleaned_by_the_next_start_and_a_stop_leaves_nothing(
    node_tier: NodeTier, tmp_path: Path
) -> None:
    node_tier.need_lab()  # starts more labs on this machine: only beside the lab's own
    if os.geteuid() != 0:
        pytest.skip("the node tier needs root")
    before = sysctls()
    crashed, slot = start(tmp_path)
    os.kill(crashed.pid, signal.SIGKILL)
    crashed.wait()
    deadline = time.monotonic() + 30  # the kernel kills the namespaces' processes
    while any(t.startswith("process") for t in traces(slot, tmp_path, ())):
        assert time.monotonic() < deadline, traces(slot, tmp_path, ())
        time.sleep(0.5)
    again, second_slot = start(tmp_path)
    again.send_signal(signal.SIGTERM)
    assert again.wait(120) == 0, (tmp_path / "serve.log").read_text()[-3000:]
    pids = (crashed.pid, again.pid)
    for inspected in dict.fromkeys((slot, second_slot)):
        with holding(inspected):
            assert traces(inspected, tmp_path, pids) == []
    assert sysctls() == before
