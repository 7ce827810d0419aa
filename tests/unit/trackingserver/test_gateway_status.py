"""A Gateway's verdict on the HTTPRoute and ListenerSet reaches Ready; TLS in Gateway API mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver.children import ChildOptions, IngressController
from experiment_operator.trackingserver.gateway import ParentGateway, http_route
from experiment_operator.trackingserver.gatewaystatus import (
    listener_set_problems,
    route_problems,
    tls_condition,
)
from experiment_operator.trackingserver.mlflow import DEFAULT_MLFLOW_IMAGE, ServerPlan
from experiment_operator.trackingserver.passes import Pass
from experiment_operator.trackingserver.status import (
    TLS_NOT_USED,
    WARNING_REASONS,
    ConditionValue,
)

Sample = Callable[..., TrackingServer]
PARENT = ParentGateway("public", "gateway-system", "web")
VALID = ConditionValue("True", "Valid", "certificate valid")


def desired(ts: TrackingServer) -> dict[str, Any]:
    return http_route(ts, ServerPlan.of(ts, DEFAULT_MLFLOW_IMAGE), PARENT, listener_set=False)


def live(route: dict[str, Any], parents: list[dict[str, Any]], generation: int = 2) -> Any:
    return {**route, "metadata": {**route["metadata"], "generation": generation},
            "status": {"parents": parents}}  # fmt: skip


def verdict(ref: dict[str, Any], *conditions: tuple[str, str, str, str], gen: int = 2) -> Any:
    return {
        "parentRef": ref,
        "controllerName": "example.com/gateway",
        "conditions": [
            {"type": t, "status": s, "reason": r, "message": m, "observedGeneration": gen}
            for t, s, r, m in conditions
        ],
    }


def test_refused_route_gives_the_gateways_reason(sample: Sample) -> None:
    ts = sample("blog")
    route = desired(ts)
    ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public",
           "namespace": "gateway-system", "sectionName": "web"}  # fmt: skip
    status = verdict(
        ref,
        ("Accepted", "False", "NotAllowedByListeners", "namespace not allowed"),
        ("ResolvedRefs", "True", "ResolvedRefs", ""),
    )
    [problem] = route_problems(live(route, [status]), route)
    assert problem.reason == "NotAllowedByListeners"
    assert problem.message == (
        "HTTPRoute trackingserver not Accepted by Gateway gateway-system/public (web): "
        "namespace not allowed"
    )
    assert problem.reason in WARNING_REASONS


def test_unresolved_backend_is_reported(sample: Sample) -> None:
    route = desired(sample("blog"))
    ref = {"name": "public", "namespace": "gateway-system", "sectionName": "web"}
    status = verdict(ref, ("ResolvedRefs", "False", "BackendNotFound", "no Service"))
    assert [p.reason for p in route_problems(live(route, [status]), route)] == ["BackendNotFound"]


def test_accepted_stale_or_foreign_verdicts_are_no_problem(sample: Sample) -> None:
    route = desired(sample("blog"))
    ours = {"name": "public", "namespace": "gateway-system", "sectionName": "web"}
    refused = ("Accepted", "False", "NotAllowedByListeners", "no")
    assert route_problems(None, route) == []
    assert route_problems(live(route, []), route) == []  # no Gateway controller looked yet
    accepted = verdict(ours, ("Accepted", "True", "Accepted", ""))
    assert route_problems(live(route, [accepted]), route) == []
    stale = verdict(ours, refused, gen=1)
    assert route_problems(live(route, [stale]), route) == []
    old_parent = verdict({"name": "old", "namespace": "gateway-system"}, refused)
    assert route_problems(live(route, [old_parent]), route) == []


def test_refused_listener_set(sample: Sample) -> None:
    obj = {
        "metadata": {"name": "trackingserver", "generation": 1},
        "status": {
            "conditions": [
                {"type": "Accepted", "status": "False", "reason": "NotAllowed",
                 "message": "allowedListeners forbids it", "observedGeneration": 1},
                {"type": "Programmed", "status": "False", "reason": "Invalid", "message": "",
                 "observedGeneration": 1},
            ]
        },
    }  # fmt: skip
    problems = listener_set_problems(obj)
    assert [p.reason for p in problems] == ["NotAllowed", "Invalid"]
    assert problems[0].message == (
        "ListenerSet trackingserver not Accepted: allowedListeners forbids it"
    )
    assert listener_set_problems(None) == []


def test_tls_without_listener_sets_is_unused(sample: Sample) -> None:
    gateway = ChildOptions(ingress_controller=IngressController.GATEWAY, gateway=PARENT)
    with_cert = Pass({}, sample("blog"))
    unused = tls_condition(with_cert, gateway, VALID, tls_present=True)
    assert (unused.status, unused.reason) == ("False", TLS_NOT_USED)
    assert unused.message.startswith("cert and key are unused")
    assert TLS_NOT_USED in WARNING_REASONS
    users = Pass({}, sample("blog", cert=None, key=None))
    assert tls_condition(users, gateway, VALID, True).message.startswith(
        "the Secret trackingserver is unused"
    )
    assert tls_condition(users, gateway, VALID, False).reason == "GatewayListener"
    with_listener_sets = ChildOptions(
        ingress_controller=IngressController.GATEWAY, gateway=PARENT, listener_sets=True
    )
    assert tls_condition(with_cert, with_listener_sets, VALID, True) == VALID
