"""TrackingServer v1alpha2: the spec and status models, the single source of the CRD schema.

JSON names and types of the seed's fields are kept exactly (`size`, `s3_endpoint_url`, ...) so
that resources written for the original Go controller apply unchanged; new fields are camelCase.
Field docstrings become the CRD descriptions that `kubectl explain` shows. Values that can hold
credentials are `SecretStr`, so they never appear in a `repr` or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from experiment_operator.api import urls
from experiment_operator.api.cel import cel_regex as _cel_regex
from experiment_operator.api.cel import non_empty as _set
from experiment_operator.api.cel import rules as _rules
from experiment_operator.api.conditions import Condition
from experiment_operator.api.kubetypes import (
    Affinity,
    EnvFromSources,
    EnvVars,
    LocalObjectReferences,
    ResourceRequirements,
    Tolerations,
)
from experiment_operator.api.refs import (
    DNS1123_SUBDOMAIN,
    GatewayRef,
    S3CredentialsSecretRef,
)

GROUP = "experiment.aiscope"
VERSION = "v1alpha2"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TrackingServer"
PLURAL = "trackingservers"
SINGULAR = "trackingserver"

INT32_MAX = 2**31 - 1
NO_WHITESPACE = r"^[^\s]+$"
BACKEND_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
BACKEND_URI_PATTERN = rf"^({'|'.join(BACKEND_SCHEMES)})(\+[A-Za-z0-9_]+)?://|^file:"
"""SQLAlchemy URLs of the databases MLflow's tracking store supports (with an optional
driver, e.g. `postgresql+psycopg2://`), or MLflow's file store (`file:`)."""
RESERVED_POD_LABELS = (
    "app",
    "ts_name",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
)
"""Labels the operator sets on the Pods: selectors and the operator's own watch depend on them."""
KUBERNETES_TYPED_FIELDS = {
    "resources": "ResourceRequirements",
    "env": "EnvVar",
    "envFrom": "EnvFromSource",
    "tolerations": "Toleration",
    "affinity": "Affinity",
    "imagePullSecrets": "LocalObjectReference",
}
"""Spec fields that embed a core/v1 type, passed to the Pod as given (JSON name → type)."""


def _secret_set(value: SecretStr) -> bool:
    return value.get_secret_value() != ""


VolumeRetentionPolicy = Literal["Delete", "Retain"]
ServerCommand = Literal["Operator", "Image"]
StringMap = dict[str, str]

_SPEC_RULES = _rules(
    (
        f"{_set('cert')} == {_set('key')}",
        "cert and key must be set together (both non-empty) or both left empty",
    ),
    (
        f"{_set('aws_access_key')} == {_set('aws_secret_key')}",
        "aws_access_key and aws_secret_key must be set together (both non-empty) or both empty",
    ),
    (
        f"!has(self.s3CredentialsSecretRef) || "
        f"!({_set('aws_access_key')} || {_set('aws_secret_key')})",
        "use either s3CredentialsSecretRef or aws_access_key/aws_secret_key, not both",
    ),
    (
        "!has(self.serveArtifacts) || !self.serveArtifacts || self.artifact_root != ''",
        "serveArtifacts needs artifact_root: the location MLflow stores the artifacts at",
    ),
)


