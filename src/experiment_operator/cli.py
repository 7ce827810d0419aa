"""`experiment-operator`: run the operator, render a TrackingServer's children, print manifests.

Every `run` option can also come from an environment variable `EXPERIMENT_OPERATOR_<OPTION>`
(upper case, `-` → `_`), which is how the Helm chart configures it; a flag on the command line
wins over the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from experiment_operator.trackingserver.children import (
    TRAEFIK_GROUPS,
    ChildOptions,
    IngressController,
    render,
)

ENV_PREFIX = "EXPERIMENT_OPERATOR_"
SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LOG_LEVELS = ("debug", "info", "warning", "error")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

log = logging.getLogger("experiment_operator")


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


# --- run options ---


@dataclass(frozen=True)
class RunOptions:
    """Everything `experiment-operator run` needs, validated."""

    ingress_controller: IngressController
    nginx_ingress_class: str
    namespaces: list[str] | None
    max_concurrent_reconciles: int
    leader_elect: bool
    leader_election_namespace: str
    leader_election_id: str
    metrics_bind_address: tuple[str, int] | None
    health_probe_bind_address: tuple[str, int] | None
    log_format: str
    log_level: str
    resync_period: float
    kubeconfig: str | None


@dataclass(frozen=True)
class _Option:
    flag: str
    convert: Callable[[str], Any]
    default: str | None
    """Given as text, converted like a flag value (None: no default)."""
    help: str
    metavar: str | None = None

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
        "original controller), nginx (networking.k8s.io Ingress) or none (Service only); "
        "switching removes the routing objects no longer needed (default: traefik)",
        "traefik|nginx|none",
    ),
    _Option(
        "--nginx-ingress-class",
        name,
        "nginx",
        "ingressClassName of the Ingresses made with --ingress-controller=nginx (default: nginx)",
        "NAME",
    ),
    _Option(
        "--max-concurrent-reconciles",
        positive_int,
        "4",
        "TrackingServers reconciled in parallel; one TrackingServer is never reconciled twice "
        "at once (default: 4)",
        "N",
    ),
    _Option(
        "--leader-election-namespace",
        name,
        None,
        "namespace of the leader-election Lease (default: the Pod's namespace, read from the "
        "ServiceAccount mount; outside a cluster: default)",
        "NS",
    ),
    _Option(
        "--leader-election-id",
        name,
        "experiment-operator",
        "name of the leader-election Lease (default: experiment-operator)",
        "NAME",
    ),
    _Option(
        "--metrics-bind-address",
        bind_address,
        ":8080",
        "address of the Prometheus /metrics endpoint (plain HTTP); 0 disables it (default: :8080)",
        "[HOST]:PORT",
    ),
    _Option(
        "--health-probe-bind-address",
        bind_address,
        ":8081",
        "address of /healthz (liveness) and /readyz (readiness: caches synced); /metrics is "
        "served there too; 0 disables it (default: :8081)",
        "[HOST]:PORT",
    ),
    _Option(
        "--log-format",
        choice("json", "text"),
        "text",
        "log line format (default: text)",
        "json|text",
    ),
    _Option(
        "--log-level",
        choice(*LOG_LEVELS),
        "info",
        "debug, info, warning or error (default: info)",
        "LEVEL",
    ),
    _Option(
        "--resync-period",
        duration,
        "10h",
        "reconcile every TrackingServer at this interval even without a change, as a safety "
        "net; seconds or a duration such as 10h (default: 10h)",
        "DURATION",
    ),
    _Option(
        "--kubeconfig",
        name,
        None,
        "kubeconfig file (default: the in-cluster ServiceAccount, else $KUBECONFIG or "
        "~/.kube/config)",
        "FILE",
    ),
)


def _add_run_parser(sub: Any) -> argparse.ArgumentParser:
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
            help=f"{option.help} [env {option.env}]",
        )
    run.add_argument(
        "--namespace",
        type=namespaces,
        action="append",
        default=None,
        metavar="NS",
        help="watch only this namespace; repeat or separate with commas (default: all "
        f"namespaces) [env {ENV_PREFIX}NAMESPACE, comma-separated]",
    )
    run.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="reconcile only while holding the leader-election Lease, so several replicas "
        f"can run (default: on) [env {ENV_PREFIX}LEADER_ELECT=true|false]",
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
    if values["leader_election_namespace"] is None:
        values["leader_election_namespace"] = pod_namespace(namespace_file)
    values["ingress_controller"] = IngressController(values["ingress_controller"])
    return RunOptions(**values)


async def run(options: RunOptions) -> int:
    """Run the manager until a signal; 1 when leadership is lost (let the Pod restart)."""
    from lightkube import AsyncClient, ConfigError, KubeConfig

    from experiment_operator.runtime.apply import FIELD_MANAGER
    from experiment_operator.runtime.manager import LeadershipLost, Manager
    from experiment_operator.runtime.metrics import ProbeServer
    from experiment_operator.trackingserver.controller import OWNED_LABELS, child_options, setup

    try:
        config = (
            KubeConfig.from_file(options.kubeconfig)
            if options.kubeconfig
            else KubeConfig.from_env()
        )
    except (ConfigError, OSError) as err:
        log.error("no usable kubeconfig: %s", err)
        return 1
    client = AsyncClient(config=config, field_manager=FIELD_MANAGER)
    metrics_server: ProbeServer | None = None
    try:
        child = await child_options(client, options.ingress_controller, options.nginx_ingress_class)
        manager = Manager(
            client,
            namespaces=options.namespaces,
            owned_label_selector=OWNED_LABELS,
            leader_election=options.leader_elect,
            leader_election_namespace=options.leader_election_namespace,
            leader_election_id=options.leader_election_id,
            probe_address=options.health_probe_bind_address,
            resync_period=options.resync_period,
            handle_signals=True,
        )
        setup(manager, child, max_concurrent_reconciles=options.max_concurrent_reconciles)
        metrics = options.metrics_bind_address
        if metrics is not None and metrics != options.health_probe_bind_address:
            metrics_server = ProbeServer(*metrics, ready=lambda: manager.ready)
            await metrics_server.start()
        log.info(
            "starting",
            extra={
                "ingressController": child.ingress_controller.value,
                "traefikGroup": child.traefik_group,
                "namespaces": ",".join(options.namespaces or []) or "*",
                "leaderElection": options.leader_elect,
            },
        )
        await manager.run()
    except LeadershipLost as err:
        log.error("%s: exiting so that a fresh process campaigns again", err)
        return 1
    finally:
        if metrics_server is not None:
            await metrics_server.stop()
        await client.close()
    return 0


# --- render and manifests ---


def _render(args: argparse.Namespace) -> int:
    docs: list[dict[str, Any]] = []
    for file in args.file:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
        docs += [
            d
            for d in yaml.safe_load_all(text)
            if isinstance(d, dict) and d.get("kind") == "TrackingServer"
        ]
    if not docs:
        print("error: no TrackingServer in the input", file=sys.stderr)
        return 1
    options = ChildOptions(
        ingress_controller=IngressController(args.ingress_controller),
        traefik_group=args.traefik_group,
        nginx_ingress_class=args.nginx_ingress_class,
    )
    sys.stdout.write(
        render(
            docs,
            options,
            show_secrets=args.show_secrets,
            tls_secret_present=args.tls_secret_present or None,
        )
    )
    return 0


def _manifests(args: argparse.Namespace) -> int:
    from experiment_operator.manifests import render_install

    sys.stdout.write(render_install(args.image))
    return 0


def parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The top-level parser and its `run` subparser (which reports option errors)."""
    top = argparse.ArgumentParser(
        prog="experiment-operator",
        description="Kubernetes operator for MLflow TrackingServers (experiment.aiscope/v1alpha2).",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_parser = _add_run_parser(sub)
    rend = sub.add_parser(
        "render",
        help="print a TrackingServer's children as YAML, without a cluster",
        description="Print the children the operator would apply for the TrackingServer(s) in "
        "the given files, as YAML. Secret data is redacted unless --show-secrets.",
    )
    rend.add_argument(
        "-f", "--file", action="append", required=True, metavar="FILE",
        help="YAML file with TrackingServer(s); - reads stdin; repeatable",
    )  # fmt: skip
    rend.add_argument(
        "--ingress-controller",
        choices=[c.value for c in IngressController],
        default="traefik",
        help="routing objects to render (default: traefik)",
    )
    rend.add_argument(
        "--nginx-ingress-class", default="nginx", metavar="NAME",
        help="ingressClassName for --ingress-controller=nginx (default: nginx)",
    )  # fmt: skip
    rend.add_argument(
        "--traefik-group", choices=TRAEFIK_GROUPS, default=TRAEFIK_GROUPS[0],
        help=f"API group of the Traefik objects (default: {TRAEFIK_GROUPS[0]})",
    )  # fmt: skip
    rend.add_argument(
        "--tls-secret-present",
        action="store_true",
        help="render routing with TLS as if a Secret named after the TrackingServer exists "
        "(e.g. made by cert-manager); by default only when cert and key are set",
    )
    rend.add_argument(
        "--show-secrets", action="store_true", help="print Secret data instead of <redacted>"
    )
    man = sub.add_parser(
        "manifests",
        help="print what `kubectl apply -k config/default` installs",
        description="Print the install manifests (CRD, namespace, RBAC, Deployment, metrics "
        "Service) as YAML.",
    )
    man.add_argument("--image", default=None, help="operator image (default: this version's)")
    return top, run_parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    top, run_parser = parsers()
    args = top.parse_args(argv)
    if args.command == "render":
        return _render(args)
    if args.command == "manifests":
        return _manifests(args)
    options = run_options(run_parser, args, os.environ if environ is None else environ)
    from experiment_operator.runtime.logging import configure_logging

    configure_logging("json" if options.log_format == "json" else "text", options.log_level)
    return asyncio.run(run(options))


if __name__ == "__main__":
    sys.exit(main())
