"""Routing to the MLflow Service: Traefik IngressRoute + Middleware (as the seed) or nginx Ingress.

MLflow's UI fetches `/static-files/...` and `/ajax-api/...` from the host root, whatever prefix it
is served under; hence the second, unprefixed route in both variants.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver.labels import child_metadata, unprefixed_ingress_name
from experiment_operator.trackingserver.workload import PORT_NAME

TRAEFIK_VERSION = "v1alpha1"
UNPREFIXED_PATHS = ("/static-files", "/ajax-api")
REWRITE_ANNOTATION = "nginx.ingress.kubernetes.io/rewrite-target"
USE_REGEX_ANNOTATION = "nginx.ingress.kubernetes.io/use-regex"


class ParsedURL(NamedTuple):
    host: str
    """Host name without port: neither Traefik's Host() nor an Ingress rule accepts a port."""
    path: str
    """Decoded path without trailing slashes; empty when the server is served at the root."""


def parse_url(url: str) -> ParsedURL:
    """Host and prefix of `spec.url` (the API server has checked it is an http(s) URL)."""
    parts = urlsplit(url)
    return ParsedURL(parts.hostname or "", unquote(parts.path).rstrip("/"))


def _traefik_service(ts: TrackingServer) -> dict[str, Any]:
    return {"name": ts.metadata.name, "port": PORT_NAME}


def ingress_route(ts: TrackingServer, *, group: str, tls: bool) -> dict[str, Any]:
    """The seed's IngressRoute: `Host() && PathPrefix()` through the StripPrefix middleware plus
    the unprefixed assets route, or a single Host route when the URL has no path."""
    host, path = parse_url(ts.spec.url)
    if path:
        routes: list[dict[str, Any]] = [
            {
                "kind": "Rule",
                "match": f"Host(`{host}`) && PathPrefix(`{path}`)",
                "middlewares": [{"name": ts.metadata.name}],
                "services": [_traefik_service(ts)],
            },
            {
                "kind": "Rule",
                "match": f"Host(`{host}`) && "
                "(PathPrefix(`/static-files`) || PathPrefix(`/ajax-api`))",
                "services": [_traefik_service(ts)],
            },
        ]
    else:
        routes = [{"kind": "Rule", "match": f"Host(`{host}`)", "services": [_traefik_service(ts)]}]
    spec: dict[str, Any] = {
        "entryPoints": ["websecure", "web"] if tls else ["web"],
        "routes": routes,
    }
    if tls:
        spec["tls"] = {"secretName": ts.metadata.name}
    return {
        "apiVersion": f"{group}/{TRAEFIK_VERSION}",
        "kind": "IngressRoute",
        "metadata": child_metadata(ts),
        "spec": spec,
    }


def middleware(ts: TrackingServer, *, group: str) -> dict[str, Any] | None:
    """The StripPrefix Middleware for the URL's path, or None when there is no path."""
    path = parse_url(ts.spec.url).path
    if not path:
        return None
    return {
        "apiVersion": f"{group}/{TRAEFIK_VERSION}",
        "kind": "Middleware",
        "metadata": child_metadata(ts),
        "spec": {"stripPrefix": {"prefixes": [path]}},
    }


def _nginx_path(path: str, path_type: str, ts: TrackingServer) -> dict[str, Any]:
    backend = {"service": {"name": ts.metadata.name, "port": {"name": PORT_NAME}}}
    return {"path": path, "pathType": path_type, "backend": backend}


def _ingress(
    ts: TrackingServer,
    name: str,
    paths: list[dict[str, Any]],
    *,
    ingress_class: str | None,
    tls: bool,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    host = parse_url(ts.spec.url).host
    metadata = child_metadata(ts, name)
    if annotations:
        metadata["annotations"] = annotations
    spec: dict[str, Any] = {}
    if ingress_class:
        spec["ingressClassName"] = ingress_class
    if tls:
        spec["tls"] = [{"hosts": [host], "secretName": ts.metadata.name}]
    spec["rules"] = [{"host": host, "http": {"paths": paths}}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": spec,
    }


_REGEX_SPECIAL = re.compile(r"([.^$*+?()\[\]{}|\\])")


def nginx_ingresses(
    ts: TrackingServer, *, ingress_class: str | None, tls: bool
) -> list[dict[str, Any]]:
    """Ingresses for ingress-nginx.

    With a path: `<name>` matches `<path>(/|$)(.*)` and rewrites to `/$2` (the prefix stripped),
    and `<name>-static` serves `/static-files` and `/ajax-api` unrewritten. Two objects because
    nginx annotations apply to every path of an Ingress: the seed's single Ingress rewrote the
    asset paths too. Without a path: one Ingress for `/`.
    """
    path = parse_url(ts.spec.url).path
    name = ts.metadata.name
    if not path:
        root = [_nginx_path("/", "Prefix", ts)]
        return [_ingress(ts, name, root, ingress_class=ingress_class, tls=tls)]
    regex = _REGEX_SPECIAL.sub(r"\\\1", path) + "(/|$)(.*)"
    prefixed = _ingress(
        ts,
        name,
        [_nginx_path(regex, "ImplementationSpecific", ts)],
        ingress_class=ingress_class,
        tls=tls,
        annotations={REWRITE_ANNOTATION: "/$2", USE_REGEX_ANNOTATION: "true"},
    )
    assets = _ingress(
        ts,
        unprefixed_ingress_name(name),
        [_nginx_path(p, "Prefix", ts) for p in UNPREFIXED_PATHS],
        ingress_class=ingress_class,
        tls=tls,
    )
    return [prefixed, assets]
