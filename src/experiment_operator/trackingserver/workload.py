"""The Deployment and Service, built as the seed built them (plus credentials via Secrets)."""

from __future__ import annotations

from typing import Any

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver.labels import (
    backend_store_secret_name,
    child_labels,
    child_metadata,
    selector_labels,
)
from experiment_operator.trackingserver.secrets import (
    BACKEND_URI_KEY,
    backend_uri_has_password,
    credentials_source,
)
from experiment_operator.trackingserver.storage import volume, volume_mount

CONTAINER_NAME = "mlflow"
PORT = 5000
PORT_NAME = "server"
CREDENTIALS_VERSION_ANNOTATION = "experiment.aiscope/s3-credentials-version"
"""Pod-template annotation carrying the credentials Secret's resourceVersion, so that pods roll
when the Secret changes (environment variables are only read at container start)."""
BACKEND_STORE_VERSION_ANNOTATION = "experiment.aiscope/backend-store-version"
"""The same for the owned backend store Secret (a `backend_uri` with a password)."""

# Kubernetes' own defaults, owned explicitly so that server-side apply removes them when the
# strategy switches to Recreate (which forbids a rollingUpdate block).
_ROLLING_UPDATE = {
    "type": "RollingUpdate",
    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
}


def _env(ts: TrackingServer) -> list[dict[str, Any]]:
    """The seed's environment, in the seed's order, with credentials through secretKeyRef."""
    spec = ts.spec
    env: list[dict[str, Any]] = [
        {"name": "MLFLOW_TRACKING_URI", "value": spec.url},
        {"name": "MLFLOW_S3_ENDPOINT_URL", "value": spec.s3_endpoint_url},
    ]
    source = credentials_source(ts)
    if source is not None:
        for name, key in (
            ("AWS_ACCESS_KEY_ID", source.access_key_id_key),
            ("AWS_SECRET_ACCESS_KEY", source.secret_access_key_key),
        ):
            ref = {"name": source.secret_name, "key": key}
            env.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
    env.append({"name": "ARTIFACT_ROOT", "value": spec.artifact_root})
    if backend_uri_has_password(ts):
        ref = {"name": backend_store_secret_name(ts.metadata.name), "key": BACKEND_URI_KEY}
        env.append({"name": "BACKEND_URI", "valueFrom": {"secretKeyRef": ref}})
    else:
        env.append({"name": "BACKEND_URI", "value": spec.backend_uri.get_secret_value()})
    return env


def deployment(
    ts: TrackingServer,
    *,
    credentials_version: str | None = None,
    backend_store_version: str | None = None,
) -> dict[str, Any]:
    """The MLflow Deployment named after the CR.

    `credentials_version` is the resourceVersion of the Secret the credentials come from (ours
    or the user's), when known; it goes into a pod-template annotation so pods roll when it
    changes. `backend_store_version` does the same for the backend store Secret. Never a hash
    of the credentials: that would leak a verifier of the password.
    """
    name = ts.metadata.name
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": ts.spec.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}],
        "env": _env(ts),
    }
    pod_spec: dict[str, Any] = {"containers": [container]}
    if ts.spec.volume_enabled:
        container["volumeMounts"] = [volume_mount()]
        pod_spec["volumes"] = [volume(ts)]
    template_meta: dict[str, Any] = {"labels": child_labels(name)}
    annotations: dict[str, str] = {}
    if credentials_version is not None and credentials_source(ts) is not None:
        annotations[CREDENTIALS_VERSION_ANNOTATION] = credentials_version
    if backend_store_version is not None and backend_uri_has_password(ts):
        annotations[BACKEND_STORE_VERSION_ANNOTATION] = backend_store_version
    if annotations:
        template_meta["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(ts),
        "spec": {
            "replicas": ts.spec.size,
            "selector": {"matchLabels": selector_labels(name)},
            # A ReadWriteOnce volume cannot be mounted by the old and the new pod at once.
            "strategy": {"type": "Recreate"} if ts.spec.volume_enabled else _ROLLING_UPDATE,
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def service(ts: TrackingServer) -> dict[str, Any]:
    """The ClusterIP Service on port 5000 (`server`), selecting exactly the seed's labels."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(ts),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(ts.metadata.name),
            "ports": [{"name": PORT_NAME, "port": PORT, "targetPort": PORT, "protocol": "TCP"}],
        },
    }