class TrackingServerSpec(BaseModel):
    """Desired state of an MLflow tracking server."""

    model_config = ConfigDict(
        use_attribute_docstrings=True,
        populate_by_name=True,
        json_schema_extra=_SPEC_RULES,
    )

    size: int = Field(ge=0, le=INT32_MAX, json_schema_extra={"format": "int32"})
    """Number of MLflow server replicas (the Deployment's `replicas`); 0 stops the server."""

    image: str = Field(
        default="",
        max_length=1024,
        json_schema_extra=_rules(
            (
                f"self == '' || self.matches({_cel_regex(NO_WHITESPACE)})",
                "image must be empty or a container image reference without whitespace",
            )
        ),
    )
    """Container image of the MLflow server. Empty (the default): the operator's MLflow image
    (`--mlflow-image`, a pinned official release), started with the operator's `mlflow server`
    command line. See `serverCommand` for when an image's own command runs instead."""

    server_command: ServerCommand | None = Field(default=None, alias="serverCommand")
    """Who starts MLflow. `Operator`: the container runs the operator's `mlflow server` command
    line (prefix, allowed hosts, probes, migrations; the image needs `mlflow` on its PATH).
    `Image`: the image's own command runs, configured through the environment variables of the
    original controller (`BACKEND_URI`, `ARTIFACT_ROOT`, ...), and the url's path is stripped by
    the proxy. Unset: `Operator` when `image` is empty or an official MLflow image
    (`ghcr.io/mlflow/mlflow`) or the operator's MLflow image, else `Image`."""

    s3_endpoint_url: str = Field(
        default="",
        max_length=2048,
        json_schema_extra=_rules(
            (
                "self == '' || (isURL(self) && url(self).getScheme() in ['http', 'https'])",
                "s3_endpoint_url must be empty or an http(s) URL",
            )
        ),
    )
    """S3 endpoint for artifacts (env `MLFLOW_S3_ENDPOINT_URL`); empty (the default) uses
    AWS's endpoint."""

    aws_access_key: SecretStr = Field(default=SecretStr(""), max_length=1024)
    """S3 access key ID in plain text (prefer `s3CredentialsSecretRef`). The
    operator copies it into an owned Secret `<name>-s3-credentials`; it is never put in the Pod
    spec, logs, Events or status. Must be set together with `aws_secret_key`."""

    aws_secret_key: SecretStr = Field(default=SecretStr(""), max_length=1024)
    """S3 secret access key in plain text (prefer `s3CredentialsSecretRef`),
    handled like `aws_access_key`. Must be set together with `aws_access_key`."""

    artifact_root: str = Field(max_length=2048)
    """Default artifact root (env `ARTIFACT_ROOT`), e.g. `s3://mlflow/`."""

    backend_uri: SecretStr = Field(
        max_length=4096,
        json_schema_extra=_rules(
            (
                f"self.matches({_cel_regex(BACKEND_URI_PATTERN)})",
                "backend_uri must be a database URI MLflow supports: sqlite://, postgresql://, "
                "mysql://, mssql:// (optionally with a driver, e.g. postgresql+psycopg2://) or "
                "file:",
            )
        ),
    )
    """Backend store URI (env `BACKEND_URI`), e.g. `sqlite:////mlflow/mlflow.db` or
    `postgresql://mlflow:PASSWORD@db/mlflow`; may embed database credentials, so it is never
    logged. A URI with a password reaches the Pod through the owned Secret
    `<name>-backend-store`, not as a plain env value."""

    url: str = Field(
        max_length=2048,
        json_schema_extra=_rules(
            (
                "isURL(self) && url(self).getScheme() in ['http', 'https'] && "
                "url(self).getHostname() != ''",
                "url must be an absolute http(s) URL with a host, "
                "e.g. https://mlflow.example.com/platform",
            ),
            (f"!self.matches({_cel_regex(urls.USERINFO)})", urls.USERINFO_MESSAGE),
            (f"self.matches({_cel_regex(urls.URL_SHAPE)})", urls.URL_SHAPE_MESSAGE),
            (f"!self.matches({_cel_regex(urls.DOT_SEGMENT)})", urls.DOT_SEGMENT_MESSAGE),
            (
                f"!self.matches({_cel_regex(urls.NUMERIC_HOST)}) && (!isURL(self) || "
                f"(size(url(self).getHostname()) <= {urls.HOST_MAX_LENGTH} && "
                f"(url(self).getPort() == '' || int(url(self).getPort()) <= {urls.PORT_MAX})))",
                urls.HOST_MESSAGE,
            ),
        ),
    )
    """External URL of the server (env `MLFLOW_TRACKING_URI`), e.g.
    `https://mlflow.example.com/team-a`. Its host and path configure the routing. A server the
    operator starts lives under the path (MLflow's `--static-prefix`), so several servers can
    share one host; with the image's own command the path is stripped by the proxy. The host
    must be a DNS name; the path may hold letters, digits and `-._~` between single slashes."""

    gateway_ref: GatewayRef | None = Field(default=None, alias="gatewayRef")
    """The Gateway the HTTPRoute attaches to when the operator routes with Gateway API
    (`--ingress-controller=gateway`, or `auto` on a cluster serving only Gateway API). Replaces
    the operator's `--gateway-name`, `--gateway-namespace` and `--gateway-section-name` as a
    whole. Ignored by the other routing modes."""

    volume_size: str = Field(
        default="",
        alias="volumeSize",
        max_length=64,
        json_schema_extra=_rules(
            (
                "self == '' || (isQuantity(self) && quantity(self).isGreaterThan(quantity('0')))",
                "volumeSize must be empty or a positive quantity such as 10Gi or 50G",
            )
        ),
    )
    """Size of a ReadWriteOnce PersistentVolumeClaim mounted at `/mlflow` (e.g. for a SQLite
    backend). Created only when `storageClassName` is also set; empty means no volume."""

    storage_class_name: str = Field(
        default="",
        alias="storageClassName",
        max_length=253,
        json_schema_extra=_rules(
            (
                f"self == '' || self.matches({_cel_regex(DNS1123_SUBDOMAIN)})",
                "storageClassName must be empty or a valid StorageClass name (DNS-1123 subdomain)",
            )
        ),
    )
    """StorageClass of the volume; the volume exists only when this and `volumeSize` are set."""

    cert: str = Field(default="", max_length=65536)
    """PEM certificate (chain) for HTTPS. With `key`, the operator writes a `kubernetes.io/tls`
    Secret named after the TrackingServer; routing uses TLS whenever a Secret of that name
    exists (also one you made, e.g. with cert-manager)."""

    key: SecretStr = Field(default=SecretStr(""), max_length=65536)
    """PEM private key matching `cert`. Must be set together with `cert`."""

    s3_credentials_secret_ref: S3CredentialsSecretRef | None = Field(
        default=None, alias="s3CredentialsSecretRef"
    )
    """Existing Secret with the S3 credentials, injected as `AWS_ACCESS_KEY_ID` and
    `AWS_SECRET_ACCESS_KEY` through `secretKeyRef`. Alternative to `aws_access_key` and
    `aws_secret_key`; not both."""

    volume_retention_policy: VolumeRetentionPolicy = Field(
        default="Delete", alias="volumeRetentionPolicy"
    )
    """What happens to the PersistentVolumeClaim when the volume fields are cleared or the
    TrackingServer is deleted. `Delete` (default, as the original controller): it is deleted.
    `Retain`: it is kept and released from the TrackingServer (owner reference removed), so the
    data survives and a new TrackingServer of the same name can mount it again."""

    serve_artifacts: bool | None = Field(default=None, alias="serveArtifacts")
    """`true`: MLflow proxies artifact uploads and downloads to `artifact_root`
    (`--artifacts-destination`), so clients need no S3 credentials. `false` or unset (the
    original controller's behaviour): clients read and write `artifact_root` themselves. Only
    for servers the operator starts (see `serverCommand`)."""

    resources: ResourceRequirements | None = None
    """CPU and memory of the MLflow container (and of its database-migration init container).
    Unset: requests 100m CPU and 512Mi memory, limit 1Gi memory (MLflow 3.17 with one worker
    and job execution off uses about 500Mi). Given, it replaces the defaults entirely."""

    env: EnvVars | None = None
    """Extra environment variables of the MLflow container. One with the name of a variable
    the operator sets (e.g. `MLFLOW_WORKERS`, `MLFLOW_SERVER_ALLOWED_HOSTS`,
    `MLFLOW_SERVER_ENABLE_JOB_EXECUTION`) replaces it."""

    env_from: EnvFromSources | None = Field(default=None, alias="envFrom")
    """ConfigMaps and Secrets whose keys become environment variables of the MLflow
    container; `env` and the operator's variables take precedence."""

    node_selector: StringMap | None = Field(default=None, alias="nodeSelector")
    """Node labels the MLflow Pods must be scheduled on."""

    tolerations: Tolerations | None = None
    """Taints the MLflow Pods tolerate."""

    affinity: Affinity | None = None
    """Node affinity and Pod (anti-)affinity of the MLflow Pods."""

    pod_labels: StringMap | None = Field(
        default=None,
        alias="podLabels",
        json_schema_extra=_rules(
            (
                f"!self.exists(k, k in {list(RESERVED_POD_LABELS)!r})",
                "podLabels must not set the labels the operator selects its Pods by: "
                + ", ".join(RESERVED_POD_LABELS),
            )
        ),
    )
    """Extra labels of the MLflow Pods (not of the other children)."""

    pod_annotations: StringMap | None = Field(default=None, alias="podAnnotations")
    """Extra annotations of the MLflow Pods; the operator's own annotations win on a clash."""

    service_account_name: str = Field(
        default="",
        alias="serviceAccountName",
        max_length=253,
        json_schema_extra=_rules(
            (
                f"self == '' || self.matches({_cel_regex(DNS1123_SUBDOMAIN)})",
                "serviceAccountName must be empty or a valid ServiceAccount name",
            )
        ),
    )
    """ServiceAccount the MLflow Pods run as (e.g. one with cloud workload identity for S3).
    Empty: the namespace's `default`, without an automounted API token (MLflow needs none)."""

    image_pull_secrets: LocalObjectReferences | None = Field(default=None, alias="imagePullSecrets")
    """Secrets (`{name: ...}`) with credentials for pulling `image` from a private registry."""

    @property
    def volume_enabled(self) -> bool:
        """Whether a PVC is wanted: both volume fields set (the seed ignored one alone)."""
        return self.volume_size != "" and self.storage_class_name != ""

    @property
    def tls_enabled(self) -> bool:
        """Whether a TLS Secret is wanted from `cert` and `key`."""
        return self.cert != "" and _secret_set(self.key)

    @property
    def plaintext_credentials(self) -> bool:
        """Whether the deprecated plaintext credential fields are in use."""
        return _secret_set(self.aws_access_key) and _secret_set(self.aws_secret_key)


