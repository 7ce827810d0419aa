"""Routing to the MLflow Service: Traefik IngressRoute (+ Middlewares) or nginx Ingresses.

Two shapes, by where MLflow lives (`ServerPlan.serves_prefix`):

- **Prefixed** (servers the operator starts, with `--static-prefix`): every route of MLflow,
  UI, REST API, `/ajax-api` and assets included, is under the url's path, so one route per
  server matches `<path>` and `<path>/...` and nothing is rewritten. Tenants sharing a host
  never see each other's routes; MLflow itself redirects `<path>` to `<path>/`.
- **Stripped** (the image's own command, the seed's): the proxy strips the path, MLflow serves
  at its root, and `/static-files` and `/ajax-api` are routed unprefixed as the seed did (so two
  such servers on one host share those routes). `<path>` without the slash is redirected to
  `<path>/`: the UI's relative asset links break without it.

A url without a path is served at the host root in both. Host and path come from `ServerURL`,
whose characters cannot change a rule (letters, digits, `-._~`, `/`).
"""

from __future__ import annotations

from typing import Any

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver.labels import (
    child_metadata,
    redirect_name,
    unprefixed_ingress_name,
)
from experiment_operator.trackingserver.mlflow import ServerPlan
from experiment_operator.trackingserver.url import ServerURL
from experiment_operator.trackingserver.workload import PORT_NAME

TRAEFIK_VERSION = "v1alpha1"
UNPREFIXED_PATHS = ("/static-files", "/ajax-api")
REWRITE_ANNOTATION = "nginx.ingress.kubernetes.io/rewrite-target"
USE_REGEX_ANNOTATION = "nginx.ingress.kubernetes.io/use-regex"
REDIRECT_ANNOTATION = "nginx.ingress.kubernetes.io/permanent-redirect"
REDIRECT_CODE_ANNOTATION = "nginx.ingress.kubernetes.io/permanent-redirect-code"


def regex_escape(text: str) -> str:
    """`text` as a literal in a Go/PCRE regex (the url's path: only `.` is special there)."""
    return "".join(f"\\{c}" if c in r".^$*+?()[]{}|\\" else c for c in text)


def traefik_match(url: ServerURL) -> str:
    """The rule of the server's own route: its host, and its path with what is below it."""
    host = f"Host(`{url.host}`)"
    if not url.prefix:
        return host
    return f"{host} && (Path(`{url.prefix}`) || PathPrefix(`{url.prefix}/`))"


def _traefik_service(ts: TrackingServer) -> dict[str, Any]:
    return {"name": ts.metadata.name, "port": PORT_NAME}


def ingress_route(ts: TrackingServer, plan: ServerPlan, *, group: str, tls: bool) -> dict[str, Any]:
    """The IngressRoute: the server's route (through the redirect and StripPrefix middlewares
    when stripped), plus the seed's unprefixed assets route when stripped."""
    url = plan.url
    route: dict[str, Any] = {"kind": "Rule", "match": traefik_match(url)}
    routes = [route]
    if url.prefix and not plan.serves_prefix:
        names = [redirect_name(ts.metadata.name), ts.metadata.name]
        route["middlewares"] = [{"name": n} for n in names]
        assets = " || ".join(f"PathPrefix(`{p}`)" for p in UNPREFIXED_PATHS)
        routes.append({"kind": "Rule", "match": f"Host(`{url.host}`) && ({assets})"})
    for r in routes:
        r["services"] = [_traefik_service(ts)]
    spec: dict[str, Any] = {"entryPoints": ["websecure", "web"] if tls else ["web"]}
    spec["routes"] = routes
    if tls:
        spec["tls"] = {"secretName": ts.metadata.name}
    return {
        "apiVersion": f"{group}/{TRAEFIK_VERSION}",
        "kind": "IngressRoute",
        "metadata": child_metadata(ts),
        "spec": spec,
    }


def redirect_regex(url: ServerURL) -> tuple[str, str]:
    """Traefik's RedirectRegex (regex, replacement) for `<path>` → `<path>/`, query kept."""
    regex = rf"^(https?://[^/]+{regex_escape(url.prefix)})(\?.*)?$"
    return regex, "${1}/${2}"


