"""Options of `experiment-operator run`: flags, their `EXPERIMENT_OPERATOR_*` environment
variables (how the Helm chart sets them) and defaults, validated into `RunOptions`."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiment_operator.trackingserver.children import IngressController
from experiment_operator.trackingserver.mlflow import DEFAULT_MLFLOW_IMAGE

ENV_PREFIX = "EXPERIMENT_OPERATOR_"
SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LOG_LEVELS = ("debug", "info", "warning", "error")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# --- option types (raise ValueError/ArgumentTypeError with a message) ---


def duration(text: str) -> float:
    """Seconds: a number (`3600`) or a Go-style duration (`10h`, `1h30m`, `45s`), > 0."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a duration (e.g. 36000, 10h, 1h30m, 45s)"
            ) from None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be positive")
    return seconds


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def bind_address(text: str) -> tuple[str, int] | None:
    """`:8080` (all interfaces), `127.0.0.1:8080`, or `0` to disable (controller-runtime's)."""
    if text.strip() == "0":
        return None
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not [HOST]:PORT (e.g. :8080) or 0")
    return (host.strip("[]") or "0.0.0.0", int(port))


def namespaces(text: str) -> list[str]:
    """One or more comma-separated namespace names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if not DNS1123_LABEL.match(n) or len(n) > 63]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated namespace list")
    return names


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true or false)")


def choice(*allowed: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(allowed)}")
        return value

    return convert


def name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()


def image(text: str) -> str:
    value = text.strip()
    if not value or any(c.isspace() for c in value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a container image reference")
    return value


# --- run options ---


@dataclass(frozen=True)
class RunOptions:
    """Everything `experiment-operator run` needs, validated."""

    ingress_controller: IngressController
    nginx_ingress_class: str
    mlflow_image: str
    namespaces: list[str] | None
    max_concurrent_reconciles: int
    leader_elect: bool
    leader_election_namespace: str
    leader_election_id: str
    leader_election_identity: str | None
    pod_uid: str | None
    leader_election_lease_duration: float
    leader_election_renew_deadline: float
    leader_election_retry_period: float
    metrics_bind_address: tuple[str, int] | None
    health_probe_bind_address: tuple[str, int] | None
    log_format: str
    log_level: str
    resync_period: float
    kubeconfig: str | None


def option_help(text: str, default: str, env: str) -> str:
    """One help line in the fixed shape `manifests.configuration` parses into the docs' table."""
    return f"{text} (default: {default}) [env {env}]"


@dataclass(frozen=True)
class _Option:
    flag: str
    convert: Callable[[str], Any]
    default: str | None
    """Given as text, converted like a flag value (None: no default)."""
    help: str
    metavar: str
    shown_default: str | None = None
    """The default as `--help` describes it, when `default` is None or not self-explanatory."""

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()


RUN_OPTIONS = (
    _Option(
        "--ingress-controller",
        choice(*(c.value for c in IngressController)),
        "traefik",
        "how a TrackingServer's url is routed: traefik (IngressRoute + Middleware, as the "
        "original controller), nginx (networking.k8s.io/v1 Ingress) or none (Service only); "
        "switching removes the routing objects no longer needed",
        "traefik|nginx|none",
    ),
    _Option(
        "--nginx-ingress-class",
        name,
        "nginx",
        "ingressClassName of the Ingresses made with --ingress-controller=nginx",
        "NAME",
    ),
    _Option(
        "--mlflow-image",
        image,
        DEFAULT_MLFLOW_IMAGE,
        "MLflow image of TrackingServers that set no image; the operator starts it with its "
        "own mlflow server command line (so does any image of the same repository or of "
        "ghcr.io/mlflow/mlflow)",
        "IMAGE",
    ),
    _Option(
        "--max-concurrent-reconciles",
        positive_int,
        "16",
        "TrackingServers reconciled in parallel (most of a reconcile is waiting for the API "
        "server; bench/RESULTS.md has the measurement); one TrackingServer is never reconciled "
        "twice at once",
        "N",
    ),
    _Option(
        "--leader-election-namespace",
        name,
        None,
        "namespace of the leader-election Lease; the generated RBAC allows Leases only in the "
        "operator's own namespace",
        "NS",
        shown_default="the Pod's namespace, read from the ServiceAccount mount; outside a "
        "cluster: default",
    ),
    _Option(
        "--leader-election-id",
        name,
        "experiment-operator",
        "name of the leader-election Lease",
        "NAME",
    ),
    _Option(
        "--leader-election-identity",
        name,
        None,
        "this replica's name in the leader-election Lease; the Helm chart and config/ pass the "
        "Pod's name",
        "NAME",
        shown_default="the host name, which is the Pod's name in a cluster",
    ),
    _Option(
        "--pod-uid",
        name,
        None,
        "the Pod's UID (downward API metadata.uid): a restarted container of the same Pod takes "
        "its leader-election Lease back at once instead of waiting for it to expire, since the "
        "kubelet never runs two instances of a container at once; leave unset outside a Pod",
        "UID",
        shown_default="unset: a restarted process waits for its old Lease to expire",
    ),
    _Option(
        "--leader-election-lease-duration",
        duration,
        "15s",
        "how long a Lease that is no longer renewed blocks the other replicas (the failover "
        "time after a crash); must exceed the renew deadline",
        "DURATION",
    ),
    _Option(
        "--leader-election-renew-deadline",
        duration,
        "10s",
        "the leader stops reconciling if it could not renew its Lease for this long, before "
        "any other replica may take over; must exceed the retry period",
        "DURATION",
    ),
    _Option(
        "--leader-election-retry-period",
        duration,
        "2s",
        "how often the leader renews its Lease and the other replicas try to acquire it",
        "DURATION",
    ),
    _Option(
        "--metrics-bind-address",
        bind_address,
        ":8080",
        "address of the Prometheus /metrics endpoint (plain HTTP); 0 disables it",
        "[HOST]:PORT",
    ),
    _Option(
        "--health-probe-bind-address",
        bind_address,
        ":8081",
        "address of /healthz (liveness: the event loop answers) and /readyz (readiness: caches "
        "synced); /metrics is served there too; 0 disables it",
        "[HOST]:PORT",
    ),
    _Option(
        "--log-format",
        choice("json", "text"),
        "text",
        "log lines as JSON objects or key=value text; reconcile lines carry the object key",
        "json|text",
    ),
    _Option(
        "--log-level",
        choice(*LOG_LEVELS),
        "info",
        "the least severe lines logged: debug, info, warning or error",
        "LEVEL",
    ),
    _Option(
        "--resync-period",
        duration,
        "10h",
        "reconcile every TrackingServer at this interval even without a change, as a safety "
        "net (watches deliver changes at once): seconds such as 36000, or a duration such as 10h, "
        "1h30m or 45s",
        "DURATION",
    ),
    _Option(
        "--kubeconfig",
        name,
        None,
        "kubeconfig file to reach the API server with",
        "FILE",
        shown_default="the in-cluster ServiceAccount, else $KUBECONFIG or ~/.kube/config",
    ),
)


