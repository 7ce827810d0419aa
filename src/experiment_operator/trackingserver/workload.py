"""The Deployment and Service of the MLflow server.

The seed's Deployment (its labels, env contract and volume) with what a production server needs:
the operator's `mlflow server` command and a migration init container when the operator starts
MLflow (`mlflow.ServerCommand`), probes, resources, Pod Security `restricted`, graceful
shutdown, and the Pod fields users set (env, scheduling, ServiceAccount, pull Secrets).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver import mlflow
from experiment_operator.trackingserver.labels import (
    backend_store_secret_name,
    child_labels,
    child_metadata,
    selector_labels,
)
from experiment_operator.trackingserver.mlflow import ServerCommand, ServerPlan
from experiment_operator.trackingserver.secrets import (
    BACKEND_URI_KEY,
    backend_uri_has_password,
    credentials_source,
)
from experiment_operator.trackingserver.storage import VOLUME_NAME, volume, volume_mount

CONTAINER_NAME = "mlflow"
MIGRATION_CONTAINER_NAME = "db-upgrade"
PORT = mlflow.PORT
PORT_NAME = "server"
SCRATCH_VOLUME = "scratch"
RUN_AS_ID = 1000
"""Non-root user and group of operator-started servers (the official image runs as root)."""
TERMINATION_GRACE_SECONDS = 30
PRE_STOP_SLEEP_SECONDS = 5
"""Keep serving while the proxies drop the Pod from their endpoints, then stop gracefully."""
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


def _seed_env(ts: TrackingServer) -> list[dict[str, Any]]:
    """The seed's environment, in the seed's order, with credentials through secretKeyRef."""
    spec = ts.spec
    env: list[dict[str, Any]] = [{"name": "MLFLOW_TRACKING_URI", "value": spec.url}]
    if spec.s3_endpoint_url:
        env.append({"name": "MLFLOW_S3_ENDPOINT_URL", "value": spec.s3_endpoint_url})
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


def container_env(ts: TrackingServer, plan: ServerPlan) -> list[dict[str, Any]]:
    """The seed's variables, MLflow's settings, then the user's `env` (replacing by name)."""
    env = _seed_env(ts)
    env += mlflow.settings_env(plan.url, ts.metadata.name, ts.metadata.namespace)
    if plan.command is ServerCommand.OPERATOR:
        env += mlflow.operator_env()
    index = {e["name"]: i for i, e in enumerate(env)}
    for entry in ts.spec.env or []:
        if entry.get("name") in index:
            env[index[entry["name"]]] = entry
        else:
            env.append(entry)
    return env


def _security(command: ServerCommand) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pod and container securityContext. Operator-started servers meet Pod Security
    `restricted` with a read-only root filesystem. An image's own command keeps the image's
    user and writable filesystem (the seed's image runs as root and writes /mlflow), with
    everything else locked down."""
    pod: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    container: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    if command is ServerCommand.OPERATOR:
        pod = {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_ID,
            "runAsGroup": RUN_AS_ID,
            "fsGroup": RUN_AS_ID,
            "fsGroupChangePolicy": "OnRootMismatch",
            **pod,
        }
        container["readOnlyRootFilesystem"] = True
    return pod, container


def _volumes(ts: TrackingServer, command: ServerCommand) -> tuple[list[Any], list[Any]]:
    """Pod volumes and container mounts. An operator-started server writes only to volumes:
    /mlflow (the PVC, else an emptyDir, where the seed's image kept its SQLite file) and /tmp."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if ts.spec.volume_enabled:
        volumes.append(volume(ts))
        mounts.append(volume_mount())
    elif command is ServerCommand.OPERATOR:
        volumes.append({"name": VOLUME_NAME, "emptyDir": {}})
        mounts.append(volume_mount())
    if command is ServerCommand.OPERATOR:
        volumes.append({"name": SCRATCH_VOLUME, "emptyDir": {}})
        mounts.append({"name": SCRATCH_VOLUME, "mountPath": mlflow.SCRATCH_DIR})
    return volumes, mounts


def _containers(ts: TrackingServer, plan: ServerPlan) -> tuple[dict[str, Any], list[Any]]:
    """The MLflow container and the init containers (the migration, when there is one)."""
    spec = ts.spec
    operator = plan.command is ServerCommand.OPERATOR
    _, security = _security(plan.command)
    _, mounts = _volumes(ts, plan.command)
    head: dict[str, Any] = {"image": plan.image, "imagePullPolicy": "IfNotPresent"}
    if operator:
        head["workingDir"] = mlflow.DATA_DIR
    tail: dict[str, Any] = {"env": container_env(ts, plan)}
    if spec.env_from:
        tail["envFrom"] = spec.env_from
    tail["resources"] = spec.resources if spec.resources is not None else mlflow.DEFAULT_RESOURCES
    tail["securityContext"] = security
    if mounts:
        tail["volumeMounts"] = mounts
    tail["terminationMessagePolicy"] = "FallbackToLogsOnError"
    server: dict[str, Any] = {"name": CONTAINER_NAME, **head}
    if operator:
        server["command"] = mlflow.server_args(plan.url, serve_artifacts=bool(spec.serve_artifacts))
    server["ports"] = [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}]
    server.update(tail)
    server.update(mlflow.probes(plan.url, plan.command))
    server["lifecycle"] = {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_SECONDS}}}
    init: list[dict[str, Any]] = []
    backend_uri = spec.backend_uri.get_secret_value()
    if operator and mlflow.needs_migration(backend_uri, on_volume=spec.volume_enabled):
        migration = {"name": MIGRATION_CONTAINER_NAME, **head, "command": mlflow.migration_args()}
        init.append(copy.deepcopy({**migration, **tail}))
    return server, init


