"""The node tier: a control plane, one real node, Traefik, S3 and PostgreSQL, started together.

`running_lab` is what the node-tier tests, the demo and ``python -m experiment_lab serve --tier
node`` use. Order matters: the node's namespaces first (the API server listens on the host's end
of the node's link, so Pods reach it through the ``kubernetes`` Service), then the control
plane without kwok, containerd with the lab's images imported, the kubelet, the third-party
CRDs, the volume provisioner, and the servers the MLflow Pods use.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from experiment_lab.binaries import find_binaries, find_lab_binaries
from experiment_lab.cluster import Cluster
from experiment_lab.controlplane import ControlPlane
from experiment_lab.images import ensure_images, import_images
from experiment_lab.ingress import IngressEndpoint
from experiment_lab.node.node import Node
from experiment_lab.node.slot import Slot, acquire_slot
from experiment_lab.postgres import PostgresServer
from experiment_lab.provisioner import LocalProvisioner
from experiment_lab.s3 import S3Server
from experiment_lab.traefik import Traefik, class_manifests

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

IMAGES = ("pause", "mlflow", "operator")
GATEWAY_API = "v1.4.0"
"""The Gateway API bundle Traefik v3.6 implements (v1.6's ListenerSet it does not read)."""


@dataclass
class Lab:
    """Handles on everything the node tier started."""

    slot: Slot
    cluster: Cluster
    node: Node
    traefik: Traefik
    s3: S3Server
    postgres: PostgresServer

    @property
    def plane(self) -> ControlPlane:
        assert self.cluster.control_plane is not None
        return self.cluster.control_plane

    @property
    def ingress(self) -> IngressEndpoint:
        return self.traefik.endpoint


@contextmanager
def running_lab(
    workdir: Path, progress: Progress = log.info, extra_web: str | None = None
) -> Iterator[Lab]:
    """Start the node tier in ``workdir`` (logs, state); stop all of it when the context ends.

    ``extra_web`` ("127.0.0.1:8080"): one more plain-HTTP entry point of Traefik, for the demo.
    """
    started = time.monotonic()
    progress("building or finding the images (pause, MLflow, seed contract, operator)")
    archives = ensure_images(progress, IMAGES)
    binaries, lab_binaries = find_binaries(), find_lab_binaries()
    with ExitStack() as stack:
        slot = stack.enter_context(acquire_slot())
        node = Node(slot, workdir / "node", lab_binaries)
        stack.callback(node.stop)
        node.start_namespaces()
        progress(
            f"node namespaces up (slot {slot.index}: host {slot.host_ip}, pods {slot.pod_cidr})"
        )
        plane = ControlPlane(workdir / "controlplane", binaries, fake_nodes=0, address=slot.host_ip)
        stack.callback(plane.stop)
        plane.start(progress=progress)
        cluster = Cluster(plane.kubeconfig, str(binaries / "kubectl"), plane)
        node.start_runtime()
        import_images("ctr", node.paths.containerd_socket, archives, progress)
        node.start_kubelet(plane, progress)
        cluster.install_third_party_crds(gateway_api=GATEWAY_API)
        for manifest in class_manifests():  # IngressClasses traefik and nginx, GatewayClass
            plane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(manifest))
        provisioner = LocalProvisioner(plane.kubeconfig, node.paths.volumes)
        provisioner.start()
        stack.callback(provisioner.stop)
        traefik = Traefik(
            lab_binaries / "traefik", plane.kubeconfig, workdir / "traefik", slot.host_ip,
            extra_web=extra_web,
        )  # fmt: skip
        stack.callback(traefik.stop)
        traefik.start(progress)
        s3 = S3Server(lab_binaries / "versitygw", workdir / "s3", slot.host_ip)
        stack.callback(s3.stop)
        s3.start(progress)
        postgres = PostgresServer(workdir / "postgres", slot.host_ip)
        stack.callback(postgres.stop)
        postgres.start(progress)
        progress(f"lab up in {time.monotonic() - started:.0f} s")
        yield Lab(slot, cluster, node, traefik, s3, postgres)
