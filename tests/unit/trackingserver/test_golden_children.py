"""Golden YAML of every child for representative specs; core kinds validated against 1.35.

Regenerate with `UPDATE_GOLDEN=1 pytest tests/unit/trackingserver`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver.children import (
    ChildOptions,
    IngressController,
    build_children,
)
from experiment_operator.trackingserver.gateway import ParentGateway

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "trackingserver"
CORE_API_VERSIONS = {"v1", "apps/v1", "networking.k8s.io/v1"}
SECRET_REF = {"aws_access_key": None, "aws_secret_key": None}
NO_TLS = {"cert": None, "key": None}


@dataclass(frozen=True)
class Scenario:
    id: str
    sample: str
    spec: dict[str, Any]
    options: ChildOptions
    tls_secret_present: bool
    credentials_version: str | None = None
    backend_store_version: str | None = None
    expected_kinds: list[str] = field(default_factory=list)


TRAEFIK_LEGACY = ChildOptions(traefik_group="traefik.containo.us")
NGINX = ChildOptions(ingress_controller=IngressController.NGINX)
GATEWAY = ChildOptions(
    ingress_controller=IngressController.GATEWAY,
    gateway=ParentGateway("public", "gateway-system", "web"),
)
GATEWAY_LISTENER_SETS = replace(GATEWAY, listener_sets=True, gateway_https_port=8443)

OPERATOR_POD_FIELDS = {
    "image": "ghcr.io/mlflow/mlflow:v3.17.2",
    "env": [
        {"name": "MLFLOW_WORKERS", "value": "2"},
        {"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"},
        {"name": "DB_TOKEN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "token"}}},
    ],
    "envFrom": [{"configMapRef": {"name": "mlflow-settings"}}],
    "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    "nodeSelector": {"node-role.example.com/ml": "true"},
    "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"ts_name": "trackingserver"}},
                    },
                }
            ]
        }
    },
    "podLabels": {"team": "a"},
    "podAnnotations": {"prometheus.io/scrape": "false"},
    "serviceAccountName": "mlflow-s3",
    "imagePullSecrets": [{"name": "registry"}],
}

SCENARIOS = [
    Scenario(
        "blog-traefik-tls-path",
        "blog",
        {},
        ChildOptions(),
        tls_secret_present=True,
        credentials_version="4711",
    ),
    Scenario("repo-traefik-legacy-pvc", "repo", {}, TRAEFIK_LEGACY, tls_secret_present=True),
    Scenario("blog-nginx-tls-path", "blog", {}, NGINX, tls_secret_present=True),
    Scenario(
        "nopath-notls-secretref-nginx-default-class",
        "blog",
        {
            **SECRET_REF,
            **NO_TLS,
            "url": "http://mlflow.example.com",
            "s3CredentialsSecretRef": {"name": "mlflow-s3", "accessKeyIDKey": "id"},
        },
        ChildOptions(ingress_controller=IngressController.NGINX, nginx_ingress_class=None),
        tls_secret_present=False,
        credentials_version="99",
    ),
    Scenario(
        "nopath-notls-nocredentials-traefik",
        "blog",
        {**NO_TLS, "aws_access_key": "", "aws_secret_key": "", "url": "http://mlflow.example.com/"},
        ChildOptions(),
        tls_secret_present=False,
    ),
    Scenario(
        "user-tls-secret-traefik",
        "blog",
        {**NO_TLS, **SECRET_REF, "s3CredentialsSecretRef": {"name": "mlflow-s3"}},
        ChildOptions(),
        tls_secret_present=True,
    ),
    Scenario(
        "postgres-backend-store-traefik",
        "blog",
        {"backend_uri": "postgresql://mlflow:s3cr3t@db.example/mlflow"},
        ChildOptions(),
        tls_secret_present=True,
        credentials_version="4711",
        backend_store_version="4712",
    ),
    Scenario(
        "operator-prefix-postgres-serve-artifacts-traefik",
        "blog",
        {
            **SECRET_REF,
            "image": None,
            "s3CredentialsSecretRef": {"name": "mlflow-s3"},
            "url": "https://mlflow.example.com/team-a",
            "backend_uri": "postgresql://mlflow:s3cr3t@db.example/mlflow",
            "serveArtifacts": True,
        },
        ChildOptions(),
        tls_secret_present=True,
        credentials_version="4711",
        backend_store_version="4712",
    ),
    Scenario(
        "operator-root-sqlite-pvc-nginx",
        "repo",
        {"image": "", "url": "http://mlflow.example.com:8080"},
        NGINX,
        tls_secret_present=False,
    ),
    Scenario(
        "operator-prefix-nginx",
        "blog",
        {"image": None, "url": "https://mlflow.example.com/ml/team-b/"},
        NGINX,
        tls_secret_present=True,
    ),
    Scenario(
        "operator-pod-fields-file-store",
        "blog",
        {**NO_TLS, **OPERATOR_POD_FIELDS, "backend_uri": "file:///mlflow/mlruns"},
        ChildOptions(ingress_controller=IngressController.NONE),
        tls_secret_present=False,
    ),
    Scenario("blog-gateway-tls-listenerset", "blog", {}, GATEWAY_LISTENER_SETS, True),
    Scenario("blog-gateway-tls-no-listenerset", "blog", {}, GATEWAY, tls_secret_present=True),
    Scenario(
        "operator-prefix-gateway-notls",
        "blog",
        {**NO_TLS, "image": None, "url": "http://mlflow.example.com/ml/team-b/"},
        GATEWAY_LISTENER_SETS,
        tls_secret_present=False,
    ),
    Scenario(
        "nopath-gateway-gatewayref",
        "blog",
        {"url": "https://mlflow.example.com", "gatewayRef": {"name": "tenants"}},
        GATEWAY_LISTENER_SETS,
        tls_secret_present=True,
    ),
    Scenario(
        "repo-none-retain",
        "repo",
        {"volumeRetentionPolicy": "Retain"},
        ChildOptions(ingress_controller=IngressController.NONE),
        tls_secret_present=True,
    ),
]


def children_of(scenario: Scenario, sample: Callable[..., TrackingServer]) -> list[dict[str, Any]]:
    ts = sample(scenario.sample, **scenario.spec)
    return build_children(
        ts,
        scenario.options,
        tls_secret_present=scenario.tls_secret_present,
        credentials_version=scenario.credentials_version,
        backend_store_version=scenario.backend_store_version,
    )


def file_name(child: dict[str, Any]) -> str:
    group = child["apiVersion"].split("/")[0] if "/" in child["apiVersion"] else "core"
    return f"{group}-{child['kind'].lower()}-{child['metadata']['name']}.yaml"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_children_match_golden(scenario: Scenario, sample: Callable[..., TrackingServer]) -> None:
    children = children_of(scenario, sample)
    directory = GOLDEN / scenario.id
    expected = {file_name(c): yaml.safe_dump(c, sort_keys=False) for c in children}
    if os.environ.get("UPDATE_GOLDEN"):
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("*.yaml"):
            old.unlink()
        for name, text in expected.items():
            (directory / name).write_text(text)
    actual = {p.name: p.read_text() for p in sorted(directory.glob("*.yaml"))}
    assert sorted(actual) == sorted(expected), "children differ; UPDATE_GOLDEN=1 to accept"
    for name, text in expected.items():
        assert actual[name] == text, f"{scenario.id}/{name} differs; UPDATE_GOLDEN=1 to accept"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_core_children_are_valid_kubernetes(
    scenario: Scenario, sample: Callable[..., TrackingServer]
) -> None:
    for child in children_of(scenario, sample):
        if child["apiVersion"] in CORE_API_VERSIONS:
            kubernetes_validate.validate(child, "1.35", strict=True)