def add_run_parser(sub: Any) -> argparse.ArgumentParser:
    run: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run the operator",
        description="Run the operator: watch TrackingServers and drive their children. Every "
        f"option can also be set with an environment variable {ENV_PREFIX}<OPTION> (e.g. "
        f"{ENV_PREFIX}INGRESS_CONTROLLER=nginx); a flag wins over the environment.",
    )
    for option in RUN_OPTIONS:
        run.add_argument(
            option.flag,
            type=option.convert,
            default=argparse.SUPPRESS,  # absent unless given: then the environment decides
            metavar=option.metavar,
            help=option_help(option.help, option.shown_default or option.default or "", option.env),
        )
    run.add_argument(
        "--namespace",
        type=namespaces,
        action="append",
        default=None,
        metavar="NS",
        help=option_help(
            "watch only this namespace; repeat or separate with commas",
            "all namespaces",
            f"{ENV_PREFIX}NAMESPACE, comma-separated",
        ),
    )
    run.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=option_help(
            "reconcile only while holding the leader-election Lease; the other replicas keep "
            "warm caches and take over within seconds; needed for more than one replica",
            "on",
            f"{ENV_PREFIX}LEADER_ELECT=true|false",
        ),
    )
    return run


def pod_namespace(path: Path = SERVICE_ACCOUNT_NAMESPACE_FILE) -> str:
    """The namespace the operator runs in, from the ServiceAccount mount; `default` outside."""
    try:
        return path.read_text().strip() or "default"
    except OSError:
        return "default"


def run_options(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    environ: Mapping[str, str],
    namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE_FILE,
) -> RunOptions:
    """Resolve each option: flag, else environment variable, else default (exit 2 if bad)."""

    def from_env(env: str, convert: Callable[[str], Any], default: str | None) -> Any:
        raw = environ.get(env) or default
        if raw is None:
            return None
        try:
            return convert(raw)
        except (argparse.ArgumentTypeError, ValueError) as err:
            parser.error(f"{env}={raw!r}: {err}")

    values: dict[str, Any] = {}
    for option in RUN_OPTIONS:
        if hasattr(args, option.dest):
            values[option.dest] = getattr(args, option.dest)
        else:
            values[option.dest] = from_env(option.env, option.convert, option.default)
    if args.namespace is not None:
        values["namespaces"] = [n for group in args.namespace for n in group]
    else:
        values["namespaces"] = from_env(f"{ENV_PREFIX}NAMESPACE", namespaces, None)
    values["leader_elect"] = (
        args.leader_elect
        if args.leader_elect is not None
        else from_env(f"{ENV_PREFIX}LEADER_ELECT", boolean, "true")
    )
    lease = values["leader_election_lease_duration"]
    renew = values["leader_election_renew_deadline"]
    retry = values["leader_election_retry_period"]
    if not lease > renew > retry:
        parser.error(
            f"leader election needs lease duration ({lease:g}s) > renew deadline ({renew:g}s) "
            f"> retry period ({retry:g}s)"
        )
    if values["leader_election_namespace"] is None:
        values["leader_election_namespace"] = pod_namespace(namespace_file)
    values["ingress_controller"] = IngressController(values["ingress_controller"])
    return RunOptions(**values)
