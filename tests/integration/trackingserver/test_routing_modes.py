"""Routing modes on the real control plane: Gateway API, the choice among the served APIs, CRDs
installed while the operator runs, and switching a live TrackingServer between modes.

Every test runs its own operator (as its ServiceAccount, one namespace). No Gateway controller
runs here: where a test needs a Gateway's verdict, it writes the HTTPRoute's status itself, as
one would. Tests that take CRDs away give them back (`experiment_lab.crds`).
"""

from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient

from experiment_lab.cluster import Kubectl
from experiment_lab.crds import HTTPROUTES, LISTENERSETS, TRAEFIK_ROUTING, crds_removed
from experiment_lab.objects import (
    condition,
    create,
    get,
    has_event,
    merge_patch,
    ready_is,
    sample,
    trackingserver,
)
from experiment_lab.operator import run_operator
from experiment_lab.wait import eventually
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.kubeapi import KindInfo, Obj
from experiment_operator.trackingserver.children import ChildOptions, IngressController
from experiment_operator.trackingserver.gateway import GATEWAY_API_VERSION, ParentGateway
from experiment_operator.trackingserver.resources import HTTPRoute

pytestmark = pytest.mark.integration

NAME = "trackingserver"
GW = GATEWAY_API_VERSION
IR = "traefik.io/v1alpha1"


def gateway_options(namespace: str, mode: IngressController = IngressController.GATEWAY) -> Any:
    return ChildOptions(ingress_controller=mode, gateway=ParentGateway("public", namespace, "web"))


async def exists(kube: AsyncClient, api_version: str, kind: str, ns: str, name: str = NAME) -> bool:
    return await get(kube, api_version, kind, ns, name) is not None


async def write_route_verdict(
    kube: AsyncClient, ns: str, accepted: bool, reason: str, message: str
) -> None:
    """What a Gateway controller writes on the HTTPRoute's status subresource."""
    route = await get(kube, GW, "HTTPRoute", ns, NAME)
    assert route is not None
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    generation = route["metadata"]["generation"]
    parent = {
        "parentRef": route["spec"]["parentRefs"][0],
        "controllerName": "example.com/fake-gateway",
        "conditions": [
            {"type": t, "status": s, "reason": r, "message": m, "lastTransitionTime": now,
             "observedGeneration": generation}
            for t, s, r, m in (
                ("Accepted", "True" if accepted else "False", reason, message),
                ("ResolvedRefs", "True", "ResolvedRefs", "resolved"),
            )
        ],
    }  # fmt: skip
    await kubeapi.request(
        kube,
        "PATCH",
        KindInfo.of(HTTPRoute).path(ns, NAME, "status"),
        body={"status": {"parents": [parent]}},
        content_type=kubeapi.MERGE_PATCH_CONTENT_TYPE,
    )


async def test_gateway_mode_routes_and_reports_the_gateways_verdict(
    operator_kubeconfig: Path, kube: AsyncClient, namespace: str
) -> None:
    options = gateway_options(namespace)
    async with run_operator(operator_kubeconfig, namespaces=[namespace], options=options):
        await create(kube, sample("blog", namespace))  # the seed's image: served at root
        await eventually(ready_is(kube, namespace, "True", "Available"), within=60)
        route = await get(kube, GW, "HTTPRoute", namespace, NAME)
        assert route is not None  # accepted by the API server: the upstream schema's CEL rules
        assert route["spec"]["hostnames"] == ["mlflow.platform.aiscope.io"]
        assert [p["kind"] for p in route["spec"]["parentRefs"]] == ["Gateway", "ListenerSet"]
        rewrite = route["spec"]["rules"][1]["filters"][0]["urlRewrite"]["path"]
        assert rewrite == {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}
        listener_set = await get(kube, GW, "ListenerSet", namespace, NAME)
        assert listener_set is not None
        [listener] = listener_set["spec"]["listeners"]
        assert listener["tls"]["certificateRefs"][0]["name"] == NAME
        assert not await exists(kube, IR, "IngressRoute", namespace)

        await write_route_verdict(
            kube, namespace, False, "NotAllowedByListeners", "namespace not allowed by web"
        )
        await eventually(ready_is(kube, namespace, "False", "NotAllowedByListeners"))
        stored = await trackingserver(kube, namespace)
        assert "namespace not allowed by web" in condition(stored)["message"]
        assert "url" not in stored["status"]
        await eventually(has_event(kube, namespace, "Warning", "NotAllowedByListeners"))

        await write_route_verdict(kube, namespace, True, "Accepted", "accepted")
        await eventually(ready_is(kube, namespace, "True", "Available"))


