"""``python -m experiment_lab serve DIR [--tier node|kwok]``: run a lab until SIGTERM.

``make cluster-up`` starts this in the background and ``make cluster-down`` stops it. The admin
kubeconfig is written to ``DIR/kubeconfig``; the node tier also writes ``DIR/lab.env`` (where
Traefik, S3 and PostgreSQL listen; no credential) for tests run against it with
``USE_EXISTING_CLUSTER=true``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from experiment_lab.binaries import find_binaries
from experiment_lab.cluster import Cluster, third_party_crds_dir
from experiment_lab.controlplane import ControlPlane
from experiment_lab.hostprocess import StartError
from experiment_lab.lab import running_lab
from experiment_lab.tier import INGRESS_ENV


@contextmanager
def kwok_tier(workdir: Path) -> Iterator[Cluster]:
    """The fast tier: control plane and kwok's fake node, third-party CRDs installed."""
    plane = ControlPlane(workdir, find_binaries())
    plane.start(progress=logging.info)
    try:
        handle = Cluster(plane.kubeconfig, str(plane.binaries / "kubectl"), plane)
        if third_party_crds_dir().is_dir():
            handle.install_third_party_crds()
        yield handle
    finally:
        plane.stop()


def serve(state: Path, tier: str, stop: threading.Event) -> None:
    workdir = state / tier
    shutil.rmtree(workdir, ignore_errors=True)
    if tier == "kwok":
        with kwok_tier(workdir) as cluster:
            shutil.copy(cluster.kubeconfig, state / "kubeconfig")
            _ready(state, stop)
        return
    with running_lab(workdir, progress=logging.info) as lab:
        shutil.copy(lab.cluster.kubeconfig, state / "kubeconfig")
        ingress = lab.ingress
        (state / "lab.env").write_text(
            f"{INGRESS_ENV}={ingress.address}:{ingress.web_port}:{ingress.websecure_port}\n"
            f"EXPERIMENT_LAB_S3_ENDPOINT={lab.s3.endpoint_url}\n"
            f"EXPERIMENT_LAB_NODE={lab.slot.node_ip}\n"
            "EXPERIMENT_LAB_STORAGE_CLASS=lab-local\n"
        )
        _ready(state, stop)


def _ready(state: Path, stop: threading.Event) -> None:
    (state / "ready").touch()
    logging.info("ready: KUBECONFIG=%s", state / "kubeconfig")
    try:
        stop.wait()
    finally:
        (state / "ready").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiment_lab")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("directory", type=Path, help="state directory (kubeconfig, logs, etcd)")
    parser.add_argument(
        "--tier", choices=["node", "kwok"], default="node",
        help="node: a real node, Traefik, S3, PostgreSQL (default); kwok: fake nodes only",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[cluster] %(message)s")
    for chatty in ("httpx", "httpx2"):  # one line per request of the volume provisioner
        logging.getLogger(chatty).setLevel(logging.WARNING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    args.directory.mkdir(parents=True, exist_ok=True)
    try:
        serve(args.directory.resolve(), args.tier, stop)
    except StartError as err:
        logging.error("%s", err)
        return 1
    logging.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
