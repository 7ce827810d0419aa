"""The generated CRD in a real API server: seed samples apply, kubectl helps, bad input is 422."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource

from experiment_lab.cluster import Kubectl
from experiment_operator.api.trackingserver import GROUP, KIND, PLURAL, VERSION
from experiment_operator.trackingserver.url import InvalidURLError, ServerURL

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("trackingserver_crd")]

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SEED_NAMESPACE = "aiscope-devops-platform"
TrackingServerResource = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)


def blog_sample() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((FIXTURES / "seed-blog-sample.yaml").read_text())
    del data["metadata"]["namespace"]
    return data


async def retry_kubectl(kubectl: Kubectl, *args: str, want: str, seconds: float = 30.0) -> str:
    """Run kubectl until its output contains ``want`` (discovery and OpenAPI publish lazily)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = kubectl(*args, check=False)
        if want in result.stdout:
            return result.stdout
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stdout}{result.stderr}")
        await asyncio.sleep(0.5)


async def test_seed_samples_apply_unchanged(kubectl: Kubectl) -> None:
    exists = kubectl("get", "namespace", SEED_NAMESPACE, check=False).returncode == 0
    if not exists:
        kubectl("create", "namespace", SEED_NAMESPACE)
    try:
        blog = kubectl("apply", "-f", str(FIXTURES / "seed-blog-sample.yaml"))
        assert "trackingserver.experiment.aiscope/trackingserver created" in blog.stdout
        repo = kubectl("apply", "-f", str(FIXTURES / "seed-repo-sample.yaml"))
        assert "trackingserver.experiment.aiscope/trackingserver configured" in repo.stdout
        stored = yaml.safe_load(
            kubectl(
                "get", "trackingserver", "trackingserver", "-n", SEED_NAMESPACE, "-o", "yaml"
            ).stdout
        )
        assert stored["spec"]["size"] == 2
        assert stored["spec"]["volumeSize"] == "50G"
        assert "volumeRetentionPolicy" not in stored["spec"], "no defaults written into CRs"
        table = kubectl("get", "trackingservers", "-n", SEED_NAMESPACE).stdout
        header = table.splitlines()[0].split()
        assert header == ["NAME", "S3_ENDPOINT_URL", "ARTIFACT_ROOT", "READY", "URL", "AGE"]
        assert "http://s3.platform.aiscope.io/" in table
        assert "s3://mlflow/" in table
    finally:
        if not exists:
            kubectl("delete", "namespace", SEED_NAMESPACE, "--wait=false")


async def test_kubectl_explain_shows_descriptions(kubectl: Kubectl) -> None:
    out = await retry_kubectl(
        kubectl, "explain", "trackingserver.spec.url", want="External URL of the server"
    )
    assert "MLFLOW_TRACKING_URI" in out
    await retry_kubectl(
        kubectl,
        *("explain", "trackingserver.spec.volumeRetentionPolicy"),
        want="owner reference removed",
    )
    # The new fields, and the Kubernetes types inside them, down to their leaves.
    for path, want in [
        ("spec.serverCommand", "Who starts MLflow"),
        ("spec.serveArtifacts", "--artifacts-destination"),
        ("spec.resources.limits", "maximum amount of compute resources"),
        ("spec.env.valueFrom.secretKeyRef.key", "The key of the secret to select from"),
        ("spec.envFrom.configMapRef", "The ConfigMap to select from"),
        ("spec.nodeSelector", "Node labels the MLflow Pods"),
        ("spec.tolerations.effect", "Effect indicates the taint effect"),
        ("spec.affinity.podAntiAffinity", "anti-affinity"),
        ("spec.podLabels", "Extra labels of the MLflow Pods"),
        ("spec.podAnnotations", "Extra annotations"),
        ("spec.serviceAccountName", "ServiceAccount the MLflow Pods run as"),
        ("spec.imagePullSecrets.name", "Name of the referent"),
        ("spec.gatewayRef", "The Gateway the HTTPRoute attaches to"),
        ("spec.gatewayRef.sectionName", "Name of one listener of the Gateway"),
    ]:
        await retry_kubectl(kubectl, "explain", f"trackingserver.{path}", want=want)