async def test_without_listener_sets_cert_and_key_are_reported_unused_until_served(
    operator_kubeconfig: Path, kube: AsyncClient, namespace: str, kubectl: Kubectl
) -> None:
    with crds_removed(kubectl, LISTENERSETS) as restore:
        options = gateway_options(namespace)
        async with run_operator(operator_kubeconfig, namespaces=[namespace], options=options):
            await create(kube, sample("blog", namespace))

            async def tls_unused() -> bool:
                tls = condition(await trackingserver(kube, namespace), "TLS")
                return tls.get("reason") == "TLSNotUsedByGateway"

            await eventually(tls_unused, within=60)
            message = condition(await trackingserver(kube, namespace), "TLS")["message"]
            assert message.startswith("cert and key are unused")
            await eventually(has_event(kube, namespace, "Warning", "TLSNotUsedByGateway"))
            await eventually(ready_is(kube, namespace, "True", "Available"))
            route = await get(kube, GW, "HTTPRoute", namespace, NAME)
            assert route is not None
            assert [p["kind"] for p in route["spec"]["parentRefs"]] == ["Gateway"]

            restore()  # ListenerSet installed while the operator runs: used without a restart

            async def listener_set_made() -> bool:
                return await exists(kube, GW, "ListenerSet", namespace)

            await eventually(listener_set_made, within=60)
            route = await get(kube, GW, "HTTPRoute", namespace, NAME)
            assert route is not None
            assert [p["kind"] for p in route["spec"]["parentRefs"]] == ["Gateway", "ListenerSet"]
            await eventually(
                lambda: _tls_reason_is(kube, namespace, "CertificateExpired"), within=30
            )


async def test_listener_sets_can_be_turned_off(
    operator_kubeconfig: Path, kube: AsyncClient, namespace: str
) -> None:
    """--gateway-listener-sets=false: for a Gateway that does not implement ListenerSet although
    its CRD is installed (Traefik v3.6 on a cluster with Gateway API v1.6's CRDs)."""
    options = replace(gateway_options(namespace), listener_sets_enabled=False)
    async with run_operator(operator_kubeconfig, namespaces=[namespace], options=options):
        await create(kube, sample("blog", namespace))
        await eventually(lambda: _tls_reason_is(kube, namespace, "TLSNotUsedByGateway"), within=60)
        route = await get(kube, GW, "HTTPRoute", namespace, NAME)
        assert route is not None
        assert [p["kind"] for p in route["spec"]["parentRefs"]] == ["Gateway"]
        assert not await exists(kube, GW, "ListenerSet", namespace)


async def _tls_reason_is(kube: AsyncClient, ns: str, reason: str) -> bool:
    return bool(condition(await trackingserver(kube, ns), "TLS").get("reason") == reason)


async def test_explicit_gateway_mode_without_httproute_then_installed(
    operator_kubeconfig: Path, kube: AsyncClient, namespace: str, kubectl: Kubectl
) -> None:
    with crds_removed(kubectl, HTTPROUTES) as restore:
        options = gateway_options(namespace)
        async with run_operator(operator_kubeconfig, namespaces=[namespace], options=options):
            await create(kube, sample("blog", namespace))
            await eventually(ready_is(kube, namespace, "False", "APINotServed"), within=60)
            message = condition(await trackingserver(kube, namespace))["message"]
            assert "HTTPRoute (gateway.networking.k8s.io/v1)" in message
            assert not await exists(kube, IR, "IngressRoute", namespace)

            restore()

            async def route_made() -> bool:
                return await exists(kube, GW, "HTTPRoute", namespace)

            await eventually(route_made, within=60)
            await eventually(ready_is(kube, namespace, "True", "Available"), within=30)


