"""`experiment-operator`: run the operator, render a TrackingServer's children, print manifests.

Every `run` option can also come from an environment variable `EXPERIMENT_OPERATOR_<OPTION>`
(upper case, `-` → `_`), which is how the Helm chart configures it; a flag on the command line
wins over the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from experiment_operator.cli.options import (
    ENV_PREFIX,
    RUN_OPTIONS,
    RunOptions,
    add_run_parser,
    run_options,
)
from experiment_operator.trackingserver.children import (
    TRAEFIK_GROUPS,
    ChildOptions,
    IngressController,
    render,
)
from experiment_operator.trackingserver.gateway import ParentGateway
from experiment_operator.trackingserver.mlflow import DEFAULT_MLFLOW_IMAGE

__all__ = ["ENV_PREFIX", "RUN_OPTIONS", "RunOptions", "main", "parsers", "run_options"]


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
        mlflow_image=args.mlflow_image,
        gateway=(
            ParentGateway(args.gateway_name, args.gateway_namespace, args.gateway_section_name)
            if args.gateway_name
            else None
        ),
        listener_sets=args.listener_sets,
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
    run_parser = add_run_parser(sub)
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
        choices=[c.value for c in IngressController if c is not IngressController.AUTO],
        default="traefik",
        help="routing objects to render (default: traefik)",
    )
    rend.add_argument(
        "--gateway-name", metavar="NAME",
        help="parent Gateway of the HTTPRoutes with --ingress-controller=gateway",
    )  # fmt: skip
    rend.add_argument("--gateway-namespace", metavar="NS", help="namespace of that Gateway")
    rend.add_argument("--gateway-section-name", metavar="NAME", help="listener of that Gateway")
    rend.add_argument(
        "--listener-sets", action="store_true",
        help="render a ListenerSet for TLS, as on a cluster serving Gateway API v1.6",
    )  # fmt: skip
    rend.add_argument(
        "--nginx-ingress-class", default="nginx", metavar="NAME",
        help="ingressClassName for --ingress-controller=nginx (default: nginx)",
    )  # fmt: skip
    rend.add_argument(
        "--mlflow-image", default=DEFAULT_MLFLOW_IMAGE, metavar="IMAGE",
        help=f"MLflow image of TrackingServers without one (default: {DEFAULT_MLFLOW_IMAGE})",
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
    from experiment_operator.cli.run import run  # the runtime only when running

    return asyncio.run(run(options))


if __name__ == "__main__":
    sys.exit(main())
