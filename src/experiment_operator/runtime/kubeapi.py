"""Raw JSON access to the API server through lightkube's connection.

lightkube decodes into typed models and hides list resourceVersions, bookmarks and 410s; the
runtime needs all three, and keeps objects as plain dicts, so it talks HTTP itself while reusing
lightkube's configured (authenticated, instrumented) httpx client.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx2
import orjson
from lightkube import AsyncClient
from lightkube.core import resource as lkr
from lightkube.core.exceptions import ApiError
from lightkube.core.resource_registry import resource_registry
from lightkube.models.meta_v1 import Status

from .netstream import AsyncioBackend

Obj = dict[str, Any]
"""A Kubernetes object as decoded JSON."""

Key = tuple[str, str]
"""(namespace, name); namespace is "" for cluster-scoped objects."""

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MERGE_PATCH_CONTENT_TYPE = "application/merge-patch+json"
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
"""Annotation of the bookmark that ends a watch list's initial events."""
REQUEST_TIMEOUT = httpx2.Timeout(65.0, connect=10.0)
"""Longer than the API server's own request timeout (60 s), as client-go leaves it: a slow write
is answered by the server (504 when it gave up) instead of abandoned and sent again while the
first may still succeed; for a Service that would be a second ClusterIP allocation. Watches set
their own timeouts."""


@dataclass(frozen=True)
class KindInfo:
    """Where a kind lives in the REST API."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @classmethod
    def of(cls, res: type[lkr.Resource] | KindInfo) -> KindInfo:
        """Read the API coordinates of a lightkube resource class (typed or generic)."""
        if isinstance(res, KindInfo):
            return res
        return _kind_info(res)

    @classmethod
    def for_object(cls, obj: Mapping[str, Any]) -> KindInfo:
        """Find the kind of a dict object via lightkube's registry (CRDs must be registered)."""
        return cls.of(resource_registry.load(obj["apiVersion"], obj["kind"]))

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def group_path(self) -> str:
        return f"apis/{self.group}/{self.version}" if self.group else f"api/{self.version}"

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """URL path of the collection (all namespaces when namespace is None) or of one object."""
        parts = [self.group_path()]
        if self.namespaced and namespace:
            parts += ["namespaces", namespace]
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
            if subresource is not None:
                parts.append(subresource)
        return "/".join(parts)


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


def http(client: AsyncClient) -> httpx2.AsyncClient:
    """The httpx client inside lightkube (base URL, TLS and auth already configured)."""
    return client._client._client


