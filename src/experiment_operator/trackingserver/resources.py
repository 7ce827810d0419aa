"""The API kinds the TrackingServer controller reads and writes, as lightkube resource classes.

The CRD-backed kinds are generic resources; creating them registers them with lightkube, which
the runtime's apply helpers need to map a child dict to its REST path.
"""

from __future__ import annotations

from lightkube import AsyncClient
from lightkube.core import resource as lkr
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import PersistentVolumeClaim, Pod, Secret, Service
from lightkube.resources.networking_v1 import Ingress

from experiment_operator.api.trackingserver import GROUP, KIND, PLURAL, VERSION
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.kubeapi import KindInfo
from experiment_operator.trackingserver.children import TRAEFIK_GROUPS
from experiment_operator.trackingserver.gateway import GATEWAY_GROUP, GATEWAY_VERSION
from experiment_operator.trackingserver.routing import TRAEFIK_VERSION

TrackingServerResource = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)

INGRESS_ROUTES = {
    group: create_namespaced_resource(group, TRAEFIK_VERSION, "IngressRoute", "ingressroutes")
    for group in TRAEFIK_GROUPS
}
MIDDLEWARES = {
    group: create_namespaced_resource(group, TRAEFIK_VERSION, "Middleware", "middlewares")
    for group in TRAEFIK_GROUPS
}

HTTPRoute = create_namespaced_resource(GATEWAY_GROUP, GATEWAY_VERSION, "HTTPRoute", "httproutes")
ListenerSet = create_namespaced_resource(
    GATEWAY_GROUP, GATEWAY_VERSION, "ListenerSet", "listenersets"
)
GATEWAY_KINDS: tuple[type[lkr.Resource], ...] = (HTTPRoute, ListenerSet)
"""Gateway API children, cached with their status (a Gateway's verdict on them)."""

CORE_CHILD_KINDS: tuple[type[lkr.Resource], ...] = (
    PersistentVolumeClaim,
    Secret,
    Deployment,
    Service,
    Ingress,
)

POSTED_KINDS: frozenset[type[lkr.Resource]] = frozenset(
    {Secret, *INGRESS_ROUTES.values(), *MIDDLEWARES.values()}
)
"""Children created with a POST instead of a create-only apply (about 1.8 ms less API server
CPU each, bench/RESULTS.md round 11): kinds the API server adds no defaults to as we build
them, so that the create's field set is the body's and the next pass writes nothing (checked in
tests/integration/trackingserver/test_children_server_validation.py). The others (a Service's
ports, a Deployment's pod template, a claim's volumeMode...) get defaults and stay applied."""

WATCHED_KINDS: tuple[type[lkr.Resource], ...] = (Pod,)
"""Kinds made by others for us (the Deployment's Pods), watched to explain a broken server."""


def child_kinds() -> list[type[lkr.Resource]]:
    """The kinds the controller owns (and caches when served): every routing mode's, so that
    switching modes finds the old mode's objects to delete."""
    return [*CORE_CHILD_KINDS, *INGRESS_ROUTES.values(), *MIDDLEWARES.values(), *GATEWAY_KINDS]


def kind_of(api_version: str, kind: str) -> type[lkr.Resource] | None:
    """The resource class of a child identity, if it is one of ours."""
    return _CHILD_KINDS_BY_IDENTITY.get((api_version, kind))


_CHILD_KINDS_BY_IDENTITY = {
    (KindInfo.of(res).api_version, KindInfo.of(res).kind): res for res in child_kinds()
}


async def served_traefik_group(client: AsyncClient) -> str:
    """`traefik.io` when the cluster serves its IngressRoute, else the seed's legacy group if
    served, else `traefik.io` (its routing objects are then reported as not served)."""
    for group in TRAEFIK_GROUPS:
        if await kubeapi.is_served(client, KindInfo.of(INGRESS_ROUTES[group])):
            return group
    return TRAEFIK_GROUPS[0]
