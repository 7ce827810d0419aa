"""Behaviour of the pure builders beyond the golden files."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver.children import (
    ChildOptions,
    ChildRef,
    IngressController,
    build_children,
    possible_children,
    render,
    unwanted_children,
)
from experiment_operator.trackingserver.labels import MANAGED_BY, MANAGED_BY_LABEL
from experiment_operator.trackingserver.mlflow import DEFAULT_MLFLOW_IMAGE, ServerPlan
from experiment_operator.trackingserver.routing import nginx_ingresses
from experiment_operator.trackingserver.workload import (
    BACKEND_STORE_VERSION_ANNOTATION,
    CREDENTIALS_VERSION_ANNOTATION,
    deployment_reads,
    deployment_versions,
)
from experiment_operator.trackingserver.workload import deployment as build_deployment

Sample = Callable[..., TrackingServer]
ALL_OPTIONS = [
    ChildOptions(),
    ChildOptions(traefik_group="traefik.containo.us"),
    ChildOptions(ingress_controller=IngressController.NGINX),
    ChildOptions(ingress_controller=IngressController.NONE),
]
PG_URI = "postgresql://mlflow:s3cr3t@db.example/mlflow"


def deployment(ts: TrackingServer, **versions: str | None) -> dict[str, Any]:
    return build_deployment(ts, ServerPlan.of(ts, DEFAULT_MLFLOW_IMAGE), **versions)


def by_kind(children: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [c for c in children if c["kind"] == kind]


def test_every_child_is_named_labelled_and_owned(sample: Sample) -> None:
    ts = sample("repo")
    for options in ALL_OPTIONS:
        for child in build_children(ts, options, tls_secret_present=True):
            meta = child["metadata"]
            assert meta["name"].startswith("trackingserver")
            assert meta["namespace"] == "aiscope-devops-platform"
            assert meta["labels"][MANAGED_BY_LABEL] == MANAGED_BY
            assert meta["labels"]["ts_name"] == "trackingserver"
            [owner] = meta["ownerReferences"]
            assert owner["controller"] is True
            assert owner["blockOwnerDeletion"] is True
            assert owner["uid"] == ts.metadata.uid


def test_selectors_are_exactly_the_seeds(sample: Sample) -> None:
    children = build_children(sample("blog"), ChildOptions(), tls_secret_present=False)
    seed_labels = {"app": "trackingserver", "ts_name": "trackingserver"}
    [dep] = by_kind(children, "Deployment")
    [svc] = by_kind(children, "Service")
    assert dep["spec"]["selector"] == {"matchLabels": seed_labels}
    assert svc["spec"]["selector"] == seed_labels


def test_strategy_follows_the_volume(sample: Sample) -> None:
    with_volume = deployment(sample("repo"))
    assert with_volume["spec"]["strategy"] == {"type": "Recreate"}
    without = deployment(sample("repo", storageClassName=""))
    assert without["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "volumes" not in without["spec"]["template"]["spec"]


def test_volume_size_without_class_is_ignored_as_the_seed(sample: Sample) -> None:
    children = build_children(
        sample("blog", volumeSize="10Gi"), ChildOptions(), tls_secret_present=False
    )
    assert by_kind(children, "PersistentVolumeClaim") == []


def test_no_credentials_means_no_aws_env(sample: Sample) -> None:
    ts = sample("blog", aws_access_key="", aws_secret_key="")
    env = deployment(ts, credentials_version="12")["spec"]["template"]["spec"]["containers"][0]
    names = [e["name"] for e in env["env"]]
    assert names[:4] == [
        "MLFLOW_TRACKING_URI",
        "MLFLOW_S3_ENDPOINT_URL",
        "ARTIFACT_ROOT",
        "BACKEND_URI",
    ]
    assert not any(n.startswith("AWS_") for n in names)
    assert (
        "annotations"
        not in deployment(ts, credentials_version="12")["spec"]["template"]["metadata"]
    )


def test_credentials_never_in_the_deployment(sample: Sample) -> None:
    ts = sample("blog")
    text = yaml.safe_dump(deployment(ts, credentials_version="7"))
    assert "mlflow1234" not in text
    template = deployment(ts, credentials_version="7")["spec"]["template"]
    assert template["metadata"]["annotations"] == {CREDENTIALS_VERSION_ANNOTATION: "7"}


def test_backend_uri_with_password_goes_through_a_secret(sample: Sample) -> None:
    ts = sample("blog", backend_uri=PG_URI)
    children = build_children(
        ts,
        ChildOptions(),
        tls_secret_present=True,
        credentials_version="7",
        backend_store_version="8",
    )
    [secret] = [c for c in by_kind(children, "Secret") if c["metadata"]["name"].endswith("-store")]
    assert secret["metadata"]["name"] == "trackingserver-backend-store"
    assert base64.b64decode(secret["data"]["BACKEND_URI"]).decode() == PG_URI
    [dep] = by_kind(children, "Deployment")
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BACKEND_URI"] == {
        "name": "BACKEND_URI",
        "valueFrom": {
            "secretKeyRef": {"name": "trackingserver-backend-store", "key": "BACKEND_URI"}
        },
    }
    assert dep["spec"]["template"]["metadata"]["annotations"] == {
        CREDENTIALS_VERSION_ANNOTATION: "7",
        BACKEND_STORE_VERSION_ANNOTATION: "8",
    }
    assert "s3cr3t" not in yaml.safe_dump(dep)
    assert [c["kind"] for c in children].index("Deployment") > children.index(secret)


def test_deployment_reads_the_claim_and_the_owned_secrets_it_carries_versions_of(
    sample: Sample,
) -> None:
    ts = sample("blog", backend_uri=PG_URI, volumeSize="1Gi", storageClassName="standard")
    children = build_children(ts, ChildOptions(), tls_secret_present=True)
    read = [f"{c['kind']}/{c['metadata']['name']}" for c in children if deployment_reads(c, ts)]
    assert sorted(read) == [
        "PersistentVolumeClaim/trackingserver",
        "Secret/trackingserver-backend-store",
        "Secret/trackingserver-s3-credentials",
    ]
    live = {"trackingserver-s3-credentials": "7", "trackingserver-backend-store": "8"}

    def find(name: str) -> dict[str, Any] | None:
        rv = live.get(name)
        return None if rv is None else {"metadata": {"name": name, "resourceVersion": rv}}

    assert deployment_versions(ts, find) == {
        "credentials_version": "7",
        "backend_store_version": "8",
    }
    assert deployment_versions(ts, lambda name: None) == {
        "credentials_version": None,
        "backend_store_version": None,
    }


def test_users_credentials_secret_is_neither_read_first_nor_versioned(sample: Sample) -> None:
    ts = sample(
        "blog",
        aws_access_key=None,
        aws_secret_key=None,
        s3CredentialsSecretRef={"name": "mlflow-s3"},
    )
    users = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mlflow-s3"}}
    assert not deployment_reads(users, ts)
    found = {"metadata": {"name": "any", "resourceVersion": "9"}}
    assert deployment_versions(ts, lambda name: found)["credentials_version"] is None


@pytest.mark.parametrize(
    "uri",
    ["sqlite:////mlflow/mlflow.db", "postgresql://mlflow@db/mlflow", "postgresql://mlflow:@db/m"],
)
def test_backend_uri_without_password_stays_a_plain_value(sample: Sample, uri: str) -> None:
    ts = sample("blog", backend_uri=uri)
    children = build_children(
        ts, ChildOptions(), tls_secret_present=True, backend_store_version="8"
    )
    assert [c["metadata"]["name"] for c in by_kind(children, "Secret")] == [
        "trackingserver",
        "trackingserver-s3-credentials",
    ]
    [dep] = by_kind(children, "Deployment")
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BACKEND_URI"] == {"name": "BACKEND_URI", "value": uri}
    assert "annotations" not in dep["spec"]["template"]["metadata"]


def test_unparsable_backend_uri_is_kept_secret(sample: Sample) -> None:
    ts = sample("blog", backend_uri="postgresql://u:p@[db/mlflow")
    children = build_children(ts, ChildOptions(), tls_secret_present=True)
    assert "trackingserver-backend-store" in [c["metadata"]["name"] for c in children]


def test_render_redacts_the_backend_store_secret(sample: Sample) -> None:
    cr = sample("blog", backend_uri=PG_URI).model_dump(by_alias=True, mode="json")
    cr["spec"]["backend_uri"] = PG_URI
    text = render([cr], ChildOptions())
    encoded = base64.b64encode(PG_URI.encode()).decode()
    assert "s3cr3t" not in text
    assert encoded not in text
    assert encoded in render([cr], ChildOptions(), show_secrets=True)


def test_root_path_gives_one_route_and_no_middleware(sample: Sample) -> None:
    children = build_children(
        sample("blog", url="https://mlflow.example.com/"), ChildOptions(), tls_secret_present=True
    )
    assert by_kind(children, "Middleware") == []
    [route] = by_kind(children, "IngressRoute")
    assert [r["match"] for r in route["spec"]["routes"]] == ["Host(`mlflow.example.com`)"]
    assert route["spec"]["entryPoints"] == ["websecure", "web"]


def test_nginx_regex_escapes_the_prefix(sample: Sample) -> None:
    ts = sample("blog", url="https://h.example/v1.0/ml")
    plan = ServerPlan.of(ts, DEFAULT_MLFLOW_IMAGE)
    prefixed, _, _ = nginx_ingresses(ts, plan, ingress_class="nginx", tls=False)
    path = prefixed["spec"]["rules"][0]["http"]["paths"][0]["path"]
    assert path == "/v1\\.0/ml/(.*)"
    assert "tls" not in prefixed["spec"]


def test_possible_children_cover_every_option(sample: Sample) -> None:
    possible = set(possible_children("trackingserver"))
    for spec in ({}, {"url": "http://h.example"}, {"backend_uri": PG_URI}):
        ts = sample("repo", **spec)
        for options in ALL_OPTIONS:
            built = build_children(ts, options, tls_secret_present=True)
            assert {ChildRef.of(c) for c in built} <= possible


def test_unwanted_children_after_switching_to_nginx(sample: Sample) -> None:
    ts = sample("blog")
    desired = build_children(ts, ALL_OPTIONS[2], tls_secret_present=True)
    unwanted = unwanted_children("trackingserver", desired)
    assert ChildRef("traefik.io/v1alpha1", "IngressRoute", "trackingserver") in unwanted
    assert ChildRef("v1", "PersistentVolumeClaim", "trackingserver") in unwanted
    assert ChildRef("networking.k8s.io/v1", "Ingress", "trackingserver") not in unwanted


def test_render_redacts_secrets_unless_asked(sample: Sample) -> None:
    cr = sample("blog").model_dump(by_alias=True, mode="json")
    cr["spec"]["aws_secret_key"] = "mlflow1234"
    cr["spec"]["aws_access_key"] = "mlflow"
    cr["spec"]["backend_uri"] = "sqlite:////mlflow/mlflow.db"
    cr["spec"]["key"] = "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"
    text = render([cr], ChildOptions())
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs] == [
        "Secret",
        "Secret",
        "Deployment",
        "Service",
        "Middleware",
        "Middleware",
        "IngressRoute",
    ]
    assert "bWxmbG93MTIzNA==" not in text  # base64 of the seed's secret key
    assert "&id" not in text
    shown = render([cr], ChildOptions(), show_secrets=True)
    assert "bWxmbG93MTIzNA==" in shown


def test_render_without_uid_or_namespace_writes_no_owner(sample: Sample) -> None:
    cr = yaml.safe_load(render_input())
    [doc, *_] = yaml.safe_load_all(
        render([cr], ChildOptions(ingress_controller=IngressController.NONE))
    )
    assert "ownerReferences" not in doc["metadata"]
    assert "namespace" not in doc["metadata"]


def render_input() -> str:
    return """
apiVersion: experiment.aiscope/v1alpha2
kind: TrackingServer
metadata: {name: demo}
spec:
  size: 1
  image: ghcr.io/mlflow/mlflow:v2.19.0
  s3_endpoint_url: ""
  artifact_root: ./mlruns
  backend_uri: sqlite:///mlflow.db
  url: http://mlflow.example.com
"""
