"""Prometheus metrics and the /healthz, /readyz, /metrics endpoint.

Metric names follow controller-runtime and client-go so existing dashboards and alerts for Go
operators work unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import lightkube
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = logging.getLogger(__name__)

_RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1000)

RECONCILE_TOTAL = Counter(
    "controller_runtime_reconcile_total",
    "Total number of reconciliations per controller and result (success, error, requeue, "
    "requeue_after).",
    ["controller", "result"],
)
RECONCILE_ERRORS = Counter(
    "controller_runtime_reconcile_errors_total",
    "Total number of reconciliation errors per controller.",
    ["controller"],
)
RECONCILE_TIME = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Length of time per reconciliation per controller.",
    ["controller"],
    buckets=_RECONCILE_BUCKETS,
)
QUEUE_DEPTH = Gauge("workqueue_depth", "Current depth of the work queue.", ["name"])
QUEUE_ADDS = Counter("workqueue_adds_total", "Total number of adds handled by the queue.", ["name"])
QUEUE_RETRIES = Counter(
    "workqueue_retries_total",
    "Total number of rate-limited retries handled by the queue.",
    ["name"],
)
QUEUE_WAIT = Histogram(
    "workqueue_queue_duration_seconds",
    "How long in seconds a key stays in the queue before being processed.",
    ["name"],
    buckets=_QUEUE_BUCKETS,
)
QUEUE_WORK = Histogram(
    "workqueue_work_duration_seconds",
    "How long in seconds processing a key from the queue takes.",
    ["name"],
    buckets=_QUEUE_BUCKETS,
)
API_REQUESTS = Counter(
    "rest_client_requests_total",
    "Number of Kubernetes API requests, partitioned by verb and HTTP status code.",
    ["verb", "code"],
)
API_RETRIES = Counter(
    "rest_client_request_retries_total",
    "Number of Kubernetes API requests sent again because the server answered 429 or 5xx with "
    "Retry-After, partitioned by verb and the HTTP status code that caused the retry.",
    ["verb", "code"],
)
LEADER_STATUS = Gauge(
    "leader_election_master_status",
    "1 while this process holds the named leader-election Lease, else 0.",
    ["name"],
)

_HOOK_MARK = "_experiment_operator_instrumented"


def classify_verb(method: str, path: str, query: str = "") -> str:
    """Map an HTTP request to the Kubernetes verb the API server's audit log would record."""
    method = method.upper()
    params = parse_qs(query)
    if method == "GET" and params.get("watch", [""])[0] in ("true", "1"):
        return "watch"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    named = _names_object(path)
    if method == "DELETE":
        return "delete" if named else "deletecollection"
    if method in ("GET", "HEAD"):
        return "get" if named else "list"
    return method.lower()


def _names_object(path: str) -> bool:
    """True when a resource path addresses one object (or its subresource), not a collection."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        rest = parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        rest = parts[3:]
    else:
        return True  # non-resource URLs such as /version or /openapi/v3 are plain gets
    if rest[:1] == ["watch"]:
        rest = rest[1:]
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    return len(rest) >= 2


async def _count_response(response: httpx.Response) -> None:
    request = response.request
    verb = classify_verb(request.method, request.url.path, request.url.query.decode())
    API_REQUESTS.labels(verb=verb, code=str(response.status_code)).inc()


def instrument_client(client: lightkube.AsyncClient) -> None:
    """Count every request the client makes in `rest_client_requests_total`.

    Hooks into the httpx client that lightkube wraps (`AsyncClient._client._client`); watches are
    counted when their response headers arrive. Calling it twice on one client is harmless.
    """
    http: httpx.AsyncClient = client._client._client
    if getattr(http, _HOOK_MARK, False):
        return
    hooks = http.event_hooks
    hooks["response"] = [*hooks.get("response", []), _count_response]
    http.event_hooks = hooks
    setattr(http, _HOOK_MARK, True)


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


class ProbeServer:
    """Minimal HTTP/1.1 server for kubelet probes and Prometheus scrapes.

    `/healthz` answers 200 as long as the event loop serves requests (a wedged loop fails the
    liveness probe); `/readyz` asks `ready()` (e.g. caches synced); `/metrics` is the registry.
    """

    def __init__(
        self,
        host: str,
        port: int,
        ready: Callable[[], bool],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._host = host
        self._port = port
        self._ready = ready
        self._registry = registry
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (the picked one when constructed with port 0)."""
        if self._server is None:
            return self._port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        log.info("probe server listening", extra={"address": f"{self._host}:{self.port}"})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request_line = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # headers carry nothing we need
            method, target = _parse_request_line(request_line)
            status, content_type, body = self._respond(method, urlsplit(target).path)
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            writer.write(head if method == "HEAD" else head + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):
            pass  # a broken or slow client is not our problem
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        text = "text/plain; charset=utf-8"
        if method not in ("GET", "HEAD"):
            return 405, text, b"method not allowed\n"
        if path == "/healthz":
            return 200, text, b"ok\n"
        if path == "/readyz":
            if self._is_ready():
                return 200, text, b"ok\n"
            return 500, text, b"not ready\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        return 404, text, b"not found\n"

    def _is_ready(self) -> bool:
        try:
            return self._ready()
        except Exception:
            log.exception("readiness check failed")
            return False


def _parse_request_line(line: bytes) -> tuple[str, str]:
    parts = line.decode("latin-1").split()
    if len(parts) != 3:
        raise ValueError("malformed request line")
    return parts[0].upper(), parts[1]