async def test_category_lists_trackingservers(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(blog_sample()))
    await retry_kubectl(
        kubectl,
        *("get", "aiscope", "-n", namespace, "-o", "name"),
        want="trackingserver.experiment.aiscope/trackingserver",
    )


@dataclass(frozen=True)
class Case:
    """An invalid TrackingServer: the blog sample with ``spec`` overrides (None deletes a key)."""

    id: str
    spec: dict[str, Any]
    message: str
    name: str = "trackingserver"
    drop_spec: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("negative-size", {"size": -1}, "spec.size in body should be greater than or equal to 0"),
    Case(
        "size-over-int32",
        {"size": 2**31},
        "spec.size in body should be less than or equal to 2147483647",
    ),
    Case("size-not-integer", {"size": "one"}, "spec.size in body must be of type integer"),
    Case("image-with-space", {"image": "mlflow aiscope"}, "without whitespace"),
    Case("url-without-scheme", {"url": "mlflow.platform.aiscope.io/platform"}, "url must be an"),
    Case("url-ftp", {"url": "ftp://mlflow.platform.aiscope.io/"}, "absolute http(s) URL with a"),
    Case("url-without-host", {"url": "https:///platform"}, "absolute http(s) URL with a host"),
    Case("url-backtick", {"url": "https://h.example/a`b"}, "between single slashes"),
    Case("url-space", {"url": "https://h.example/a b"}, "between single slashes"),
    Case("url-percent-encoded", {"url": "https://h.example/a%2F%2e%2e"}, "no percent-encoding"),
    Case("url-query", {"url": "https://h.example/a?x=`y`"}, "no percent-encoding, query"),
    Case("url-fragment", {"url": "https://h.example/a#b"}, "query or fragment"),
    Case("url-userinfo", {"url": "https://u:secret@h.example/a"}, "must not contain credentials"),
    Case("url-dot-segment", {"url": "https://h.example/a/../b"}, "'.' or '..' segments"),
    Case("url-empty-segment", {"url": "https://h.example/a//b"}, "between single slashes"),
    Case("url-ip-host", {"url": "https://192.168.0.1/a"}, "not an IP address"),
    Case("url-ipv6-host", {"url": "https://[::1]/a"}, "DNS host name"),
    Case("url-underscore-host", {"url": "https://ml_flow.example/a"}, "DNS host name"),
    Case(
        "url-long-host",
        {"url": f"https://{'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 63}.ex/"},
        "at most 253 characters",
    ),
    Case("url-port-too-big", {"url": "https://h.example:70000/a"}, "port at most 65535"),
    Case("url-regex-chars", {"url": "https://h.example/a(b)|c"}, "between single slashes"),
    Case("url-uppercase-scheme", {"url": "HTTPS://h.example/a"}, "http(s)://HOST"),
    Case("missing-url", {"url": None}, "spec.url: Required value"),
    Case("backend-empty", {"backend_uri": ""}, "backend_uri must be a database URI"),
    Case("backend-no-scheme", {"backend_uri": "/mlflow/mlflow.db"}, "backend_uri must be a"),
    Case("backend-unknown", {"backend_uri": "mongodb://db/m"}, "backend_uri must be a database"),
    Case("backend-postgres-alias", {"backend_uri": "postgres://u@db/m"}, "backend_uri must be"),
    Case(
        "serve-artifacts-without-root",
        {"serveArtifacts": True, "artifact_root": ""},
        "serveArtifacts needs artifact_root",
    ),
    Case("server-command-unknown", {"serverCommand": "Both"}, 'supported values: "Operator"'),
    Case("pod-labels-reserved", {"podLabels": {"ts_name": "other"}}, "podLabels must not set"),
    Case(
        "service-account-invalid",
        {"serviceAccountName": "My SA"},
        "serviceAccountName must be empty or a valid",
    ),
    Case("env-without-name", {"env": [{"value": "x"}]}, "spec.env[0].name: Required value"),
    Case(
        "resources-not-a-quantity",
        {"resources": {"limits": {"memory": "lots"}}},
        "spec.resources.limits.memory",
    ),
    Case(
        "toleration-seconds-string",
        {"tolerations": [{"tolerationSeconds": "ten"}]},
        "spec.tolerations[0].tolerationSeconds",
    ),
    Case("s3-endpoint-no-scheme", {"s3_endpoint_url": "s3.example"}, "s3_endpoint_url must be"),
    Case("volume-size-garbage", {"volumeSize": "50 GB"}, "volumeSize must be empty or a positive"),
    Case("volume-size-negative", {"volumeSize": "-1Gi"}, "volumeSize must be empty or a positive"),
    Case("volume-size-zero", {"volumeSize": "0"}, "volumeSize must be empty or a positive"),
    Case(
        "storage-class-invalid",
        {"volumeSize": "1Gi", "storageClassName": "Ceph_RBD"},
        "storageClassName must be empty or a valid StorageClass name",
    ),
    Case("cert-without-key", {"key": ""}, "cert and key must be set together"),
    Case("key-without-cert", {"cert": None}, "cert and key must be set together"),
    Case(
        "half-plaintext-pair",
        {"aws_secret_key": ""},
        "aws_access_key and aws_secret_key must be set together",
    ),
    Case(
        "both-credential-styles",
        {"s3CredentialsSecretRef": {"name": "s3"}},
        "use either s3CredentialsSecretRef or aws_access_key/aws_secret_key, not both",
    ),
    Case(
        "secret-ref-without-name",
        {"aws_access_key": None, "aws_secret_key": None, "s3CredentialsSecretRef": {}},
        "spec.s3CredentialsSecretRef.name: Required value",
    ),
    Case(
        "secret-ref-bad-name",
        {"aws_access_key": None, "aws_secret_key": None, "s3CredentialsSecretRef": {"name": "S3"}},
        "s3CredentialsSecretRef.name must be a valid Secret name",
    ),
    Case(
        "secret-ref-bad-key",
        {
            "aws_access_key": None,
            "aws_secret_key": None,
            "s3CredentialsSecretRef": {"name": "s3", "accessKeyIDKey": "access key"},
        },
        "spec.s3CredentialsSecretRef.accessKeyIDKey in body should match",
    ),
    Case("gateway-ref-without-name", {"gatewayRef": {}}, "spec.gatewayRef.name: Required value"),
    Case(
        "gateway-ref-bad-namespace",
        {"gatewayRef": {"name": "public", "namespace": "Gateway_System"}},
        "spec.gatewayRef.namespace in body should match",
    ),
    Case(
        "gateway-ref-bad-section",
        {"gatewayRef": {"name": "public", "sectionName": "Web Secure"}},
        "spec.gatewayRef.sectionName in body should match",
    ),
    Case(
        "unknown-retention-policy",
        {"volumeRetentionPolicy": "Keep"},
        'Unsupported value: "Keep": supported values: "Delete", "Retain"',
    ),
    Case("cert-too-long", {"cert": "x" * 65537}, "spec.cert: Too long"),
    Case("name-starts-with-digit", {}, "metadata.name must be a DNS-1035 label", name="1-mlflow"),
    Case("name-with-dot", {}, "metadata.name must be a DNS-1035 label", name="ml.flow"),
    Case("name-too-long", {}, "metadata.name must be a DNS-1035 label", name="m" * 64),
    Case("missing-spec", {}, "spec: Required value", drop_spec=True),
]


