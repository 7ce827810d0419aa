"""One entry point for the reconciler and `render`: every desired child of a TrackingServer.

Also the complete list of children any spec or option could produce, so the reconciler can
delete owned leftovers (a cleared volume, a changed URL, a switched ingress controller).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import yaml

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver.gateway import (
    DEFAULT_HTTPS_PORT,
    GATEWAY_API_VERSION,
    ParentGateway,
    http_route,
    listener_set,
    parent_gateway,
)
from experiment_operator.trackingserver.labels import (
    backend_store_secret_name,
    credentials_secret_name,
    redirect_name,
    unprefixed_ingress_name,
)
from experiment_operator.trackingserver.mlflow import DEFAULT_MLFLOW_IMAGE, ServerPlan
from experiment_operator.trackingserver.routing import (
    TRAEFIK_VERSION,
    ingress_route,
    middlewares,
    nginx_ingresses,
)
from experiment_operator.trackingserver.secrets import (
    backend_store_secret,
    credentials_secret,
    tls_secret,
)
from experiment_operator.trackingserver.storage import persistent_volume_claim
from experiment_operator.trackingserver.workload import deployment, service


class IngressController(StrEnum):
    """Which routing objects to make (the operator's `--ingress-controller`).

    `auto` is resolved per reconcile to the first API the cluster serves (`routingapi`); the
    builders only see the others."""

    AUTO = "auto"
    TRAEFIK = "traefik"
    NGINX = "nginx"
    GATEWAY = "gateway"
    NONE = "none"


TRAEFIK_GROUPS = ("traefik.io", "traefik.containo.us")
"""Traefik v3's group first, then the seed's legacy group."""


@dataclass(frozen=True)
class ChildOptions:
    """Operator-wide options that shape the children."""

    ingress_controller: IngressController = IngressController.TRAEFIK
    traefik_group: str = TRAEFIK_GROUPS[0]
    """`traefik.io` when the cluster serves it, else `traefik.containo.us` (the seed's)."""
    traefik_groups: tuple[str, ...] = TRAEFIK_GROUPS
    """The groups the routing choice tries, in order; `--traefik-group` keeps one, for a
    cluster serving both whose Traefik reads only one (a v2 before v2.10 reads no traefik.io)."""
    nginx_ingress_class: str | None = "nginx"
    """`spec.ingressClassName` of the nginx Ingresses; None leaves it to the cluster default."""
    mlflow_image: str = DEFAULT_MLFLOW_IMAGE
    """The image of TrackingServers without `image` (the operator's `--mlflow-image`)."""
    gateway: ParentGateway | None = None
    """The parent Gateway of HTTPRoutes of CRs without `gatewayRef` (`--gateway-name`...)."""
    listener_sets: bool = False
    """Whether the cluster serves ListenerSet: TLS then gets a per-TrackingServer listener."""
    listener_sets_enabled: bool = True
    """The operator's `--gateway-listener-sets`: use ListenerSet where served."""
    gateway_https_port: int = DEFAULT_HTTPS_PORT
    """The port of the ListenerSet's HTTPS listener (the Gateway's, e.g. Traefik's websecure)."""

    def plan(self, ts: TrackingServer) -> ServerPlan:
        """How `ts`'s server runs; raises `url.InvalidURLError` for an unusable url."""
        return ServerPlan.of(ts, self.mlflow_image)


class ChildRef(NamedTuple):
    """Identity of a child within the CR's namespace."""

    api_version: str
    kind: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ChildRef:
        return cls(obj["apiVersion"], obj["kind"], obj["metadata"]["name"])


def build_children(
    ts: TrackingServer,
    options: ChildOptions,
    *,
    tls_secret_present: bool,
    credentials_version: str | None = None,
    backend_store_version: str | None = None,
) -> list[dict[str, Any]]:
    """Every desired child, in a sensible apply order (Secrets and PVC before the Deployment).

    `tls_secret_present`: a Secret named after the CR exists or will be applied (ours from
    cert/key, or the user's); routing then uses TLS. `credentials_version`: resourceVersion of
    the Secret the S3 credentials come from, to roll pods when it changes;
    `backend_store_version` the same for the backend store Secret. Raises
    `url.InvalidURLError` when the url cannot be routed (stored before the CRD's rules).
    """
    plan = options.plan(ts)
    children = [
        persistent_volume_claim(ts),
        tls_secret(ts),
        credentials_secret(ts),
        backend_store_secret(ts),
        deployment(
            ts,
            plan,
            credentials_version=credentials_version,
            backend_store_version=backend_store_version,
        ),
        service(ts),
    ]
    match options.ingress_controller:
        case IngressController.TRAEFIK:
            group = options.traefik_group
            children.extend(middlewares(ts, plan, group=group))
            children.append(ingress_route(ts, plan, group=group, tls=tls_secret_present))
        case IngressController.NGINX:
            children.extend(
                nginx_ingresses(
                    ts, plan, ingress_class=options.nginx_ingress_class, tls=tls_secret_present
                )
            )
        case IngressController.GATEWAY:
            children.extend(gateway_children(ts, plan, options, tls=tls_secret_present))
        case IngressController.NONE | IngressController.AUTO:
            pass  # AUTO found no routing API served (the reconciler reports it)
    return [child for child in children if child is not None]


def gateway_children(
    ts: TrackingServer, plan: ServerPlan, options: ChildOptions, *, tls: bool
) -> list[dict[str, Any]]:
    """The HTTPRoute, and the ListenerSet when TLS is wanted and the cluster serves it; none
    without a parent Gateway (the reconciler reports that)."""
    parent = parent_gateway(ts, options.gateway)
    if parent is None:
        return []
    with_listener = tls and options.listener_sets
    children = [http_route(ts, plan, parent, listener_set=with_listener)]
    if with_listener:
        children.insert(0, listener_set(ts, plan, parent, port=options.gateway_https_port))
    return children


def possible_children(name: str) -> list[ChildRef]:
    """Every child identity a TrackingServer called `name` could have, under any spec or option.

    The reconciler deletes the ones it owns that are not desired. The Secret named after the CR
    may be the user's (for TLS): delete it only when the CR owns it.
    """
    refs = [
        ChildRef("v1", "PersistentVolumeClaim", name),
        ChildRef("v1", "Secret", name),
        ChildRef("v1", "Secret", credentials_secret_name(name)),
        ChildRef("v1", "Secret", backend_store_secret_name(name)),
        ChildRef("apps/v1", "Deployment", name),
        ChildRef("v1", "Service", name),
    ]
    for group in TRAEFIK_GROUPS:
        refs.append(ChildRef(f"{group}/{TRAEFIK_VERSION}", "Middleware", redirect_name(name)))
        refs.append(ChildRef(f"{group}/{TRAEFIK_VERSION}", "Middleware", name))
        refs.append(ChildRef(f"{group}/{TRAEFIK_VERSION}", "IngressRoute", name))
    refs.append(ChildRef("networking.k8s.io/v1", "Ingress", name))
    refs.append(ChildRef("networking.k8s.io/v1", "Ingress", unprefixed_ingress_name(name)))
    refs.append(ChildRef("networking.k8s.io/v1", "Ingress", redirect_name(name)))
    refs.append(ChildRef(GATEWAY_API_VERSION, "HTTPRoute", name))
    refs.append(ChildRef(GATEWAY_API_VERSION, "ListenerSet", name))
    return refs


def unwanted_children(name: str, desired: Iterable[Mapping[str, Any]]) -> list[ChildRef]:
    """Possible children that are not desired: candidates for deleting if owned."""
    wanted = {ChildRef.of(obj) for obj in desired}
    return [ref for ref in possible_children(name) if ref not in wanted]


REDACTED = "<redacted>"


def render(
    cr_dicts: Iterable[Mapping[str, Any]],
    options: ChildOptions,
    *,
    show_secrets: bool = False,
    tls_secret_present: bool | None = None,
) -> str:
    """The children of each CR as multi-document YAML, without a cluster (`render` command).

    Assumes the TLS Secret exists exactly when the CR carries cert and key, unless
    `tls_secret_present` says otherwise (e.g. a user's cert-manager Secret). Secret data is
    redacted unless `show_secrets`, so the output is safe to paste into a review or a CI log.
    """
    docs: list[dict[str, Any]] = []
    for obj in cr_dicts:
        ts = TrackingServer.from_api(obj)
        tls = ts.spec.tls_enabled if tls_secret_present is None else tls_secret_present
        for child in build_children(ts, options, tls_secret_present=tls):
            if child["kind"] == "Secret" and not show_secrets:
                child["data"] = dict.fromkeys(child["data"], REDACTED)
            docs.append(child)
    return yaml.dump_all(docs, Dumper=_PlainDumper, sort_keys=False, explicit_start=True)


class _PlainDumper(yaml.SafeDumper):
    """A safe dumper that never writes YAML anchors/aliases, which confuse human readers."""

    def ignore_aliases(self, data: Any) -> bool:
        return True
