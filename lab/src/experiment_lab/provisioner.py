"""Dynamic local volumes for the node tier: the default StorageClass ``lab-local``.

The PersistentVolume controller leaves claims of an external provisioner to it; this one polls
(every second, from a thread of the lab) for pending claims of ``lab-local``, makes a directory
under the node's runtime directory and a ``local`` PersistentVolume bound to the claim, and
removes both when a released volume's policy is Delete. ``local`` volumes (unlike ``hostPath``)
get the Pod's ``fsGroup``, so MLflow writes its SQLite file as a non-root user.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from lightkube import Client, KubeConfig, codecs
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import PersistentVolume, PersistentVolumeClaim

from experiment_lab.node.slot import NODE_NAME

log = logging.getLogger(__name__)

STORAGE_CLASS = "lab-local"
PROVISIONER = "experiment-lab/local"
POLL_SECONDS = 1.0


def storage_class() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def volume_for(claim: PersistentVolumeClaim, name: str, path: Path) -> dict[str, Any]:
    """A ``local`` volume on the lab's node, pre-bound to ``claim``."""
    assert claim.metadata is not None
    assert claim.spec is not None
    requests = claim.spec.resources.requests if claim.spec.resources else None
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": (requests or {}).get("storage", "1Gi")},
            "accessModes": claim.spec.accessModes or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "local": {"path": str(path)},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": claim.metadata.namespace,
                "name": claim.metadata.name,
                "uid": claim.metadata.uid,
            },
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [NODE_NAME],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }


class LocalProvisioner:
    """Provision and delete ``lab-local`` volumes until `stop`."""

    def __init__(self, kubeconfig: Path, volumes: Path) -> None:
        self.client = Client(
            config=KubeConfig.from_file(kubeconfig), field_manager="experiment-lab"
        )
        self.volumes = volumes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lab-provisioner", daemon=True)

    def start(self) -> None:
        self.volumes.mkdir(parents=True, exist_ok=True)
        self.client.apply(codecs.from_dict(storage_class()), force=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.client.close()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.sync()
            except Exception:  # the next pass retries; the lab must not die of one error
                log.exception("local provisioner pass failed")

    def sync(self) -> None:
        """One pass: a volume for each pending claim, none left for a released one."""
        volumes = list(self.client.list(PersistentVolume))
        bound = {
            v.spec.claimRef.uid
            for v in volumes
            if v.spec is not None and v.spec.claimRef is not None
        }
        for claim in self.client.list(PersistentVolumeClaim, namespace="*"):
            assert claim.metadata is not None
            assert claim.spec is not None
            pending = claim.status is None or claim.status.phase == "Pending"
            if claim.spec.storageClassName != STORAGE_CLASS or not pending:
                continue
            if claim.metadata.uid in bound or claim.spec.volumeName:
                continue
            name = f"lab-{claim.metadata.uid}"
            path = self.volumes / name
            path.mkdir(mode=0o755, exist_ok=True)
            self.client.create(codecs.from_dict(volume_for(claim, name, path)))
            log.info(
                "provisioned %s for %s/%s", name, claim.metadata.namespace, claim.metadata.name
            )
        for volume in volumes:
            assert volume.metadata is not None
            assert volume.metadata.name is not None
            annotations = volume.metadata.annotations or {}
            released = volume.status is not None and volume.status.phase == "Released"
            policy = volume.spec.persistentVolumeReclaimPolicy if volume.spec else None
            if annotations.get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
                continue
            if released and policy == "Delete":
                shutil.rmtree(self.volumes / volume.metadata.name, ignore_errors=True)
                try:
                    self.client.delete(PersistentVolume, volume.metadata.name)
                except ApiError as err:
                    if err.status.code != 404:
                        raise
