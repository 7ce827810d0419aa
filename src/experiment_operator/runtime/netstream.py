"""httpcore's network backend on asyncio transports, with TLS through a memory BIO.

httpcore's default backend is anyio: every read and write opens a cancel scope with its own
timer and passes a checkpoint, and its TLS stream adds another layer of awaits per record. In a
burst of 1000 TrackingServers that was about a sixth of the operator's CPU (bench/RESULTS.md, round
9). Here a read that finds data buffered returns it at once and a timer exists only while a
call waits. TLS runs on an `ssl.SSLObject` over memory BIOs in the protocol itself rather than
in asyncio's SSL transport, which allocates a 256 KiB buffer per connection (a burst opens
~80). Closing aborts the transport: with `kubeapi.ABORTIVE_CLOSE` the peer gets a reset and
no unsent bytes linger (see `kubeapi.abort_on_close`).
"""

# The timeout parameters are httpcore's interface (AsyncNetworkStream, AsyncNetworkBackend).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import collections
import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore2

READ_CHUNK = 64 * 1024
PAUSE_READING_ABOVE = 1 << 20
"""Decrypted bytes buffered before the socket stops being read (a slow watch consumer)."""


def _readable(sock: Any) -> bool:
    """Whether a read would not block; on an idle HTTP connection: the server closed it."""
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class _Connection(asyncio.Protocol):
    """One TCP connection: buffers what arrives (decrypted once TLS is on), wakes one waiter."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.tls: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.eof = False
        self.error: BaseException | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._handshaken = False
        self._waiter: asyncio.Future[None] | None = None

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.tls is None:
            self._buffer(data)
        else:
            self._incoming.write(data)
            if self._handshaken:  # else the handshake, woken below, reads it
                self._decrypt()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = self.error or exc
        self._wake()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake()

    # --- used by the stream ---

    def _buffer(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > PAUSE_READING_ABOVE and not self._reading_paused and self.transport:
            self.transport.pause_reading()
            self._reading_paused = True

    def _decrypt(self) -> None:
        assert self.tls is not None
        while True:
            try:
                data = self.tls.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError as err:
                if not isinstance(err, ssl.SSLZeroReturnError):  # not close_notify: broken
                    self.error = err
                self.eof = True
                break
            if not data:
                self.eof = True
                break
            self._buffer(data)
        self._flush()  # TLS 1.3 may answer a KeyUpdate

    def _flush(self) -> None:
        if self._outgoing.pending and self.transport is not None:
            self.transport.write(self._outgoing.read())

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout: float | None, error: type[Exception]) -> None:
        """Until the next arrival, eof, loss or resumed writing; `error` after `timeout`."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter

        def expire() -> None:
            if not waiter.done():
                waiter.set_exception(error("timed out"))

        timer = None if timeout is None else loop.call_later(timeout, expire)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def take(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` of what is buffered, joining small chunks."""
        data = self.chunks.popleft()
        if len(data) > max_bytes:
            self.chunks.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        elif self.chunks and len(data) + len(self.chunks[0]) <= max_bytes:
            parts = [data]
            size = len(data)
            while self.chunks and size + len(self.chunks[0]) <= max_bytes:
                size += len(self.chunks[0])
                parts.append(self.chunks.popleft())
            data = b"".join(parts)
        self.buffered -= len(data)
        if self._reading_paused and self.buffered <= PAUSE_READING_ABOVE // 2 and self.transport:
            self.transport.resume_reading()
            self._reading_paused = False
        return data

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        if self.tls is None:
            self.transport.write(data)
        else:
            self.tls.write(data)
            self._flush()

    async def handshake(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        self.tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        while True:
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                if self.eof:
                    raise ConnectionResetError("closed during the TLS handshake") from self.error
                await self.wait(None, httpcore2.ConnectTimeout)
                continue
            self._flush()
            self._handshaken = True
            if self._incoming.pending:
                self._decrypt()
            return

    @property
    def writing_paused(self) -> bool:
        return self._writing_paused


class AsyncioStream(httpcore2.AsyncNetworkStream):
    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        connection = self._connection
        while not connection.chunks and not connection.eof:
            await connection.wait(timeout, httpcore2.ReadTimeout)
        if connection.chunks:
            return connection.take(max_bytes)
        if connection.error is not None:
            raise httpcore2.ReadError(str(connection.error)) from connection.error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        connection = self._connection
        transport = connection.transport
        if connection.error is not None or transport is None or transport.is_closing():
            raise httpcore2.WriteError(str(connection.error or "connection closed"))
        connection.send(buffer)
        while connection.writing_paused and connection.error is None:
            await connection.wait(timeout, httpcore2.WriteTimeout)
        if connection.error is not None:
            raise httpcore2.WriteError(str(connection.error)) from connection.error

    async def aclose(self) -> None:
        if self._connection.transport is not None:
            self._connection.transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._connection.handshake(ssl_context, server_hostname)
        except TimeoutError as err:
            await self.aclose()
            raise httpcore2.ConnectTimeout("TLS handshake timed out") from err
        except (OSError, ssl.SSLError) as err:
            await self.aclose()
            raise httpcore2.ConnectError(str(err)) from err
        return self

    def get_extra_info(self, info: str) -> Any:
        connection = self._connection
        transport = connection.transport
        if info == "ssl_object":
            return connection.tls
        if transport is None:
            return None
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        if info == "is_readable":  # an idle connection with something to read was closed
            sock = transport.get_extra_info("socket")
            return bool(connection.eof or connection.chunks or _readable(sock))
        return None


class AsyncioBackend(httpcore2.AsyncNetworkBackend):
    """The network backend for httpcore2's connection pool (see the module docstring)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = None if local_address is None else (local_address, 0)
        try:
            async with asyncio.timeout(timeout):
                transport, connection = await loop.create_connection(
                    _Connection, host, port, local_addr=local
                )
        except TimeoutError as err:
            raise httpcore2.ConnectTimeout(f"connecting to {host}:{port} timed out") from err
        except OSError as err:
            raise httpcore2.ConnectError(str(err)) from err
        sock: socket.socket = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(connection)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_unix_connection(_Connection, path)
        except TimeoutError as err:
            raise httpcore2.ConnectTimeout(f"connecting to {path} timed out") from err
        except OSError as err:
            raise httpcore2.ConnectError(str(err)) from err
        return AsyncioStream(connection)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
