"""The asyncio network backend under lightkube's client, against a local HTTPS server that
asks for a client certificate as the API server does (no API server needed)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpcore2
import httpx2
import orjson
import pytest
from lightkube import AsyncClient, KubeConfig

from experiment_lab import pki
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.kubeapi import KindInfo
from experiment_operator.runtime.netstream import AsyncioBackend

Respond = Callable[[asyncio.StreamWriter, bytes], Awaitable[None]]
BIG = 3 * 1024 * 1024  # beyond the backend's read-pause threshold
CONFIGMAPS = KindInfo("", "v1", "ConfigMap", "configmaps", namespaced=True)


@dataclass
class Server:
    """Answers by path; counts connections and requests."""

    port: int = 0
    connections: int = 0
    requests: list[str] = field(default_factory=list)
    close_after_response: bool = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *headers = head.decode().split("\r\n")
                lengths = [h.split(":")[1] for h in headers if h.lower().startswith("content-le")]
                body = await reader.readexactly(int(lengths[0]) if lengths else 0)
                path = request_line.split()[1]
                self.requests.append(path)
                await ROUTES[path.split("?")[0]](writer, body)
                if self.close_after_response:
                    break
        writer.close()


def _response(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def _echo(writer: asyncio.StreamWriter, body: bytes) -> None:
    writer.write(_response(body))
    await writer.drain()


async def _big(writer: asyncio.StreamWriter, _: bytes) -> None:
    writer.write(_response(orjson.dumps({"data": "x" * BIG})))
    await writer.drain()


async def _watch(writer: asyncio.StreamWriter, _: bytes) -> None:
    """Three events in chunks that split lines, slowly, then the end of the stream."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
    stream = b"".join(
        orjson.dumps({"type": "ADDED", "object": {"metadata": {"name": f"cm-{i}"}}}) + b"\n"
        for i in range(3)
    )
    for start in range(0, len(stream), 40):
        piece = stream[start : start + 40]
        writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _never(_writer: asyncio.StreamWriter, _: bytes) -> None:
    await asyncio.sleep(3600)


ROUTES: dict[str, Respond] = {
    "/api/v1/namespaces/ns/configmaps/echo": _echo,
    "/api/v1/namespaces/ns/configmaps/big": _big,
    "/api/v1/namespaces/ns/configmaps": _watch,
    "/api/v1/namespaces/ns/configmaps/never": _never,
}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> pki.Pki:
    return pki.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def server(certificates: pki.Pki) -> AsyncIterator[Server]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certificates.ca_cert)
    context.load_cert_chain(certificates.serving_cert, certificates.serving_key)
    context.verify_mode = ssl.CERT_REQUIRED
    state = Server()
    listener = await asyncio.start_server(state.handle, "127.0.0.1", 0, ssl=context)
    state.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield state
        listener.close()


def _client(server: Server, certificates: pki.Pki, timeout: float = 10.0) -> AsyncClient:
    config = KubeConfig.from_dict(
        {
            "clusters": [
                {
                    "name": "c",
                    "cluster": {
                        "server": f"https://127.0.0.1:{server.port}",
                        "certificate-authority": str(certificates.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "u",
                    "user": {
                        "client-certificate": str(certificates.admin_cert),
                        "client-key": str(certificates.admin_key),
                    },
                }
            ],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )
    client = AsyncClient(config=config, timeout=httpx2.Timeout(timeout))
    kubeapi.prepare_connections(client)
    return client


async def test_requests_share_one_verified_connection(
    server: Server, certificates: pki.Pki
) -> None:
    client = _client(server, certificates)
    try:
        path = CONFIGMAPS.path("ns", "echo")
        for i in range(5):
            body = {"metadata": {"name": "echo"}, "data": {"i": str(i)}}
            assert await kubeapi.request(client, "PATCH", path, body=body) == body
        big = await kubeapi.request(client, "GET", CONFIGMAPS.path("ns", "big"))
        assert len(big["data"]) == BIG
    finally:
        await client.close()
    assert server.connections == 1
    assert len(server.requests) == 6


async def test_a_watch_streams_events_split_across_chunks(
    server: Server, certificates: pki.Pki
) -> None:
    client = _client(server, certificates)
    try:
        events = [event async for event in kubeapi.watch(client, CONFIGMAPS, "ns", None, None, 5)]
    finally:
        await client.close()
    assert [e["object"]["metadata"]["name"] for e in events] == ["cm-0", "cm-1", "cm-2"]


async def test_a_connection_the_server_closed_is_not_reused(
    server: Server, certificates: pki.Pki
) -> None:
    server.close_after_response = True
    client = _client(server, certificates)
    try:
        path = CONFIGMAPS.path("ns", "echo")
        for i in range(3):
            assert await kubeapi.request(client, "PATCH", path, body={"i": i}) == {"i": i}
            await asyncio.sleep(0.05)  # the server's close arrives before the next request
    finally:
        await client.close()
    assert server.connections == 3


async def test_a_silent_server_times_out(server: Server, certificates: pki.Pki) -> None:
    client = _client(server, certificates, timeout=0.3)
    try:
        with pytest.raises(httpx2.ReadTimeout):
            await kubeapi.request(client, "GET", CONFIGMAPS.path("ns", "never"))
    finally:
        await client.close()


async def test_an_untrusted_server_fails_the_handshake(
    server: Server, certificates: pki.Pki, tmp_path: Path
) -> None:
    other = pki.generate(tmp_path / "other")
    untrusting = _client(server, other)
    try:
        with pytest.raises(httpx2.ConnectError):
            await kubeapi.request(untrusting, "GET", CONFIGMAPS.path("ns", "echo"))
    finally:
        await untrusting.close()


async def test_nothing_listening_is_a_connect_error() -> None:
    with socket.socket() as bound_only:  # bound, not listening: connecting is refused
        bound_only.bind(("127.0.0.1", 0))
        with pytest.raises(httpcore2.ConnectError):
            await AsyncioBackend().connect_tcp("127.0.0.1", bound_only.getsockname()[1], 2.0)