class TrackingServerStatus(BaseModel):
    """Observed state of the tracking server, written by the operator."""

    model_config = ConfigDict(use_attribute_docstrings=True, populate_by_name=True)

    observed_generation: int | None = Field(
        default=None, alias="observedGeneration", ge=0, json_schema_extra={"format": "int64"}
    )
    """The `.metadata.generation` the status was computed from."""

    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    """Current conditions; `Ready` is True when every child is applied and the Deployment is
    available."""

    url: str | None = Field(default=None, max_length=2048)
    """URL the server is served at (from `spec.url`) once routing is in place."""

    replicas: int | None = Field(default=None, ge=0, json_schema_extra={"format": "int32"})
    """Replicas of the Deployment (from its status)."""

    ready_replicas: int | None = Field(
        default=None, alias="readyReplicas", ge=0, json_schema_extra={"format": "int32"}
    )
    """Ready replicas of the Deployment (from its status)."""


class ObjectMeta(BaseModel):
    """The parts of metadata the builders and the reconciler need."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    deletion_timestamp: str | None = Field(default=None, alias="deletionTimestamp")
    finalizers: list[str] = Field(default_factory=list)


class TrackingServer(BaseModel):
    """A TrackingServer as the API returns it, parsed for the builders."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str = KIND
    metadata: ObjectMeta
    spec: TrackingServerSpec
    status: TrackingServerStatus = Field(default_factory=TrackingServerStatus)

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> TrackingServer:
        """Parse a dict as returned by the API server (or read from a YAML file)."""
        return cls.model_validate(obj)
