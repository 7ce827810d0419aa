"""Who starts MLflow, and how: the rule, the command line and the Pod around it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver.mlflow import (
    DEFAULT_MLFLOW_IMAGE,
    ServerCommand,
    ServerPlan,
    allowed_hosts,
    image_repository,
    needs_migration,
    server_args,
    server_command,
)
from experiment_operator.trackingserver.url import ServerURL
from experiment_operator.trackingserver.workload import container_env, deployment

Sample = Callable[..., TrackingServer]
LAB_IMAGE = "localhost/experiment-lab/mlflow:3.17.2"

RULE = [
    # (spec image, spec serverCommand, operator image) -> command
    (None, None, DEFAULT_MLFLOW_IMAGE, ServerCommand.OPERATOR),
    ("", None, DEFAULT_MLFLOW_IMAGE, ServerCommand.OPERATOR),
    ("mlflow:aiscope", None, DEFAULT_MLFLOW_IMAGE, ServerCommand.IMAGE),  # the seed's
    ("ghcr.io/mlflow/mlflow:v2.19.0", None, DEFAULT_MLFLOW_IMAGE, ServerCommand.OPERATOR),
    ("ghcr.io/mlflow/mlflow@sha256:" + "a" * 64, None, LAB_IMAGE, ServerCommand.OPERATOR),
    ("localhost/experiment-lab/mlflow:3.18.0", None, LAB_IMAGE, ServerCommand.OPERATOR),
    ("localhost/experiment-lab/mlflow:3.18.0", None, DEFAULT_MLFLOW_IMAGE, ServerCommand.IMAGE),
    ("registry.example:5000/team/mlflow:1", "Operator", LAB_IMAGE, ServerCommand.OPERATOR),
    ("ghcr.io/mlflow/mlflow:v3.17.2", "Image", LAB_IMAGE, ServerCommand.IMAGE),
]


@pytest.mark.parametrize(("image", "explicit", "default", "expected"), RULE)
def test_who_starts_mlflow(
    sample: Sample, image: str | None, explicit: str | None, default: str, expected: ServerCommand
) -> None:
    ts = sample("blog", image=image, serverCommand=explicit)
    assert server_command(ts.spec, default) is expected


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("mlflow:aiscope", "mlflow"),
        ("registry.example:5000/team/mlflow:1", "registry.example:5000/team/mlflow"),
        ("registry.example:5000/team/mlflow", "registry.example:5000/team/mlflow"),
        ("ghcr.io/mlflow/mlflow:v3@sha256:abc", "ghcr.io/mlflow/mlflow"),
    ],
)
def test_image_repository(image: str, repository: str) -> None:
    assert image_repository(image) == repository


def test_default_image_when_none_is_set(sample: Sample) -> None:
    plan = ServerPlan.of(sample("blog", image=None), LAB_IMAGE)
    assert plan.image == LAB_IMAGE
    assert plan.serves_prefix


def test_command_line_without_prefix_and_without_serving_artifacts() -> None:
    args = server_args(ServerURL.parse("http://h.example"), serve_artifacts=False)
    assert args == [
        "mlflow",
        "server",
        "--no-serve-artifacts",
        "--default-artifact-root=$(ARTIFACT_ROOT)",
        "--host=0.0.0.0",
        "--port=5000",
        "--workers=$(MLFLOW_WORKERS)",
        "--allowed-hosts=$(MLFLOW_SERVER_ALLOWED_HOSTS)",
        "--cors-allowed-origins=$(MLFLOW_SERVER_CORS_ALLOWED_ORIGINS)",
    ]


def test_allowed_hosts_cover_the_url_the_service_and_the_probes() -> None:
    hosts = allowed_hosts(ServerURL.parse("https://m.example:8443/a"), "ts", "team")
    for needed in ("m.example", "m.example:*", "ts", "ts:*", "ts.team.svc:*", "ts.team.svc.*"):
        assert needed in hosts
    assert "localhost" in hosts  # the probes' Host header
    assert allowed_hosts(ServerURL.parse("https://m.example"), "ts", None)[:4] == [
        "m.example",
        "m.example:*",
        "ts",
        "ts:*",
    ]


@pytest.mark.parametrize(
    ("uri", "on_volume", "migrate"),
    [
        ("sqlite:////mlflow/mlflow.db", True, True),
        ("sqlite:////mlflow/mlflow.db", False, False),  # an emptyDir: new with every Pod
        ("postgresql+psycopg2://u@db/m", False, True),
        ("mysql://u@db/m", True, True),
        ("mssql+pyodbc://u@db/m", False, True),
        ("file:///mlflow/mlruns", True, False),
    ],
)
def test_migrations_only_for_databases_that_outlive_the_pod(
    uri: str, on_volume: bool, migrate: bool
) -> None:
    assert needs_migration(uri, on_volume=on_volume) is migrate


def pod(ts: TrackingServer, image: str = DEFAULT_MLFLOW_IMAGE) -> dict[str, Any]:
    spec: dict[str, Any] = deployment(ts, ServerPlan.of(ts, image))["spec"]["template"]["spec"]
    return spec


def test_the_seed_contract_keeps_the_images_command(sample: Sample) -> None:
    spec = pod(sample("repo"))
    [container] = spec["containers"]
    assert "command" not in container
    assert "args" not in container
    assert "initContainers" not in spec
    assert "readOnlyRootFilesystem" not in container["securityContext"]
    assert "runAsNonRoot" not in spec["securityContext"]
    assert container["volumeMounts"] == [
        {"name": "trackingserver-sqllite-data", "mountPath": "/mlflow"}
    ]
    assert "tcpSocket" in container["readinessProbe"]
    names = [e["name"] for e in container["env"]]
    assert names[:2] == ["MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL"]
    assert {"BACKEND_URI", "ARTIFACT_ROOT", "MLFLOW_SERVER_ALLOWED_HOSTS"} <= set(names)


def test_operator_started_server_is_restricted(sample: Sample) -> None:
    ts = sample(
        "blog",
        image=None,
        url="https://m.example/team-a",
        volumeSize="1Gi",
        storageClassName="standard",
    )
    spec = pod(ts)
    [container], [migration] = spec["containers"], spec["initContainers"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in (container, migration):
        assert c["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        }
        assert {m["mountPath"] for m in c["volumeMounts"]} == {"/mlflow", "/tmp"}
    assert migration["command"][:2] == ["python", "-c"]
    assert 'upgrade.main([uri], prog_name="mlflow db upgrade")' in migration["command"][2]
    assert "$(" not in " ".join(migration["command"]), "the URI stays in the environment"
    assert container["readinessProbe"]["httpGet"]["path"] == "/team-a/health"
    assert "--static-prefix=/team-a" in container["command"]


def test_an_sqlite_file_in_an_emptydir_needs_no_migration(sample: Sample) -> None:
    """Without the volume every Pod starts with a new SQLite file: no init container."""
    spec = pod(sample("blog", image=None, backend_uri="sqlite:////mlflow/mlflow.db"))
    assert "initContainers" not in spec
    assert {"name": "trackingserver-sqllite-data", "emptyDir": {}} in spec["volumes"]


@pytest.mark.parametrize("image", [None, "mlflow:aiscope"])
def test_the_server_trusts_the_proxys_scheme_in_both_ways(
    sample: Sample, image: str | None
) -> None:
    """Behind a TLS-terminating proxy, MLflow's own redirects (`/team-a` -> `/team-a/`) must
    keep https: uvicorn and gunicorn read the trusted proxies from FORWARDED_ALLOW_IPS."""
    ts = sample("blog", image=image)
    env = container_env(ts, ServerPlan.of(ts, DEFAULT_MLFLOW_IMAGE))
    assert {"name": "FORWARDED_ALLOW_IPS", "value": "*"} in env


def test_the_backend_store_uri_is_on_no_command_line(sample: Sample) -> None:
    """The kubelet expands `$(NAME)` into the arguments, which `ps` on the node shows: the
    database password reaches MLflow through its own environment variable instead."""
    spec = pod(sample("blog", image=None, backend_uri="postgresql://u:secret@db:5432/mlflow"))
    for container in (*spec["containers"], *spec["initContainers"]):
        assert not any("$(BACKEND_URI)" in a or "secret" in a for a in container["command"])
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"] == {
        "name": "MLFLOW_BACKEND_STORE_URI",
        "value": "$(BACKEND_URI)",
    }
    assert "valueFrom" in env["BACKEND_URI"]
    names = list(env)
    assert names.index("BACKEND_URI") < names.index("MLFLOW_BACKEND_STORE_URI"), (
        "a reference expands only to variables defined before it"
    )


def test_users_env_replaces_the_operators_by_name(sample: Sample) -> None:
    ts = sample(
        "blog",
        image=None,
        env=[
            {"name": "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "value": "true"},
            {"name": "EXTRA", "value": "1"},
        ],
    )
    env = container_env(ts, ServerPlan.of(ts, DEFAULT_MLFLOW_IMAGE))
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), "duplicate names break server-side apply"
    values = {e["name"]: e.get("value") for e in env}
    assert values["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"
    assert names[-1] == "EXTRA"


def test_pod_labels_and_annotations_never_replace_the_operators(sample: Sample) -> None:
    ts = sample(
        "blog",
        podLabels={"team": "a"},
        podAnnotations={"experiment.aiscope/s3-credentials-version": "mine", "x": "y"},
    )
    template = deployment(ts, ServerPlan.of(ts, DEFAULT_MLFLOW_IMAGE), credentials_version="7")[
        "spec"
    ]["template"]
    assert template["metadata"]["labels"]["team"] == "a"
    assert template["metadata"]["labels"]["ts_name"] == "trackingserver"
    assert template["metadata"]["annotations"] == {
        "experiment.aiscope/s3-credentials-version": "7",
        "x": "y",
    }


def test_service_account_gets_its_token_only_when_named(sample: Sample) -> None:
    assert pod(sample("blog"))["automountServiceAccountToken"] is False
    named = pod(sample("blog", serviceAccountName="mlflow-s3"))
    assert named["serviceAccountName"] == "mlflow-s3"
    assert "automountServiceAccountToken" not in named
