"""PID 1 of the node's namespaces: mounts the node's private view of the host, then reaps.

Started as ``unshare --pid --fork --kill-child --mount-proc --net --mount --propagation private
python -m experiment_lab.node.init RUNTIME_DIR``. Everything the node runs (containerd, shims,
containers, the kubelet, kube-proxy, CoreDNS) lives in these namespaces, so when this process
dies (its parent died, or the lab stopped it) the kernel kills them all, and their mounts,
network namespaces, interfaces and iptables rules go with them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

FAKE_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
"""Machine-wide sysctls the kubelet sets to these values: it gets private files instead, so the
host's values never change (the kubelet reads back what it wrote and is content)."""

NETWORK_SYSCTLS = {"net/ipv4/ip_forward": "1", "net/ipv4/conf/all/route_localnet": "1"}
"""Per-network-namespace: the node routes between its Pods' bridge and its link to the host."""

PRIVATE_TMPFS = ("/run", "/var/log")
"""containerd's runc state, the Pods' network namespaces and their logs (/var/log/pods is fixed
in the kubelet): private, so nothing collides with the host's and nothing outlives the node."""

READY_FILE = "init.ready"


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def prepare(runtime_dir: Path) -> None:
    """Mount the private directories and the fake sysctls, set the network sysctls."""
    for path in PRIVATE_TMPFS:
        _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", path)
    fake = runtime_dir / "sysctl"
    for name, value in FAKE_SYSCTLS.items():
        target = Path("/proc/sys") / name
        if not target.exists():
            continue
        source = fake / name.replace("/", ".")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(value + "\n")
        _mount("--bind", str(source), str(target))
    for name, value in NETWORK_SYSCTLS.items():
        (Path("/proc/sys") / name).write_text(value + "\n")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def reap_forever() -> None:
    """PID 1 collects orphans (containerd's shims are re-parented here) until told to stop."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    while True:
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(1)


def main() -> None:
    runtime_dir = Path(sys.argv[1])
    prepare(runtime_dir)
    (runtime_dir / READY_FILE).touch()
    reap_forever()


if __name__ == "__main__":
    main()
