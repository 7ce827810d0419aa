"""Traefik as a host process routes what the API server holds, by Host header.

Backends are a local http.server behind selector-less Services (EndpointSlice for v3,
Endpoints for v2) on this host's non-loopback address (the API server refuses loopback
endpoints), so the providers are proven against the real API without any Pod running.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from experiment_lab.cluster import Cluster, Kubectl
from experiment_lab.hostprocess import free_port
from experiment_lab.traefik import GATEWAY_CONTROLLER, NGINX_CONTROLLER, IngressEndpoint, Traefik
from experiment_lab.wait import eventually

pytestmark = pytest.mark.timeout(240)


class Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{self.headers['Host']} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def host_address() -> str:
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True
    ).stdout
    return out.split()[3].split("/")[0]


@pytest.fixture
def backend() -> Iterator[tuple[str, int]]:
    address = host_address()
    server = ThreadingHTTPServer((address, 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield address, server.server_port
    finally:
        server.shutdown()
        server.server_close()


def fetch(url: str) -> bytes:
    """What an unmodified client (urllib: the system resolver) gets."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
        return body


def service(namespace: str, address: str, port: int) -> list[dict[str, Any]]:
    """Service `echo` (port `http` 80, no selector) with both kinds of endpoint objects."""
    meta = {"name": "echo", "namespace": namespace}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": meta,
            "subsets": [
                {"addresses": [{"ip": address}], "ports": [{"name": "http", "port": port}]}
            ],
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "echo-1",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": "echo"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        },
    ]


def ingress(namespace: str, name: str, host: str, class_name: str | None = None) -> dict[str, Any]:
    backend = {"service": {"name": "echo", "port": {"name": "http"}}}
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": host,
                "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
            }
        ]
    }
    if class_name:
        spec["ingressClassName"] = class_name
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def ingress_route(namespace: str, group: str, host: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{group}/v1alpha1",
        "kind": "IngressRoute",
        "metadata": {"name": f"echo-{group.split('.')[1]}", "namespace": namespace},
        "spec": {
            "entryPoints": ["web"],
            "routes": [
                {
                    "kind": "Rule",
                    "match": f"Host(`{host}`)",
                    "services": [{"name": "echo", "port": "http"}],
                }
            ],
        },
    }


def apply(kubectl: Kubectl, items: list[dict[str, Any]]) -> None:
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    kubectl("apply", "-f", "-", input=manifest)


async def routed(endpoint: IngressEndpoint, host: str, *, tls: bool = False) -> None:
    """Wait until `host` answers 200 from the echo backend (routes appear within seconds)."""

    async def answers() -> bool:
        try:
            status, _, body = await asyncio.to_thread(endpoint.get, host, "/x", tls=tls)
        except OSError:
            return False
        return status == 200 and body.startswith(host.encode())

    answers.__name__ = f"{host} routed"
    await eventually(answers, within=60)


def classes(prefix: str) -> list[dict[str, Any]]:
    """A GatewayClass for Traefik and an IngressClass for its Ingress-NGINX provider (the
    controllers match them by controller name, so the names are the test's own)."""
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": f"{prefix}-traefik"},
            "spec": {"controllerName": GATEWAY_CONTROLLER},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": f"{prefix}-nginx"},
            "spec": {"controller": NGINX_CONTROLLER},
        },
    ]


def gateway(namespace: str, prefix: str, port: int, host: str) -> list[dict[str, Any]]:
    listener = {"name": "http", "port": port, "protocol": "HTTP"}
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": namespace},
            "spec": {"gatewayClassName": f"{prefix}-traefik", "listeners": [listener]},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "echo", "namespace": namespace},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "hostnames": [host],
                "rules": [{"backendRefs": [{"name": "echo", "port": 80}]}],
            },
        },
    ]


def start(binary: Path, cluster: Cluster, workdir: Path, **options: Any) -> Traefik:
    proxy = Traefik(
        binary,
        cluster.kubeconfig,
        workdir,
        "127.0.0.1",
        web_port=free_port(),
        websecure_port=free_port(),
        **options,
    )
    proxy.start()
    return proxy


async def test_v3_routes_ingress_ingressroute_gateway_and_nginx_ingress(
    tmp_path: Path,
    cluster: Cluster,
    kubectl: Kubectl,
    namespace: str,
    backend: tuple[str, int],
    lab_binary: Callable[[str], Path],
) -> None:
    demo_port = free_port()
    proxy = await asyncio.to_thread(
        start,
        lab_binary("traefik"),
        cluster,
        tmp_path / "traefik",
        extra_web=f"127.0.0.1:{demo_port}",
    )
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    try:
        assert proxy.version.startswith("v3.6")
        endpoint = proxy.endpoint
        apply(kubectl, classes(prefix))
        apply(kubectl, service(namespace, *backend))
        apply(
            kubectl,
            [
                ingress(namespace, "plain", "a.lab.test"),
                ingress_route(namespace, "traefik.io", "b.lab.test"),
                ingress(namespace, "nginx", "n.lab.test", class_name=f"{prefix}-nginx"),
                *gateway(namespace, prefix, proxy.web_port, "g.lab.test"),
            ],
        )
        for host in ("a.lab.test", "b.lab.test", "n.lab.test", "g.lab.test"):
            await routed(endpoint, host)
        await routed(endpoint, "a.lab.test", tls=True)  # websecure, Traefik's default cert
        await routed(IngressEndpoint("127.0.0.1", demo_port), "b.lab.test")

        status, _, _ = await asyncio.to_thread(endpoint.get, "unknown.lab.test")
        assert status == 404
        url = f"http://a.lab.test:{proxy.web_port}/resolved"
        with endpoint.resolving_to("a.lab.test"):
            body = await asyncio.to_thread(fetch, url)
        assert body == f"a.lab.test:{proxy.web_port} /resolved".encode()
    finally:
        proxy.stop()
        for item in classes(prefix):
            kubectl("delete", item["kind"], item["metadata"]["name"], check=False)


async def test_v2_routes_legacy_ingressroute(
    tmp_path: Path,
    cluster: Cluster,
    kubectl: Kubectl,
    namespace: str,
    backend: tuple[str, int],
    lab_binary: Callable[[str], Path],
) -> None:
    proxy = await asyncio.to_thread(
        start, lab_binary("traefik-v2"), cluster, tmp_path / "traefik-v2", legacy=True
    )
    try:
        assert proxy.version.startswith("v2.")
        apply(kubectl, service(namespace, *backend))
        apply(
            kubectl,
            [
                ingress_route(namespace, "traefik.containo.us", "legacy.lab.test"),
                ingress(namespace, "plain", "a.lab.test"),
            ],
        )
        await routed(proxy.endpoint, "legacy.lab.test")
        await routed(proxy.endpoint, "a.lab.test")
    finally:
        proxy.stop()
