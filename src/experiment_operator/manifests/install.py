"""The objects `kubectl apply -k config/default` installs, built in Python.

`config/rbac` and `config/manager` are written from these functions, so `experiment-operator
manifests` can print exactly what `config/default` holds without kustomize, and a test compares
the two. The Helm chart is the configurable install; this is the plain one.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from experiment_operator import rbac
from experiment_operator.api.crd import crd
from experiment_operator.trackingserver.mlflow import DEFAULT_MLFLOW_IMAGE

Obj = dict[str, Any]

NAME = "experiment-operator"
NAMESPACE = f"{NAME}-system"
NAMES = rbac.RbacNames.with_prefix(f"{NAME}-")
DEPLOYMENT = f"{NAME}-controller-manager"
METRICS_SERVICE = f"{DEPLOYMENT}-metrics-service"
IMAGE_REPOSITORY = NAME
RUN_AS_USER = 65532
"""The image's numeric non-root user (distroless's `nonroot`), so runAsNonRoot can be verified."""
METRICS_PORT = 8080
PROBE_PORT = 8081
ENV_PREFIX = "EXPERIMENT_OPERATOR_"

LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/managed-by": "kustomize"}
# Not `app.kubernetes.io/managed-by: experiment-operator`: that label selects the operator's own
# children, and its own Deployment must never be one.
SELECTOR = {"app.kubernetes.io/name": NAME, "control-plane": "controller-manager"}


def image() -> str:
    """The default image reference: the locally built image of this version."""
    return f"{IMAGE_REPOSITORY}:{version('experiment-operator')}"


def namespace() -> Obj:
    """The operator's namespace, enforcing the restricted Pod Security Standard."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {
                **LABELS,
                "control-plane": "controller-manager",
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }


def rbac_objects() -> list[Obj]:
    return rbac.operator_rbac(NAMES, NAMESPACE, labels=LABELS)


def pod_security_context() -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


POD_FIELDS = (
    ("LEADER_ELECTION_NAMESPACE", "namespace"),
    ("LEADER_ELECTION_IDENTITY", "name"),
    ("POD_UID", "uid"),
)
"""Options set from the Pod (downward API): the Lease lives in the operator's namespace, names
the Pod, and a restarted container of the same Pod (same UID) takes it back at once."""


def deployment(image_ref: str | None = None) -> Obj:
    """One replica with leader election (scale up safely), restricted Pod Security settings."""
    probe = {"httpGet": {"path": "/healthz", "port": "health"}}
    container = {
        "name": "manager",
        "image": image_ref or image(),
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "--leader-elect",
            f"--metrics-bind-address=:{METRICS_PORT}",
            f"--health-probe-bind-address=:{PROBE_PORT}",
            # Spelled out so a kustomize patch can point it at a mirror or a local build, and
            # choose the routing (docs/routing.md; gateway mode adds --gateway-name=...).
            f"--mlflow-image={DEFAULT_MLFLOW_IMAGE}",
            "--ingress-controller=auto",
        ],
        "env": [
            {
                "name": f"{ENV_PREFIX}{name}",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.{field}"}},
            }
            for name, field in POD_FIELDS
        ],
        "ports": [
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
            {"name": "health", "containerPort": PROBE_PORT, "protocol": "TCP"},
        ],
        "livenessProbe": {**probe, "initialDelaySeconds": 15, "periodSeconds": 20},
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "health"},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
        },
        "resources": {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE, "labels": {**LABELS, **SELECTOR}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": SELECTOR},
            "template": {
                "metadata": {
                    "labels": {**LABELS, **SELECTOR},
                    "annotations": {"kubectl.kubernetes.io/default-container": "manager"},
                },
                "spec": {
                    "serviceAccountName": NAMES.account,
                    "securityContext": pod_security_context(),
                    "terminationGracePeriodSeconds": 10,
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }


def metrics_service() -> Obj:
    """Prometheus scrapes `/metrics` here (plain HTTP; see docs/security.md)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": METRICS_SERVICE, "namespace": NAMESPACE, "labels": LABELS},
        "spec": {
            "selector": SELECTOR,
            "ports": [
                {"name": "http-metrics", "port": METRICS_PORT, "targetPort": "metrics"},
            ],
        },
    }


def install_objects(image_ref: str | None = None) -> list[Obj]:
    """Everything `config/default` installs: CRD, Namespace, RBAC, Deployment, metrics Service."""
    return [crd(), namespace(), *rbac_objects(), deployment(image_ref), metrics_service()]
