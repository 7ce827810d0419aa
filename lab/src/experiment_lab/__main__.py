"""``python -m experiment_lab serve DIR``: run a local control plane until SIGTERM.

``make cluster-up`` starts this in the background and ``make cluster-down`` stops it; the admin
kubeconfig is written to ``DIR/kubeconfig``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import threading
from pathlib import Path

from experiment_lab.binaries import find_binaries
from experiment_lab.cluster import Cluster, third_party_crds_dir
from experiment_lab.controlplane import ControlPlane, ControlPlaneError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiment_lab")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("directory", type=Path, help="state directory (kubeconfig, logs, etcd)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[cluster] %(message)s")

    state: Path = args.directory
    workdir = state / "controlplane"
    shutil.rmtree(workdir, ignore_errors=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    plane = ControlPlane(workdir, find_binaries())
    try:
        plane.start(progress=logging.info)
    except ControlPlaneError as err:
        logging.error("%s", err)
        return 1
    try:
        handle = Cluster(plane.kubeconfig, str(plane.binaries / "kubectl"), plane)
        if third_party_crds_dir().is_dir():
            handle.install_third_party_crds()
        shutil.copy(plane.kubeconfig, state / "kubeconfig")
        (state / "ready").touch()
        logging.info("ready: KUBECONFIG=%s", state / "kubeconfig")
        stop.wait()
    finally:
        (state / "ready").unlink(missing_ok=True)
        plane.stop()
        logging.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
