"""What Gateway API routing adds to a TrackingServer's status.

A Gateway controller writes its verdict on each HTTPRoute (`status.parents[].conditions`) and
ListenerSet (`status.conditions`): a route the listener does not allow, a backend not found, a
listener refused... Those reach `Ready=False` with the Gateway's own reason and message.
(Traefik's IngressRoute and Kubernetes Ingress have no such status: in those modes a route the
proxy ignores goes unnoticed.) A route no Gateway controller has looked at yet, or a verdict on
an older generation, counts as no verdict.

TLS: the Gateway terminates it. With ListenerSet the TrackingServer's Secret is served by its
own listener; without, `cert`/`key` (or a Secret named after the CR) are unused, and the TLS
condition and a Warning Event say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from experiment_operator.runtime.kubeapi import Obj
from experiment_operator.runtime.manager import Manager
from experiment_operator.trackingserver.children import ChildOptions, IngressController
from experiment_operator.trackingserver.gateway import GATEWAY_GROUP, parent_gateway
from experiment_operator.trackingserver.passes import Pass
from experiment_operator.trackingserver.resources import HTTPRoute, ListenerSet
from experiment_operator.trackingserver.status import (
    GATEWAY_NOT_SET,
    TLS_NOT_USED,
    ConditionValue,
)

VERDICTS = ("Accepted", "ResolvedRefs")
"""The route conditions whose False means the Gateway does not route it as asked."""
LISTENER_SET_VERDICTS = ("Accepted", "Programmed")
GATEWAY_NOT_SET_MESSAGE = (
    "Gateway API routing needs a parent Gateway: set spec.gatewayRef or the operator's "
    "--gateway-name"
)
TLS_NOT_USED_MESSAGE = (
    "{what} unused: with Gateway API, TLS is terminated by the Gateway's listeners, and this "
    "cluster does not serve ListenerSet (gateway.networking.k8s.io/v1) for a listener per "
    "TrackingServer (or --gateway-listener-sets=false); put the certificate on the Gateway "
    "(e.g. cert-manager's Gateway support), see docs/routing.md"
)


def _parent_key(ref: Mapping[str, Any], namespace: str) -> tuple[str, str, str, str, str]:
    return (
        ref.get("group", GATEWAY_GROUP),
        ref.get("kind", "Gateway"),
        ref.get("namespace") or namespace,
        ref["name"],
        ref.get("sectionName") or "",
    )


def _refused(
    conditions: Iterable[Mapping[str, Any]], types: tuple[str, ...], generation: int
) -> list[Mapping[str, Any]]:
    return [
        c
        for c in conditions
        if c.get("type") in types
        and c.get("status") == "False"
        and c.get("observedGeneration", generation) >= generation
    ]


def route_problems(route: Obj | None, desired: Obj) -> list[ConditionValue]:
    """Ready=False reasons from the Gateways' verdicts on the live HTTPRoute, for the parents
    the desired route names (a verdict on a parent no longer named is stale)."""
    if route is None:
        return []
    namespace = route["metadata"].get("namespace", "")
    generation = route["metadata"].get("generation", 0)
    wanted = {_parent_key(r, namespace) for r in desired["spec"]["parentRefs"]}
    problems = []
    for parent in (route.get("status") or {}).get("parents") or []:
        ref = parent.get("parentRef") or {}
        if "name" not in ref or _parent_key(ref, namespace) not in wanted:
            continue
        for c in _refused(parent.get("conditions") or [], VERDICTS, generation):
            where = (
                f"{ref.get('kind', 'Gateway')} {ref.get('namespace') or namespace}/{ref['name']}"
            )
            if ref.get("sectionName"):
                where += f" ({ref['sectionName']})"
            message = f"HTTPRoute {route['metadata']['name']} not {c['type']} by {where}"
            detail = c.get("message")
            problems.append(
                ConditionValue(
                    "False",
                    c.get("reason") or c["type"],
                    f"{message}: {detail}" if detail else message,
                )
            )
    return problems


def listener_set_problems(listener_set: Obj | None) -> list[ConditionValue]:
    """Ready=False reasons from the Gateway's verdict on the TrackingServer's ListenerSet."""
    if listener_set is None:
        return []
    generation = listener_set["metadata"].get("generation", 0)
    conditions = (listener_set.get("status") or {}).get("conditions") or []
    name = listener_set["metadata"]["name"]
    return [
        ConditionValue(
            "False",
            c.get("reason") or c["type"],
            f"ListenerSet {name} not {c['type']}: {c.get('message') or 'no message'}",
        )
        for c in _refused(conditions, LISTENER_SET_VERDICTS, generation)
    ]


def tls_condition(
    p: Pass, options: ChildOptions, tls: ConditionValue, tls_present: bool
) -> ConditionValue:
    """The TLS condition in Gateway API mode: the CR's Secret is served only by a ListenerSet."""
    if options.listener_sets:
        return tls
    if p.ts.spec.tls_enabled:
        return ConditionValue(
            "False", TLS_NOT_USED, TLS_NOT_USED_MESSAGE.format(what="cert and key are")
        )
    if tls_present:
        what = f"the Secret {p.name} is"
        return ConditionValue("False", TLS_NOT_USED, TLS_NOT_USED_MESSAGE.format(what=what))
    return ConditionValue("True", "GatewayListener", "TLS, if any, is terminated by the Gateway")


def gateway_findings(
    manager: Manager,
    p: Pass,
    options: ChildOptions,
    children: list[Obj],
    tls: ConditionValue,
    tls_present: bool,
) -> ConditionValue:
    """Record Gateway API problems on `p`; returns the TLS condition (unchanged in the other
    modes)."""
    if options.ingress_controller is not IngressController.GATEWAY:
        return tls
    if parent_gateway(p.ts, options.gateway) is None:
        p.problems.append(ConditionValue("False", GATEWAY_NOT_SET, GATEWAY_NOT_SET_MESSAGE))
        p.routing_failed = True
        return tls_condition(p, options, tls, tls_present)
    desired = next(c for c in children if c["kind"] == "HTTPRoute")
    problems: list[ConditionValue] = []
    if manager.is_served(HTTPRoute):
        route = manager.cache(HTTPRoute).get(p.namespace, p.name)
        problems = route_problems(route, desired)
    if options.listener_sets and any(c["kind"] == "ListenerSet" for c in children):
        problems += listener_set_problems(manager.cache(ListenerSet).get(p.namespace, p.name))
    if problems:  # not routed as asked: status.url is not reported
        p.problems.extend(problems)
        p.routing_failed = True
    return tls_condition(p, options, tls, tls_present)
