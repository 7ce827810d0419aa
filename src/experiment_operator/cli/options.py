"""Options of `experiment-operator run`: flags, their `EXPERIMENT_OPERATOR_*` environment
variables (how the Helm chart sets them) and defaults, validated into `RunOptions`."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiment_operator.cli.types import (
    bind_address,
    boolean,
    choice,
    duration,
    image,
    name,
    namespace_name,
    namespaces,
    port,
    positive_int,
)
from experiment_operator.trackingserver.children import TRAEFIK_GROUPS, IngressController
from experiment_operator.trackingserver.mlflow import DEFAULT_MLFLOW_IMAGE

ENV_PREFIX = "EXPERIMENT_OPERATOR_"
SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
LOG_LEVELS = ("debug", "info", "warning", "error")
AUTO_GROUP = "auto"

# --- run options ---


@dataclass(frozen=True)
class RunOptions:
    """Everything `experiment-operator run` needs, validated."""

    ingress_controller: IngressController
    traefik_group: str
    nginx_ingress_class: str
    gateway_name: str | None
    gateway_namespace: str | None
    gateway_section_name: str | None
    gateway_https_port: int
    gateway_listener_sets: bool
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
        "auto",
        "how a TrackingServer's url is routed: traefik (IngressRoute + Middleware, as the "
        "original controller; group traefik.io, else traefik.containo.us), nginx "
        "(networking.k8s.io/v1 Ingress), gateway (Gateway API HTTPRoute, see --gateway-name), "
        "none (Service only), or auto: the first the cluster serves of traefik.io, "
        "traefik.containo.us and Gateway API, looked up again while none is (a CRD installed "
        "later is used without a restart); switching removes the routing objects no longer "
        "needed (docs/routing.md)",
        "auto|traefik|nginx|gateway|none",
    ),
    _Option(
        "--traefik-group",
        choice(AUTO_GROUP, *TRAEFIK_GROUPS),
        AUTO_GROUP,
        "API group of the IngressRoutes and Middlewares (traefik and auto modes): auto takes "
        "traefik.io if served, else traefik.containo.us; name one for a cluster that serves "
        "both but whose Traefik reads only that one (v3 reads no traefik.containo.us, a v2 "
        "before v2.10 no traefik.io)",
        "auto|" + "|".join(TRAEFIK_GROUPS),
    ),
    _Option(
        "--nginx-ingress-class",
        name,
        "nginx",
        "ingressClassName of the Ingresses made with --ingress-controller=nginx",
        "NAME",
    ),
    _Option(
        "--gateway-name",
        name,
        None,
        "the Gateway that HTTPRoutes attach to with Gateway API routing; a TrackingServer's "
        "spec.gatewayRef replaces it (with --gateway-namespace and --gateway-section-name)",
        "NAME",
        shown_default="unset: each TrackingServer needs spec.gatewayRef",
    ),
    _Option(
        "--gateway-namespace",
        namespace_name,
        None,
        "namespace of the --gateway-name Gateway; its listeners must allow routes from the "
        "TrackingServers' namespaces",
        "NS",
        shown_default="each TrackingServer's own namespace",
    ),
    _Option(
        "--gateway-section-name",
        name,
        None,
        "listener of the --gateway-name Gateway to attach to",
        "NAME",
        shown_default="unset: every listener that accepts the route",
    ),
    _Option(
        "--gateway-https-port",
        port,
        "443",
        "port of the HTTPS listener of each TrackingServer's ListenerSet (Gateway API v1.6; "
        "the Gateway must allow ListenerSets), which terminates TLS with its cert and key; "
        "the port the Gateway implementation listens on for HTTPS (Traefik: its websecure "
        "entryPoint's port)",
        "PORT",
    ),
    _Option(
        "--gateway-listener-sets",
        boolean,
        "true",
        "make a ListenerSet per TrackingServer with TLS where the cluster serves ListenerSet; "
        "false when the Gateway implementation does not implement it although its CRD is "
        "installed (e.g. Traefik v3.6, which implements Gateway API v1.4): cert and key are "
        "then reported unused",
        "true|false",
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
