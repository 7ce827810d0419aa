"""Verb classification for rest_client_requests_total, and the probe/metrics endpoint."""

from __future__ import annotations

import asyncio

import httpx2 as httpx
import pytest

from experiment_operator.runtime import metrics
from experiment_operator.runtime.metrics import ProbeServer, classify_verb


@pytest.mark.parametrize(
    ("method", "path", "query", "verb"),
    [
        ("GET", "/api/v1/namespaces/ns/pods/p", "", "get"),
        ("GET", "/api/v1/namespaces/ns/pods", "", "list"),
        ("GET", "/api/v1/pods", "labelSelector=a%3Db", "list"),
        ("GET", "/api/v1/namespaces/ns/pods", "watch=true&resourceVersion=5", "watch"),
        ("GET", "/api/v1/pods", "watch=1", "watch"),
        ("GET", "/api/v1/namespaces", "", "list"),
        ("GET", "/api/v1/namespaces/ns", "", "get"),
        ("GET", "/api/v1/nodes/n1", "", "get"),
        ("GET", "/apis/apps/v1/namespaces/ns/deployments", "", "list"),
        ("GET", "/apis/apps/v1/namespaces/ns/deployments/d", "", "get"),
        ("GET", "/apis/experiment.aiscope/v1alpha2/trackingservers", "", "list"),
        ("GET", "/apis/apps/v1/namespaces/ns/deployments/d/status", "", "get"),
        ("GET", "/version", "", "get"),
        ("POST", "/api/v1/namespaces/ns/events", "", "create"),
        ("PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l", "", "update"),
        ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d", "force=true", "patch"),
        ("DELETE", "/api/v1/namespaces/ns/services/s", "", "delete"),
        ("DELETE", "/api/v1/namespaces/ns/services", "", "deletecollection"),
        ("DELETE", "/api/v1/namespaces/ns", "", "delete"),
    ],
)
def test_classify_verb(method: str, path: str, query: str, verb: str) -> None:
    assert classify_verb(method, path, query) == verb


async def test_probe_server_endpoints() -> None:
    ready = False
    server = ProbeServer("127.0.0.1", 0, ready=lambda: ready)
    await server.start()
    try:
        assert server.port != 0
        metrics.RECONCILE_TOTAL.labels(controller="unit", result="success").inc()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 500
            ready = True
            assert (await http.get("/readyz?verbose")).status_code == 200
            assert (await http.get("/nope")).status_code == 404
            assert (await http.post("/healthz")).status_code == 405
            body = (await http.get("/metrics")).text
    finally:
        await server.stop()
    for name in (
        "controller_runtime_reconcile_total",
        "controller_runtime_reconcile_errors_total",
        "controller_runtime_reconcile_time_seconds",
        "workqueue_depth",
        "workqueue_adds_total",
        "workqueue_retries_total",
        "workqueue_queue_duration_seconds",
        "workqueue_work_duration_seconds",
        "rest_client_requests_total",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in body
    assert 'controller_runtime_reconcile_total{controller="unit",result="success"}' in body


async def test_readyz_fails_closed_when_check_raises() -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    server = ProbeServer("127.0.0.1", 0, ready=broken)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            assert (await http.get("/readyz")).status_code == 500
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await server.stop()


async def test_probe_server_survives_garbage() -> None:
    server = ProbeServer("127.0.0.1", 0, ready=lambda: True)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"nonsense\r\n\r\n")
        await writer.drain()
        assert await reader.read() == b""  # closed without an answer
        writer.close()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await server.stop()
