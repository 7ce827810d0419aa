"""The PersistentVolumeClaim for MLflow's local data (e.g. its SQLite database)."""

from __future__ import annotations

from typing import Any

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver.labels import child_metadata

VOLUME_NAME = "trackingserver-sqllite-data"
"""The volume's name in the pod spec, spelled as the seed spelled it."""
MOUNT_PATH = "/mlflow"


def persistent_volume_claim(ts: TrackingServer) -> dict[str, Any] | None:
    """The PVC named after the CR, or None unless both volumeSize and storageClassName are set.

    ReadWriteOnce as the seed; therefore the Deployment switches to the Recreate strategy.
    """
    spec = ts.spec
    if not spec.volume_enabled:
        return None
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": child_metadata(ts),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": spec.storage_class_name,
            "resources": {"requests": {"storage": spec.volume_size}},
        },
    }


def volume(ts: TrackingServer) -> dict[str, Any]:
    """The pod volume referencing the claim."""
    return {"name": VOLUME_NAME, "persistentVolumeClaim": {"claimName": ts.metadata.name}}


def volume_mount() -> dict[str, Any]:
    """The container's mount of the claim at /mlflow."""
    return {"name": VOLUME_NAME, "mountPath": MOUNT_PATH}