def sample_with(case: Case, namespace: str) -> dict[str, Any]:
    obj = copy.deepcopy(blog_sample())
    obj["metadata"]["namespace"] = namespace
    obj["metadata"]["name"] = case.name
    for key, value in case.spec.items():
        if value is None:
            obj["spec"].pop(key, None)
        else:
            obj["spec"][key] = value
    if case.drop_spec:
        del obj["spec"]
    return obj


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_invalid_trackingserver_is_rejected(
    kube: AsyncClient, namespace: str, case: Case
) -> None:
    with pytest.raises(ApiError) as raised:
        await kube.create(TrackingServerResource.from_dict(sample_with(case, namespace)))
    assert raised.value.status.code == 422, raised.value.status.message
    assert case.message in (raised.value.status.message or "")


VALID = {
    "seed-volume-without-class": {"volumeSize": "10Gi", "storageClassName": ""},
    "secret-reference": {
        "aws_access_key": None,
        "aws_secret_key": None,
        "s3CredentialsSecretRef": {"name": "mlflow-s3"},
    },
    "no-credentials-no-tls": {
        "aws_access_key": "",
        "aws_secret_key": "",
        "cert": "",
        "key": "",
    },
    "no-path-zero-size": {"url": "http://mlflow.example.com", "size": 0},
    "retain": {"volumeRetentionPolicy": "Retain", "volumeSize": "1Gi", "storageClassName": "a.b"},
    "minimal-no-image-no-endpoint": {
        "image": None,
        "s3_endpoint_url": None,
        "aws_access_key": None,
        "aws_secret_key": None,
        "cert": None,
        "key": None,
    },
    "empty-image": {"image": ""},
    "gateway-ref": {"gatewayRef": {"name": "public", "namespace": "infra", "sectionName": "https"}},
    "gateway-ref-name-only": {"gatewayRef": {"name": "public"}},
    "url-port-prefix-unreserved": {"url": "https://MLflow.Example.com:8443/team_A/v1.0~x/"},
    "backends": {"backend_uri": "postgresql+psycopg2://mlflow:p%40ss@db.example:5432/mlflow"},
    "file-store": {"backend_uri": "file:///mlflow/mlruns"},
    "pod-fields": {
        "serverCommand": "Operator",
        "serveArtifacts": True,
        "resources": {"requests": {"cpu": 1, "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        "envFrom": [{"secretRef": {"name": "s"}, "prefix": "X_"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                    ]
                }
            }
        },
        "podLabels": {"team": "a"},
        "podAnnotations": {"a": "b"},
        "serviceAccountName": "mlflow",
        "imagePullSecrets": [{"name": "registry"}],
    },
}


