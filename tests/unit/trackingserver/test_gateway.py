"""Gateway API children: rules per prefix mode, the parent Gateway, and the upstream schemas.

HTTPRoutes are validated against the openAPIV3Schema of Gateway API v1.4.0 (what Traefik v3.6
implements) and v1.6.1, ListenerSets against v1.6.1 (the first bundle with ListenerSet in the
standard channel). The CEL rules of those schemas are checked by the API server in the
integration tests, which apply the same objects.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import jsonschema
import pytest
import yaml

from experiment_lab.cluster import third_party_crds_dir
from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver.children import (
    ChildOptions,
    IngressController,
    build_children,
    unwanted_children,
)
from experiment_operator.trackingserver.gateway import ParentGateway, parent_gateway

Sample = Callable[..., TrackingServer]
V14, V16 = "gateway-api-v1.4.0-standard.yaml", "gateway-api-v1.6.1-standard.yaml"
GATEWAY = ChildOptions(
    ingress_controller=IngressController.GATEWAY,
    gateway=ParentGateway("public", "gateway-system"),
    listener_sets=True,
)


@cache
def schema(bundle: str, kind: str) -> dict[str, Any]:
    """The served v1 openAPIV3Schema of `kind` in an upstream CRD bundle."""
    for doc in yaml.safe_load_all((third_party_crds_dir() / bundle).read_text()):
        if doc and doc["spec"]["names"]["kind"] == kind:
            version = next(v for v in doc["spec"]["versions"] if v["name"] == "v1")
            return dict(version["schema"]["openAPIV3Schema"])
    raise LookupError(f"{kind} not in {bundle}")


def gateway_children(ts: TrackingServer, options: ChildOptions, tls: bool) -> dict[str, Any]:
    children = build_children(ts, options, tls_secret_present=tls)
    return {c["kind"]: c for c in children if c["apiVersion"].startswith("gateway.")}


SPECS = [
    {},  # the seed's image: served at root, prefix rewritten
    {"image": None},  # the operator's server: under its prefix
    {"url": "https://mlflow.example.com"},
    {"url": "http://mlflow.example.com:8080/a/b.c_d~e-f/", "cert": None, "key": None},
    {"gatewayRef": {"name": "tenants", "namespace": "infra", "sectionName": "https-wildcard"}},
]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("tls", [True, False])
def test_children_are_valid_for_the_upstream_schemas(
    spec: dict[str, Any], tls: bool, sample: Sample
) -> None:
    children = gateway_children(sample("blog", **spec), GATEWAY, tls)
    for bundle in (V14, V16):
        jsonschema.validate(children["HTTPRoute"], schema(bundle, "HTTPRoute"))
    assert ("ListenerSet" in children) == tls
    if tls:
        jsonschema.validate(children["ListenerSet"], schema(V16, "ListenerSet"))


def test_prefixed_server_gets_one_rule_without_rewrite(sample: Sample) -> None:
    route = gateway_children(sample("blog", image=None), GATEWAY, False)["HTTPRoute"]
    assert route["spec"]["rules"] == [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/platform"}}],
            "backendRefs": [{"name": "trackingserver", "port": 5000}],
        }
    ]
    assert route["spec"]["hostnames"] == ["mlflow.platform.aiscope.io"]


def test_root_server_is_rewritten_and_redirected(sample: Sample) -> None:
    rules = gateway_children(sample("blog"), GATEWAY, False)["HTTPRoute"]["spec"]["rules"]
    redirect, rewritten, assets = rules
    assert redirect["matches"] == [{"path": {"type": "Exact", "value": "/platform"}}]
    assert "backendRefs" not in redirect
    assert redirect["filters"][0]["requestRedirect"]["path"]["replaceFullPath"] == "/platform/"
    assert rewritten["filters"][0]["urlRewrite"]["path"]["replacePrefixMatch"] == "/"
    assert [m["path"]["value"] for m in assets["matches"]] == ["/static-files", "/ajax-api"]


def test_tls_attaches_the_route_to_the_listener_set(sample: Sample) -> None:
    children = gateway_children(sample("blog"), GATEWAY, True)
    parents = children["HTTPRoute"]["spec"]["parentRefs"]
    assert [p["kind"] for p in parents] == ["Gateway", "ListenerSet"]
    listener = children["ListenerSet"]["spec"]["listeners"][0]
    assert listener["tls"]["certificateRefs"] == [{"kind": "Secret", "name": "trackingserver"}]
    assert children["ListenerSet"]["spec"]["parentRef"]["namespace"] == "gateway-system"


def test_without_listener_sets_tls_is_the_gateways(sample: Sample) -> None:
    options = ChildOptions(ingress_controller=IngressController.GATEWAY, gateway=GATEWAY.gateway)
    children = gateway_children(sample("blog"), options, True)
    assert list(children) == ["HTTPRoute"]
    assert [p["kind"] for p in children["HTTPRoute"]["spec"]["parentRefs"]] == ["Gateway"]


def test_gateway_ref_replaces_the_operators_gateway_as_a_whole(sample: Sample) -> None:
    default = ParentGateway("public", "gateway-system", "web")
    assert parent_gateway(sample("blog"), default) == default
    ts = sample("blog", gatewayRef={"name": "tenants"})
    assert parent_gateway(ts, default) == ParentGateway("tenants")
    assert parent_gateway(sample("blog"), None) is None


def test_no_parent_gateway_makes_no_route(sample: Sample) -> None:
    options = ChildOptions(ingress_controller=IngressController.GATEWAY)
    assert gateway_children(sample("blog"), options, True) == {}


def test_switching_modes_leaves_the_other_modes_objects_unwanted(sample: Sample) -> None:
    ts = sample("blog")
    traefik = build_children(ts, ChildOptions(), tls_secret_present=True)
    unwanted = {(r.kind, r.api_version) for r in unwanted_children("trackingserver", traefik)}
    assert ("HTTPRoute", "gateway.networking.k8s.io/v1") in unwanted
    assert ("ListenerSet", "gateway.networking.k8s.io/v1") in unwanted
    gateway = build_children(ts, GATEWAY, tls_secret_present=True)
    unwanted = {(r.kind, r.api_version) for r in unwanted_children("trackingserver", gateway)}
    assert ("IngressRoute", "traefik.io/v1alpha1") in unwanted
    assert ("HTTPRoute", "gateway.networking.k8s.io/v1") not in unwanted
