"""REST paths, selectors and error decoding of the raw API helpers."""

from __future__ import annotations

import httpx2
from lightkube import AsyncClient, KubeConfig
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace

from experiment_operator.runtime.kubeapi import (
    ABORTIVE_CLOSE,
    KindInfo,
    abort_on_close,
    absolute_url,
    api_error,
    format_selector,
    http,
    prepare_connections,
)
from experiment_operator.runtime.throttle import RetryAfterTransport, honour_retry_after


def test_paths_for_core_grouped_generic_and_cluster_scoped_kinds() -> None:
    deployment = KindInfo.of(Deployment)
    assert deployment.api_version == "apps/v1"
    assert deployment.path() == "apis/apps/v1/deployments"
    assert deployment.path("ns", "d") == "apis/apps/v1/namespaces/ns/deployments/d"
    widget = KindInfo.of(create_namespaced_resource("t.example", "v1", "Thing", "things"))
    assert widget.path("ns", "w", "status") == "apis/t.example/v1/namespaces/ns/things/w/status"
    cluster = KindInfo.of(create_global_resource("t.example", "v1", "Big", "bigs"))
    assert not cluster.namespaced
    assert cluster.path("ignored", "b") == "apis/t.example/v1/bigs/b"
    assert KindInfo.of(Namespace).path(None, "n") == "api/v1/namespaces/n"
    assert KindInfo.for_object({"apiVersion": "apps/v1", "kind": "Deployment"}) == deployment


def test_format_selector() -> None:
    assert format_selector({"b": "2", "a": "1"}) == "a=1,b=2"
    assert format_selector("x in (1)") == "x in (1)"
    assert format_selector({}) is None
    assert format_selector(None) is None


def test_api_error_from_status_and_from_plain_text() -> None:
    request = httpx2.Request("GET", "https://api/x")
    status = {"kind": "Status", "code": 410, "message": "too old", "status": "Failure"}
    assert api_error(httpx2.Response(410, json=status, request=request)).status.code == 410
    plain = api_error(httpx2.Response(503, text="unavailable", request=request))
    assert (plain.status.code, plain.status.message) == (503, "unavailable")


def _client(server: str = "https://127.0.0.1:6443") -> AsyncClient:
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "c", "cluster": {"server": server}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )
    return AsyncClient(config=config)


def test_absolute_urls_keep_the_server_path_and_encode_parameters() -> None:
    """What httpx made of a relative path and its parameters, built whole."""
    path = "apis/apps/v1/namespaces/ns/deployments/d"
    params = {"labelSelector": "app.kubernetes.io/managed-by=x,tier in (a b)", "continue": "a+b="}
    for server in ("https://127.0.0.1:6443", "https://rancher.example/k8s/clusters/c-1/"):
        client = _client(server)
        url = httpx2.URL(absolute_url(client, path, params))
        expected = http(client).build_request("GET", path, params=params).url
        assert (url.path, dict(url.params)) == (expected.path, dict(expected.params))
        assert url.host == expected.host
    assert absolute_url(_client(), "api/v1", None) == "https://127.0.0.1:6443/api/v1"


def test_connections_reset_when_closed() -> None:
    """Also through the Retry-After wrapper, and only once however often it is called."""
    client = _client()
    honour_retry_after(client)
    abort_on_close(client)
    abort_on_close(client)
    transport = http(client)._transport
    assert isinstance(transport, RetryAfterTransport)
    pool = transport.inner._pool  # type: ignore[attr-defined]
    assert pool._socket_options == [ABORTIVE_CLOSE]


def test_prepared_connections_stay_open_up_to_the_pool_limit() -> None:
    """httpx keeps 20 idle connections of 100: a burst above 20 in flight reconnected (TLS)."""
    client = _client()
    honour_retry_after(client)
    prepare_connections(client)
    pool = http(client)._transport.inner._pool  # type: ignore[attr-defined]
    assert pool._max_keepalive_connections == pool._max_connections == 100