def middlewares(ts: TrackingServer, plan: ServerPlan, *, group: str) -> list[dict[str, Any]]:
    """The stripped shape's Middlewares: StripPrefix `<name>` (the seed's) and the slash
    redirect `<name>-redirect`. None for a prefixed server or a url without a path."""
    prefix = plan.url.prefix
    if not prefix or plan.serves_prefix:
        return []
    api_version = f"{group}/{TRAEFIK_VERSION}"
    regex, replacement = redirect_regex(plan.url)
    name = ts.metadata.name
    return [
        {
            "apiVersion": api_version,
            "kind": "Middleware",
            "metadata": child_metadata(ts, redirect_name(name)),
            "spec": {
                "redirectRegex": {"regex": regex, "replacement": replacement, "permanent": True}
            },
        },
        {
            "apiVersion": api_version,
            "kind": "Middleware",
            "metadata": child_metadata(ts),
            "spec": {"stripPrefix": {"prefixes": [prefix]}},
        },
    ]


def _nginx_path(path: str, path_type: str, ts: TrackingServer) -> dict[str, Any]:
    backend = {"service": {"name": ts.metadata.name, "port": {"name": PORT_NAME}}}
    return {"path": path, "pathType": path_type, "backend": backend}


def _ingress(
    ts: TrackingServer,
    url: ServerURL,
    name: str,
    paths: list[dict[str, Any]],
    *,
    ingress_class: str | None,
    tls: bool,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    metadata = child_metadata(ts, name)
    if annotations:
        metadata["annotations"] = annotations
    spec: dict[str, Any] = {}
    if ingress_class:
        spec["ingressClassName"] = ingress_class
    if tls:
        spec["tls"] = [{"hosts": [url.host], "secretName": ts.metadata.name}]
    spec["rules"] = [{"host": url.host, "http": {"paths": paths}}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": spec,
    }


def nginx_regex(url: ServerURL) -> str:
    """The stripped shape's path regex: `<path>/` and below, the rest captured as `$1`."""
    return regex_escape(url.prefix) + "/(.*)"


def nginx_ingresses(
    ts: TrackingServer, plan: ServerPlan, *, ingress_class: str | None, tls: bool
) -> list[dict[str, Any]]:
    """Ingresses for ingress-nginx.

    Prefixed, or without a path: one Ingress `<name>` for `<path>` (Prefix matches whole path
    elements: `/team-a` and `/team-a/...`, never `/team-ab`). Stripped: `<name>` matches
    `<path>/(.*)` and rewrites to `/$1`; `<name>-static` serves `/static-files` and `/ajax-api`
    unrewritten (nginx annotations apply to every path of an Ingress, so the seed's single
    Ingress rewrote those too); `<name>-redirect` redirects exactly `<path>` to `<path>/`.
    """
    url, name = plan.url, ts.metadata.name

    def ingress(name: str, paths: list[Any], annotations: dict[str, str] | None = None) -> Any:
        return _ingress(
            ts, url, name, paths, ingress_class=ingress_class, tls=tls, annotations=annotations
        )

    if not url.prefix or plan.serves_prefix:
        return [ingress(name, [_nginx_path(url.prefix or "/", "Prefix", ts)])]
    prefixed = ingress(
        name,
        [_nginx_path(nginx_regex(url), "ImplementationSpecific", ts)],
        {REWRITE_ANNOTATION: "/$1", USE_REGEX_ANNOTATION: "true"},
    )
    assets = ingress(
        unprefixed_ingress_name(name), [_nginx_path(p, "Prefix", ts) for p in UNPREFIXED_PATHS]
    )
    redirect = ingress(
        redirect_name(name),
        [_nginx_path(url.prefix, "Exact", ts)],
        {REDIRECT_ANNOTATION: f"{url.tracking_uri}/", REDIRECT_CODE_ANNOTATION: "308"},
    )
    return [prefixed, assets, redirect]
