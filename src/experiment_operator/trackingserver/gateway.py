"""Gateway API routing: an HTTPRoute per TrackingServer, and a ListenerSet for its TLS.

The HTTPRoute attaches to a parent Gateway the platform team runs (`--gateway-name`, or the
CR's `gatewayRef`), matches the url's host and path, and has the same two shapes as the other
modes (see `routing`): a server that lives under its prefix gets one PathPrefix rule and no
rewrite; a server the image's own command starts (served at root) gets a rewrite of the prefix
to `/` (URLRewrite ReplacePrefixMatch), a redirect of exactly `<path>` to `<path>/`, and the
seed's unprefixed `/static-files` and `/ajax-api`. Gateway API ranks an Exact match above any
prefix and longer prefixes above shorter ones, across routes, so tenants on one host do not
shadow each other.

TLS belongs to the Gateway's listeners. Where the cluster serves ListenerSet (Gateway API
v1.6), a per-tenant ListenerSet adds an HTTPS listener for the url's host with the
TrackingServer's TLS Secret, and the route attaches to it besides the Gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver.labels import child_metadata
from experiment_operator.trackingserver.mlflow import PORT, ServerPlan

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
GATEWAY_API_VERSION = f"{GATEWAY_GROUP}/{GATEWAY_VERSION}"
LISTENER_SET_SECTION = "https"
"""The name of the one listener of a TrackingServer's ListenerSet (its route's sectionName)."""
DEFAULT_HTTPS_PORT = 443
REDIRECT_STATUS = 301
"""Permanent; Gateway API's standard channel allows only 301 and 302."""
UNPREFIXED_PATHS = ("/static-files", "/ajax-api")


@dataclass(frozen=True)
class ParentGateway:
    """The Gateway the HTTPRoutes attach to (a Gateway API ParentReference)."""

    name: str
    namespace: str | None = None
    """None: the TrackingServer's namespace."""
    section_name: str | None = None
    """One listener of the Gateway; None: every listener whose hostname and allowedRoutes fit."""

    def parent_ref(self) -> dict[str, Any]:
        ref: dict[str, Any] = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": self.name}
        if self.namespace:
            ref["namespace"] = self.namespace
        if self.section_name:
            ref["sectionName"] = self.section_name
        return ref


def parent_gateway(ts: TrackingServer, default: ParentGateway | None) -> ParentGateway | None:
    """The CR's `gatewayRef` (replacing the operator's default as a whole), else the default."""
    ref = ts.spec.gateway_ref
    if ref is None:
        return default
    return ParentGateway(ref.name, ref.namespace or None, ref.section_name or None)


def _backend(ts: TrackingServer) -> list[dict[str, Any]]:
    return [{"name": ts.metadata.name, "port": PORT}]


def _prefix_match(path: str) -> dict[str, Any]:
    return {"path": {"type": "PathPrefix", "value": path}}


def route_rules(ts: TrackingServer, plan: ServerPlan) -> list[dict[str, Any]]:
    """The HTTPRoute's rules for the server's prefix mode (see the module docstring)."""
    prefix = plan.url.prefix
    if not prefix or plan.serves_prefix:
        return [{"matches": [_prefix_match(prefix or "/")], "backendRefs": _backend(ts)}]
    redirect = {
        "type": "RequestRedirect",
        "requestRedirect": {
            "path": {"type": "ReplaceFullPath", "replaceFullPath": f"{prefix}/"},
            "statusCode": REDIRECT_STATUS,
        },
    }
    rewrite = {
        "type": "URLRewrite",
        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
    }
    return [
        {"matches": [{"path": {"type": "Exact", "value": prefix}}], "filters": [redirect]},
        {"matches": [_prefix_match(prefix)], "filters": [rewrite], "backendRefs": _backend(ts)},
        {"matches": [_prefix_match(p) for p in UNPREFIXED_PATHS], "backendRefs": _backend(ts)},
    ]


def http_route(
    ts: TrackingServer, plan: ServerPlan, parent: ParentGateway, *, listener_set: bool
) -> dict[str, Any]:
    """The HTTPRoute `<name>`: attached to `parent`, and to the CR's ListenerSet if any."""
    parents = [parent.parent_ref()]
    if listener_set:
        parents.append(
            {
                "group": GATEWAY_GROUP,
                "kind": "ListenerSet",
                "name": ts.metadata.name,
                "sectionName": LISTENER_SET_SECTION,
            }
        )
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": child_metadata(ts),
        "spec": {
            "parentRefs": parents,
            "hostnames": [plan.url.host],
            "rules": route_rules(ts, plan),
        },
    }


def listener_set(
    ts: TrackingServer, plan: ServerPlan, parent: ParentGateway, *, port: int
) -> dict[str, Any]:
    """The ListenerSet `<name>`: one HTTPS listener for the url's host on `parent`, terminating
    TLS with the Secret named after the TrackingServer. The Gateway must allow it
    (`spec.allowedListeners`)."""
    parent_ref: dict[str, Any] = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": parent.name}
    if parent.namespace:
        parent_ref["namespace"] = parent.namespace
    listener = {
        "name": LISTENER_SET_SECTION,
        "hostname": plan.url.host,
        "port": port,
        "protocol": "HTTPS",
        "tls": {
            "mode": "Terminate",
            "certificateRefs": [{"kind": "Secret", "name": ts.metadata.name}],
        },
    }
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": "ListenerSet",
        "metadata": child_metadata(ts),
        "spec": {"parentRef": parent_ref, "listeners": [listener]},
    }
