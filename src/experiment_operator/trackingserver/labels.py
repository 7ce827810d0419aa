"""Names, labels and the common metadata every child of a TrackingServer carries."""

from __future__ import annotations

from typing import Any

from experiment_operator.api.trackingserver import API_VERSION, KIND, TrackingServer

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "experiment-operator"
MANAGED_BY_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
INSTANCE_LABEL = "app.kubernetes.io/instance"
"""Label selector for the operator's child informers: they only stream objects we manage."""

CREDENTIALS_SUFFIX = "-s3-credentials"
BACKEND_STORE_SUFFIX = "-backend-store"
UNPREFIXED_INGRESS_SUFFIX = "-static"
REDIRECT_SUFFIX = "-redirect"


def selector_labels(name: str) -> dict[str, str]:
    """The seed's labels: the Deployment selector and Service selector, exactly as the seed.

    Selectors are immutable, so Deployments made by the original controller can only be taken
    over in place if these stay the same.
    """
    return {"app": "trackingserver", "ts_name": name}


def child_labels(name: str) -> dict[str, str]:
    """Labels on every child: the seed's plus the recommended app.kubernetes.io ones."""
    return {
        **selector_labels(name),
        "app.kubernetes.io/name": "mlflow",
        INSTANCE_LABEL: name,
        MANAGED_BY_LABEL: MANAGED_BY,
    }


def owner_reference(ts: TrackingServer) -> dict[str, Any]:
    """Controller ownerReference to the TrackingServer, so the garbage collector cascades."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": ts.metadata.name,
        "uid": ts.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(ts: TrackingServer, name: str | None = None) -> dict[str, Any]:
    """Metadata of a child: name (the CR's by default), namespace, labels, owner reference.

    Without a UID (a CR read from a file by `render`) no owner reference can be made, so none
    is written.
    """
    meta: dict[str, Any] = {"name": name or ts.metadata.name}
    if ts.metadata.namespace:
        meta["namespace"] = ts.metadata.namespace
    meta["labels"] = child_labels(ts.metadata.name)
    if ts.metadata.uid:
        meta["ownerReferences"] = [owner_reference(ts)]
    return meta


def credentials_secret_name(name: str) -> str:
    """Name of the owned Secret holding the plaintext spec credentials."""
    return f"{name}{CREDENTIALS_SUFFIX}"


def backend_store_secret_name(name: str) -> str:
    """Name of the owned Secret holding a backend store URI that embeds a password."""
    return f"{name}{BACKEND_STORE_SUFFIX}"


def unprefixed_ingress_name(name: str) -> str:
    """Name of the nginx Ingress serving `/static-files` and `/ajax-api` without rewriting."""
    return f"{name}{UNPREFIXED_INGRESS_SUFFIX}"


def redirect_name(name: str) -> str:
    """Name of the routing object redirecting `<path>` to `<path>/` (stripped routing)."""
    return f"{name}{REDIRECT_SUFFIX}"