async def test_auto_picks_what_the_cluster_serves_and_follows_new_crds(
    operator_kubeconfig: Path, kube: AsyncClient, namespace: str, kubectl: Kubectl
) -> None:
    """Nothing served → Ready=False; HTTPRoute installed → Gateway API; Traefik installed → the
    next reconcile switches to traefik.io and deletes the HTTPRoute and ListenerSet."""
    with crds_removed(kubectl, *TRAEFIK_ROUTING, HTTPROUTES) as restore:
        options = gateway_options(namespace, IngressController.AUTO)
        async with run_operator(operator_kubeconfig, namespaces=[namespace], options=options):
            ts = await create(kube, sample("blog", namespace))
            await eventually(ready_is(kube, namespace, "False", "NoRoutingAPIServed"), within=60)
            await eventually(has_event(kube, namespace, "Warning", "NoRoutingAPIServed"))

            restore(HTTPROUTES)

            async def route_made() -> bool:
                return await exists(kube, GW, "HTTPRoute", namespace)

            await eventually(route_made, within=60)
            await eventually(ready_is(kube, namespace, "True", "Available"), within=30)
            assert await exists(kube, GW, "ListenerSet", namespace)

            restore(*TRAEFIK_ROUTING)
            await merge_patch(kube, ts, {"spec": {"size": 2}})  # any change reconciles

            async def switched() -> bool:
                return (
                    await exists(kube, IR, "IngressRoute", namespace)
                    and not await exists(kube, GW, "HTTPRoute", namespace)
                    and not await exists(kube, GW, "ListenerSet", namespace)
                )

            await eventually(switched, within=60)


async def test_auto_takes_traefik_first(
    operator_kubeconfig: Path, kube: AsyncClient, namespace: str
) -> None:
    options = gateway_options(namespace, IngressController.AUTO)
    async with run_operator(operator_kubeconfig, namespaces=[namespace], options=options):
        await create(kube, sample("blog", namespace))
        await eventually(ready_is(kube, namespace, "True", "Available"), within=60)
        assert await exists(kube, IR, "IngressRoute", namespace)
        assert not await exists(kube, GW, "HTTPRoute", namespace)


async def test_a_named_traefik_group_is_used_though_traefik_io_is_served(
    operator_kubeconfig: Path, kube: AsyncClient, namespace: str
) -> None:
    """`--traefik-group=traefik.containo.us`: for a Traefik v2 on a cluster serving both."""
    legacy = "traefik.containo.us/v1alpha1"
    options = ChildOptions(traefik_groups=("traefik.containo.us",))
    async with run_operator(operator_kubeconfig, namespaces=[namespace], options=options):
        await create(kube, sample("blog", namespace))
        await eventually(ready_is(kube, namespace, "True", "Available"), within=60)
        assert await exists(kube, legacy, "IngressRoute", namespace)
        assert not await exists(kube, IR, "IngressRoute", namespace)


async def test_switching_a_live_server_between_modes_leaves_no_old_routing_object(
    operator_kubeconfig: Path, kube: AsyncClient, namespace: str
) -> None:
    """traefik → gateway → nginx → traefik, one operator restart each (the mode is the
    operator's); a foreign HTTPRoute of the same name is never touched."""
    names = {"traefik": [(IR, "IngressRoute", NAME), (IR, "Middleware", NAME),
                         (IR, "Middleware", f"{NAME}-redirect")],
             "gateway": [(GW, "HTTPRoute", NAME), (GW, "ListenerSet", NAME)],
             "nginx": [("networking.k8s.io/v1", "Ingress", n)
                       for n in (NAME, f"{NAME}-static", f"{NAME}-redirect")]}  # fmt: skip
    modes = {
        "traefik": ChildOptions(),
        "gateway": gateway_options(namespace),
        "nginx": ChildOptions(ingress_controller=IngressController.NGINX),
    }
    foreign = _foreign_route(namespace)
    created = False
    for mode in ("traefik", "gateway", "nginx", "traefik"):
        async with run_operator(operator_kubeconfig, namespaces=[namespace], options=modes[mode]):
            if not created:
                await create(kube, sample("blog", namespace))
                created = True

            async def only(mode: str = mode) -> bool:
                for other, refs in names.items():
                    for api_version, kind, name in refs:
                        present = await exists(kube, api_version, kind, namespace, name)
                        if present != (other == mode):
                            return False
                return True

            await eventually(only, within=60)
            await eventually(ready_is(kube, namespace, "True", "Available"), within=30)
            if mode == "nginx":  # a user's HTTPRoute of the same name, not ours
                await create(kube, foreign)
                names["gateway"] = [(GW, "ListenerSet", NAME)]
    left = await get(kube, GW, "HTTPRoute", namespace, NAME)
    assert left is not None
    assert left["metadata"].get("ownerReferences") is None


def _foreign_route(namespace: str) -> Obj:
    return {
        "apiVersion": GW,
        "kind": "HTTPRoute",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": "someone-elses"}],
            "rules": [{"backendRefs": [{"name": "elsewhere", "port": 80}]}],
        },
    }
