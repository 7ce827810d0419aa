"""How MLflow runs in the Pod: who starts it, its command line, its environment and probes.

Two ways, decided by `server_command` (documented in docs/trackingserver.md):

- **Operator**: the container runs `mlflow server` with the command line built here (backend,
  artifacts, prefix, host, port, workers, allowed hosts, CORS) and a migration init container;
  the image only needs `mlflow` on its PATH (the official images, `--mlflow-image`).
- **Image**: the image's own CMD runs, configured by the original controller's environment
  (`BACKEND_URI`, `ARTIFACT_ROOT`, ...), as for the seed's `mlflow:aiscope` image.

Settings MLflow also reads from environment variables (allowed hosts, CORS origins, workers,
job execution) are set as environment variables in both ways, and the operator's command line
refers to them (`$(NAME)`, expanded by the kubelet): one value, visible in the Pod spec, and
replaceable by a user's `env` entry of the same name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from experiment_operator.api.trackingserver import (
    BACKEND_SCHEMES,
    TrackingServer,
    TrackingServerSpec,
)
from experiment_operator.trackingserver.url import ServerURL

DEFAULT_MLFLOW_IMAGE = "ghcr.io/mlflow/mlflow:v3.17.2-full"
"""The official MLflow image with its database drivers and S3 client (the `-full` variant)."""
OFFICIAL_REPOSITORIES = frozenset({"ghcr.io/mlflow/mlflow"})
PORT = 5000
DATA_DIR = "/mlflow"
"""Where the volume (or, without one, an emptyDir) is mounted; the seed image's WORKDIR."""
SCRATCH_DIR = "/tmp"
DEFAULT_WORKERS = "1"
HEALTH_PATH = "/health"
PROBE_HOST = "localhost"
"""Host header of the kubelet's probes: allowed by every server's host check."""


class ServerCommand(StrEnum):
    """Who starts MLflow in the container (`spec.serverCommand`)."""

    OPERATOR = "Operator"
    IMAGE = "Image"


def image_repository(image: str) -> str:
    """`ghcr.io/mlflow/mlflow` of `ghcr.io/mlflow/mlflow:v3.17.2` (tag and digest removed)."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def server_image(spec: TrackingServerSpec, default_image: str) -> str:
    """The image the server runs: the spec's, else the operator's MLflow image."""
    return spec.image or default_image


def server_command(spec: TrackingServerSpec, default_image: str) -> ServerCommand:
    """`spec.serverCommand` if set; else Operator for no image, an official MLflow image or the
    operator's own MLflow image (none of which brings a command of its own), else Image (the
    seed's contract: an image that starts MLflow itself from environment variables)."""
    if spec.server_command is not None:
        return ServerCommand(spec.server_command)
    if not spec.image:
        return ServerCommand.OPERATOR
    repository = image_repository(spec.image)
    if repository in OFFICIAL_REPOSITORIES or repository == image_repository(default_image):
        return ServerCommand.OPERATOR
    return ServerCommand.IMAGE


@dataclass(frozen=True)
class ServerPlan:
    """What the workload and routing builders need beyond the spec: decided once per pass."""

    url: ServerURL
    command: ServerCommand
    image: str

    @property
    def serves_prefix(self) -> bool:
        """MLflow itself lives under the url's path (nothing to strip on the way)."""
        return self.command is ServerCommand.OPERATOR

    @classmethod
    def of(cls, ts: TrackingServer, default_image: str) -> ServerPlan:
        """Raises `url.InvalidURLError` for a url that may not reach a routing rule."""
        return cls(
            url=ServerURL.parse(ts.spec.url),
            command=server_command(ts.spec, default_image),
            image=server_image(ts.spec, default_image),
        )


def _ref(name: str) -> str:
    return f"$({name})"


def server_args(url: ServerURL, *, serve_artifacts: bool) -> list[str]:
    """The `mlflow server` command line of an operator-started server.

    Values that come from the environment are `$(NAME)` references, so a user's `env` entry
    replaces the operator's value. The backend store URI is not among them: the kubelet expands
    a reference into the process's arguments, where the database password would show in the
    node's process table (`ps`); MLflow reads it from the environment instead (`operator_env`)."""
    args = ["mlflow", "server"]  # the backend store: `operator_env`
    if serve_artifacts:
        args += ["--serve-artifacts", f"--artifacts-destination={_ref('ARTIFACT_ROOT')}"]
    else:
        args += ["--no-serve-artifacts", f"--default-artifact-root={_ref('ARTIFACT_ROOT')}"]
    args += [
        "--host=0.0.0.0",
        f"--port={PORT}",
        f"--workers={_ref('MLFLOW_WORKERS')}",
        f"--allowed-hosts={_ref('MLFLOW_SERVER_ALLOWED_HOSTS')}",
        f"--cors-allowed-origins={_ref('MLFLOW_SERVER_CORS_ALLOWED_ORIGINS')}",
    ]
    if url.prefix:
        args.append(f"--static-prefix={url.prefix}")
    return args


