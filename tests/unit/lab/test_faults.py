"""The lab's partition proxy behaves like TCP across a black hole (no API server needed)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from experiment_lab.faults import TcpProxy, squeeze_objects


@dataclass
class Sink:
    """A server that records what each connection sent and answers `ok:<data>`."""

    received: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1024):
                self.received.append(data)
                writer.write(b"ok:" + data)
                await writer.drain()
        except ConnectionResetError:
            pass
        finally:
            writer.close()
            self.closed.set()


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[TcpProxy, Sink]]:
    sink = Sink()
    sink.server = await asyncio.start_server(sink.handle, "127.0.0.1", 0)
    port = sink.server.sockets[0].getsockname()[1]
    async with TcpProxy("127.0.0.1", port) as tcp:
        yield tcp, sink
    sink.server.close()


async def connect(tcp: TcpProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", tcp.port)


async def settle() -> None:
    await asyncio.sleep(0.2)


async def test_forwards_both_ways(proxy: tuple[TcpProxy, Sink]) -> None:
    tcp, sink = proxy
    reader, writer = await connect(tcp)
    writer.write(b"hello")
    assert await asyncio.wait_for(reader.read(100), 5) == b"ok:hello"
    writer.close()
    assert sink.received == [b"hello"]


async def test_partition_holds_bytes_until_it_heals(proxy: tuple[TcpProxy, Sink]) -> None:
    tcp, sink = proxy
    reader, writer = await connect(tcp)
    writer.write(b"a")
    assert await asyncio.wait_for(reader.read(100), 5) == b"ok:a"
    tcp.partition()
    writer.write(b"b")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(100), 0.5)
    assert sink.received == [b"a"]
    tcp.heal()
    assert await asyncio.wait_for(reader.read(100), 5) == b"ok:b"


async def test_new_connections_hang_during_a_partition(proxy: tuple[TcpProxy, Sink]) -> None:
    tcp, sink = proxy
    tcp.partition()
    reader, writer = await connect(tcp)
    writer.write(b"x")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(100), 0.5)
    assert sink.received == []
    tcp.heal()
    assert await asyncio.wait_for(reader.read(100), 5) == b"ok:x"


async def test_bytes_of_a_normally_closed_socket_arrive_after_healing(
    proxy: tuple[TcpProxy, Sink],
) -> None:
    """The sender's kernel would retransmit them: a stale request still lands."""
    tcp, sink = proxy
    _, writer = await connect(tcp)
    tcp.partition()
    writer.write(b"stale")
    writer.close()
    await settle()
    tcp.heal()
    await asyncio.wait_for(sink.closed.wait(), 5)
    assert sink.received == [b"stale"]


async def test_bytes_of_a_reset_socket_are_dropped(proxy: tuple[TcpProxy, Sink]) -> None:
    tcp, sink = proxy
    _, writer = await connect(tcp)
    tcp.partition()
    writer.write(b"stale")
    await writer.drain()
    await settle()
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
    await settle()
    tcp.heal()
    await asyncio.wait_for(sink.closed.wait(), 5)
    assert sink.received == []
    assert tcp.dropped_on_reset == 1


async def test_reset_closes_every_connection(proxy: tuple[TcpProxy, Sink]) -> None:
    tcp, _ = proxy
    reader, writer = await connect(tcp)
    writer.write(b"a")
    assert await asyncio.wait_for(reader.read(100), 5) == b"ok:a"
    await tcp.reset()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(100), 5)


def test_squeeze_routes_one_service_account_to_one_seat() -> None:
    level, ballast, schema = squeeze_objects("s", ("ops", "operator"))
    assert level["spec"]["limited"]["nominalConcurrencyShares"] == 1
    assert level["spec"]["limited"]["limitResponse"] == {"type": "Reject"}
    assert ballast["spec"]["limited"]["nominalConcurrencyShares"] > 600
    subject = schema["spec"]["rules"][0]["subjects"][0]
    assert subject["serviceAccount"] == {"name": "operator", "namespace": "ops"}
    assert schema["spec"]["priorityLevelConfiguration"] == {"name": "s"}