@pytest.mark.parametrize("overrides", list(VALID.values()), ids=list(VALID))
async def test_valid_variants_are_accepted(
    kube: AsyncClient, namespace: str, overrides: dict[str, Any]
) -> None:
    case = Case("valid", overrides, "")
    created = await kube.create(TrackingServerResource.from_dict(sample_with(case, namespace)))
    stored = created.to_dict()["spec"]
    for key, value in overrides.items():
        assert stored.get(key) == value, f"{key} was pruned or changed"


URLS = [
    "https://h.example",
    "https://h.example/",
    "http://h.example:8080/a/b.c/d_e~f-g/",
    "https://xn--bcher-kva.example/team-a",
    "https://h.example/a%20b",
    "https://h.example/a b",
    "https://h.example/a?b",
    "https://h.example/a#b",
    "https://u@h.example/a",
    "https://h.example/./a",
    "https://h.example/a/..",
    "https://h.example/...",
    "https://h.example//",
    "https://1.2.3.4/",
    "https://h.example:65536/",
    "https://h-.example/",
    "https://h.example/a\\b",
    "https://h.example/a)",
    "https://h.example/${x}",
]


@pytest.mark.parametrize("url", URLS)
async def test_admission_and_the_operators_parser_agree(
    kube: AsyncClient, namespace: str, url: str
) -> None:
    """The CRD's CEL rules and `ServerURL.parse` accept exactly the same urls."""
    case = Case("url", {"url": url}, "", name=f"u{abs(hash(url)) % 10**8}")
    admitted, code = True, None
    try:
        await kube.create(TrackingServerResource.from_dict(sample_with(case, namespace)))
    except ApiError as err:
        admitted, code = False, err.status.code
    assert admitted or code == 422
    try:
        ServerURL.parse(url)
        parsed = True
    except InvalidURLError:
        parsed = False
    assert admitted == parsed