MIGRATION_SCRIPT = """\
import os, sys
import sqlalchemy
uri = os.environ["BACKEND_URI"]
if not sqlalchemy.inspect(sqlalchemy.create_engine(uri)).get_table_names():
    print("empty database: mlflow server creates the schema at its first start")
    sys.exit(0)
from mlflow.db import upgrade
upgrade.main([uri], prog_name="mlflow db upgrade")
"""
"""Upgrade an existing schema to the image's MLflow; leave a new, empty database to the server
(older MLflow versions' `db upgrade` fails on one). `mlflow db upgrade` runs in this process:
the URI (and its password) stays in the environment, never on a command line."""


def migration_args() -> list[str]:
    """The init container's command: bring the database schema to the image's MLflow version."""
    return ["python", "-c", MIGRATION_SCRIPT]


def needs_migration(backend_uri: str, *, on_volume: bool) -> bool:
    """Whether the backend is a database whose schema may be older than the image's MLflow: a
    database server's, or an SQLite file kept on the volume (`on_volume`). Without the volume
    the SQLite file lives in an emptyDir, new with every Pod: the server creates its schema,
    and an init container would only add its start-up (and its memory request) to each Pod's."""
    scheme = backend_uri.split(":", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        return on_volume
    return scheme in BACKEND_SCHEMES


def allowed_hosts(url: ServerURL, name: str, namespace: str | None) -> list[str]:
    """Host headers MLflow (>= 3.5) accepts: the url's host, the Service's in-cluster names and
    localhost (the probes); any port. Its default (localhost and private IPs) would reject the
    external host."""
    hosts = [url.host, name]
    if namespace:
        hosts += [f"{name}.{namespace}", f"{name}.{namespace}.svc"]
    patterns = [p for host in hosts for p in (host, f"{host}:*")]
    if namespace:
        patterns.append(f"{name}.{namespace}.svc.*")  # any cluster domain, any port
    return [*patterns, PROBE_HOST, f"{PROBE_HOST}:*", "127.0.0.1", "127.0.0.1:*"]


FORWARDED_ALLOW_IPS = "*"
"""Proxies whose `X-Forwarded-Proto`/`-For` the server's uvicorn (or gunicorn) trusts: any, since
the Pod is reached through the ingress proxy, at an address the operator cannot know. Without
it MLflow sees plain HTTP and redirects `https://h/team-a` to `http://h/team-a/`."""


BACKEND_STORE_ENV = "MLFLOW_BACKEND_STORE_URI"
"""`mlflow server`'s own variable for `--backend-store-uri`."""


def operator_env() -> list[dict[str, Any]]:
    """The environment of an operator-started server: its backend store (a reference to
    `BACKEND_URI`, expanded by the kubelet, so a user's `BACKEND_URI` entry still decides) and
    a writable HOME."""
    return [
        {"name": BACKEND_STORE_ENV, "value": _ref("BACKEND_URI")},
        {"name": "HOME", "value": SCRATCH_DIR},
    ]


def settings_env(url: ServerURL, name: str, namespace: str | None) -> list[dict[str, Any]]:
    """Settings MLflow (or its HTTP server) reads from the environment, for both ways of
    starting it."""
    values = {
        "MLFLOW_SERVER_ALLOWED_HOSTS": ",".join(allowed_hosts(url, name, namespace)),
        "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": url.origin,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_WORKERS": DEFAULT_WORKERS,
        "FORWARDED_ALLOW_IPS": FORWARDED_ALLOW_IPS,
    }
    return [{"name": k, "value": v} for k, v in values.items()]


def _http_probe(url: ServerURL, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {
            "path": url.prefix + HEALTH_PATH,
            "port": PORT,
            "httpHeaders": [{"name": "Host", "value": PROBE_HOST}],
        },
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _tcp_probe(period: int, failures: int) -> dict[str, Any]:
    return {
        "tcpSocket": {"port": PORT},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def probes(url: ServerURL, command: ServerCommand) -> dict[str, dict[str, Any]]:
    """Startup (up to 5 minutes), readiness and liveness probes.

    An operator-started server is probed at `<prefix>/health`, where `--static-prefix` puts it;
    an image's own command may run any MLflow version (the seed's is 1.21), so it gets TCP
    probes on the port, which every version answers."""

    def probe(period: int, failures: int) -> dict[str, Any]:
        if command is ServerCommand.OPERATOR:
            return _http_probe(url, period, failures)
        return _tcp_probe(period, failures)

    return {
        "startupProbe": probe(5, 60),
        "readinessProbe": probe(10, 3),
        "livenessProbe": probe(20, 6),
    }


DEFAULT_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "100m", "memory": "512Mi"},
    "limits": {"memory": "1Gi"},
}
"""MLflow 3.17.2, one worker, job execution off: about 493 MiB idle (lab-facts); no CPU limit,
so start-up and migrations are not throttled."""