def _pod_spec(ts: TrackingServer, plan: ServerPlan) -> dict[str, Any]:
    spec = ts.spec
    server, init = _containers(ts, plan)
    pod_security, _ = _security(plan.command)
    volumes, _ = _volumes(ts, plan.command)
    pod: dict[str, Any] = {}
    if init:
        pod["initContainers"] = init
    pod["containers"] = [server]
    if volumes:
        pod["volumes"] = volumes
    pod["securityContext"] = pod_security
    pod["terminationGracePeriodSeconds"] = TERMINATION_GRACE_SECONDS
    pod["enableServiceLinks"] = False  # a Service named mlflow would set MLFLOW_PORT=tcp://...
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    else:
        pod["automountServiceAccountToken"] = False
    for key, value in (
        ("imagePullSecrets", spec.image_pull_secrets),
        ("nodeSelector", spec.node_selector),
        ("tolerations", spec.tolerations),
        ("affinity", spec.affinity),
    ):
        if value:
            pod[key] = value
    return pod


def deployment(
    ts: TrackingServer,
    plan: ServerPlan,
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
    template_meta: dict[str, Any] = {"labels": {**(ts.spec.pod_labels or {}), **child_labels(name)}}
    annotations: dict[str, str] = dict(ts.spec.pod_annotations or {})
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
            "template": {"metadata": template_meta, "spec": _pod_spec(ts, plan)},
        },
    }


def _versioned_secrets(ts: TrackingServer) -> dict[str, str]:
    """`deployment`'s version keywords → the owned Secret each takes the resourceVersion of."""
    names = {"backend_store_version": backend_store_secret_name(ts.metadata.name)}
    source = credentials_source(ts)
    if source is not None and source.owned:
        names["credentials_version"] = source.secret_name
    return names


def deployment_reads(child: Mapping[str, Any], ts: TrackingServer) -> bool:
    """Whether the Deployment depends on `child` (applied before it): the claim it mounts, or
    an owned Secret whose resourceVersion its pod template carries."""
    kind, name = child["kind"], child["metadata"]["name"]
    return kind == "PersistentVolumeClaim" or (
        kind == "Secret" and name in _versioned_secrets(ts).values()
    )


def deployment_versions(
    ts: TrackingServer, live: Callable[[str], Mapping[str, Any] | None]
) -> dict[str, str | None]:
    """`deployment`'s version keywords, from the owned Secrets `live` finds by name."""
    versions: dict[str, str | None] = {"credentials_version": None}
    for keyword, name in _versioned_secrets(ts).items():
        secret = live(name)
        versions[keyword] = None if secret is None else secret["metadata"].get("resourceVersion")
    return versions


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