ABORTIVE_CLOSE = (socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
"""SO_LINGER on, timeout 0: closing the socket resets the connection and discards unsent data."""


def _connection_pool(client: AsyncClient) -> Any:
    """httpcore's pool under lightkube's httpx client (and wrappers such as
    throttle.RetryAfterTransport); httpx configures it only when building the transport."""
    transport: object = http(client)._transport
    while hasattr(transport, "inner"):
        transport = transport.inner
    pool = getattr(transport, "_pool", None)
    if not all(hasattr(pool, a) for a in ("_socket_options", "_network_backend")):
        raise RuntimeError("unexpected httpx transport: cannot configure its connections")
    return pool


def abort_on_close(client: AsyncClient) -> None:
    """Make every connection the client opens from now on reset (RST) when closed.

    A request cancelled mid-flight (a leader stepping down cancels its reconciles) closes its
    connection. A normal close leaves the request's bytes to the kernel, which keeps sending
    them for minutes when the network drops them, so after a partition heals a deposed leader's
    write could still reach the API server — after another replica took over. A reset discards
    them. Call before the first request."""
    pool = _connection_pool(client)
    options = list(pool._socket_options or [])
    if ABORTIVE_CLOSE not in options:
        pool._socket_options = [*options, ABORTIVE_CLOSE]


def use_asyncio_network(client: AsyncClient) -> None:
    """Run the client's connections on asyncio transports instead of anyio's streams
    (`runtime.netstream`: about a sixth of the operator's CPU in a burst). Call before the first
    request."""
    pool = _connection_pool(client)
    if not isinstance(pool._network_backend, AsyncioBackend):
        pool._network_backend = AsyncioBackend()


def keep_connections_alive(client: AsyncClient) -> None:
    """Keep every connection the pool may open, not only httpx's default 20 idle ones.

    A burst has more requests in flight than that: each one that finished above 20 closed its
    connection, and the next one opened a new TLS connection to the API server, a handshake
    on both sides (350 handshakes for 3000 applies 50 at a time, 50 with this; client CPU per
    request 13 to 26 % less, bench/RESULTS.md round 15). Call before the first request."""
    pool = _connection_pool(client)
    pool._max_keepalive_connections = max(pool._max_keepalive_connections, pool._max_connections)


def prepare_connections(client: AsyncClient) -> None:
    """The connection policy of every client the operator runs on: reset on close, asyncio
    transports, no idle connection closed while the pool may hold it. Call before the first
    request."""
    abort_on_close(client)
    use_asyncio_network(client)
    keep_connections_alive(client)


def api_error(response: httpx2.Response) -> ApiError:
    """Turn an error response into lightkube's ApiError, also when the body is not a Status."""
    try:
        return ApiError(request=response.request, response=response)
    except (ValueError, TypeError):
        status = Status(code=response.status_code, message=response.text[:200], status="Failure")
        return ApiError(request=response.request, status=status)


_KIND_INFOS: dict[type[lkr.Resource], KindInfo] = {}


def _kind_info(res: type[lkr.Resource]) -> KindInfo:
    """A resource class's coordinates, read once: reconcilers ask for them on every pass
    (lightkube's `api_info` and the dataclass build were 4 % of the operator's CPU in a burst)."""
    kind = _KIND_INFOS.get(res)
    if kind is not None:
        return kind
    info = lkr.api_info(res)
    kind = _KIND_INFOS[res] = KindInfo(
        group=info.resource.group,
        version=info.resource.version,
        kind=info.resource.kind,
        plural=info.plural,
        namespaced=issubclass(res, lkr.NamespacedResource),
    )
    return kind


def absolute_url(client: AsyncClient, path: str, params: Mapping[str, str] | None) -> str:
    """The request's whole URL: httpx parses (and validates, character by character) a URL
    given whole once, a relative one with parameters three times."""
    url = f"{str(http(client).base_url).rstrip('/')}/{path}"
    return f"{url}?{urlencode(params)}" if params else url


async def request(
    client: AsyncClient,
    method: str,
    path: str,
    *,
    params: Mapping[str, str] | None = None,
    body: Any = None,
    content_type: str = "application/json",
) -> Obj:
    """Send one request and return the decoded JSON body; raise ApiError on HTTP errors."""
    content = None if body is None else orjson.dumps(body)
    headers = {"Content-Type": content_type} if content is not None else None
    response = await http(client).request(
        method, absolute_url(client, path, params), content=content, headers=headers
    )
    if response.status_code >= 400:
        raise api_error(response)
    if not response.content:
        return {}
    result: Obj = orjson.loads(response.content)
    return result


async def get(client: AsyncClient, kind: KindInfo, namespace: str, name: str) -> Obj | None:
    """GET one object; None when it does not exist."""
    try:
        return await request(client, "GET", kind.path(namespace, name))
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise


async def list_all(
    client: AsyncClient,
    kind: KindInfo,
    namespace: str | None,
    label_selector: str | None,
    page_size: int = 500,
    transform: Callable[[Obj], Obj] | None = None,
) -> tuple[list[Obj], str]:
    """List every object (following continue tokens); return the items and the list's RV.

    `transform` is applied to each item as its page arrives, so a cache that slims objects
    never holds every raw object of a big list at once."""
    params = {"limit": str(page_size)}
    if label_selector:
        params["labelSelector"] = label_selector
    items: list[Obj] = []
    while True:
        page = await request(client, "GET", kind.path(namespace), params=params)
        for item in page.get("items") or []:
            item.setdefault("apiVersion", kind.api_version)
            item.setdefault("kind", kind.kind)
            items.append(transform(item) if transform is not None else item)
        meta = page.get("metadata") or {}
        if not meta.get("continue"):
            return items, str(meta.get("resourceVersion", ""))
        params["continue"] = meta["continue"]


async def watch(
    client: AsyncClient,
    kind: KindInfo,
    namespace: str | None,
    label_selector: str | None,
    resource_version: str | None,
    timeout_seconds: int,
) -> AsyncIterator[Obj]:
    """Stream raw watch events (dicts with type/object) from resource_version, with bookmarks.

    Without a resource_version the stream starts with the current state, as a "watch list"
    (sendInitialEvents): an ADDED event per object, then a bookmark annotated
    `INITIAL_EVENTS_END`, then changes. Servers without the WatchList feature answer 422."""
    params = {
        "watch": "true",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": str(timeout_seconds),
    }
    if resource_version is None:
        params |= {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan"}
    else:
        params["resourceVersion"] = resource_version
    if label_selector:
        params["labelSelector"] = label_selector
    timeout = httpx2.Timeout(10.0, read=timeout_seconds + 30.0)
    http_client = http(client)
    url = absolute_url(client, kind.path(namespace), params)
    req = http_client.build_request("GET", url, timeout=timeout)
    response = await http_client.send(req, stream=True)
    try:
        if response.status_code >= 400:
            await response.aread()
            raise api_error(response)
        async for line in _lines(response):
            event: Obj = orjson.loads(line)
            yield event
    finally:
        await response.aclose()


async def _lines(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The non-empty lines of a streamed body, as bytes (JSON needs no text decoding)."""
    pending: list[bytes] = []
    async for chunk in response.aiter_bytes():
        *complete, rest = chunk.split(b"\n")
        if complete:
            complete[0] = b"".join([*pending, complete[0]])
            pending = []
            for line in complete:
                if line.strip():
                    yield line
        if rest:
            pending.append(rest)
    last = b"".join(pending)
    if last.strip():
        yield last


async def is_served(client: AsyncClient, kind: KindInfo) -> bool:
    """Whether the API server serves this kind (a CRD may not be installed)."""
    try:
        doc = await request(client, "GET", kind.group_path())
    except ApiError as err:
        if err.status.code in (404, 503):
            return False
        raise
    return any(r.get("name") == kind.plural for r in doc.get("resources") or [])


def format_selector(selector: Mapping[str, str] | str | None) -> str | None:
    """Render an equality label selector for the labelSelector query parameter."""
    if selector is None or isinstance(selector, str):
        return selector or None
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or None
