"""Faults to inject between the operator and the API server: a TCP proxy that can partition
(black-hole) or reset connections, and API Priority and Fairness objects that throttle one user.

The proxy models what a network partition does to TCP, not a tidy disconnect: while
partitioned nothing passes either way, nothing fails fast, new connections hang. Bytes a sender
wrote during the partition are delivered once it heals — the sender's kernel would retransmit
them, even after the application closed the socket normally — unless the sender reset the
connection (an abortive close discards them). That is the case that matters for leader election:
a request written just before a leader stepped down must not reach the API server after another
replica took over.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from lightkube import AsyncClient

from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.kubeapi import Obj

BUFFER_LIMIT = 4 << 20
"""Bytes held per direction while partitioned before the proxy stops reading (back-pressure)."""


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a crashed or aborting peer would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass
class _Direction:
    """Bytes read from one side, waiting to be written to the other."""

    pending: bytearray = field(default_factory=bytearray)
    eof: bool = False
    reset: bool = False
    readable: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when there is something new: data, EOF or a reset."""
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when `pending` was handed on."""


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target`; `partition()`/`heal()` and `reset()` inject faults.

    Counts the connections accepted and those reset by the client during a partition (whose
    pending bytes were therefore dropped, not delivered)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.dropped_on_reset = 0
        """Connections whose held bytes were discarded because the sender reset them."""

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def partitioned(self) -> bool:
        return not self._flowing.is_set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        self.heal()
        if self._server is not None:
            self._server.close()
            self._server = None
        await self.reset()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def partition(self) -> None:
        """From now on nothing passes in either direction, and new connections hang."""
        self._flowing.clear()

    def heal(self) -> None:
        """Deliver what was held and forward again."""
        self._flowing.set()

    async def reset(self) -> None:
        """Reset every open connection (both sides see RST), e.g. an API server crash."""
        for writer in list(self._writers):
            _abort(writer)
        self._writers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        to_server, to_client = _Direction(), _Direction()
        tasks = [asyncio.create_task(self._read(reader, to_server))]
        try:
            await self._flowing.wait()  # a partition also stops new connections
            if not to_server.reset:
                up_reader, upstream = await asyncio.open_connection(*self._target)
                self._writers.add(upstream)
                tasks.append(asyncio.create_task(self._write(to_server, upstream, writer)))
                tasks.append(
                    asyncio.create_task(self._pump(up_reader, to_client, writer, upstream))
                )
                await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except OSError:
            pass  # the API server is down: the client sees its connection closed
        finally:
            for pending in tasks:
                pending.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for side in (writer, upstream):
                if side is not None:
                    self._writers.discard(side)
                    side.close()
            self._tasks.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        direction: _Direction,
        writer: asyncio.StreamWriter,
        source: asyncio.StreamWriter,
    ) -> None:
        reading = asyncio.create_task(self._read(reader, direction))
        try:
            await self._write(direction, writer, source)
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)

    async def _read(self, reader: asyncio.StreamReader, direction: _Direction) -> None:
        """Read eagerly (so a reset is seen at once) into `pending`."""
        while not direction.eof and not direction.reset:
            if len(direction.pending) >= BUFFER_LIMIT:
                direction.drained.clear()
                await direction.drained.wait()
            try:
                data = await reader.read(65536)
            except ConnectionResetError:
                direction.reset = True
                if self.partitioned and direction.pending:
                    self.dropped_on_reset += 1
                direction.pending.clear()
            else:
                if data:
                    direction.pending += data
                else:
                    direction.eof = True
            direction.readable.set()

    async def _write(
        self,
        direction: _Direction,
        writer: asyncio.StreamWriter,
        source: asyncio.StreamWriter,
    ) -> None:
        """Forward `pending` to `writer` whenever the network flows; pass EOF and resets on."""
        while True:
            await direction.readable.wait()
            await self._flowing.wait()
            direction.readable.clear()
            if direction.reset:
                _abort(writer)
                _abort(source)
                return
            if direction.pending:
                data = bytes(direction.pending)
                direction.pending.clear()
                direction.drained.set()
                writer.write(data)
                await writer.drain()
            if direction.eof:
                if writer.can_write_eof():
                    writer.write_eof()
                return


# --- API Priority and Fairness ---------------------------------------------------------------

FLOWCONTROL = "apis/flowcontrol.apiserver.k8s.io/v1"


def squeeze_objects(name: str, service_account: tuple[str, str]) -> list[Obj]:
    """A FlowSchema sending every request of one ServiceAccount (namespace, name) to a priority
    level with a single seat that rejects (429, Retry-After) instead of queuing, plus a level
    with many shares and nothing routed to it, so the single seat is all the squeezed level has
    (seats are shares of the server's total)."""
    namespace, account = service_account
    limited = {"lendablePercent": 0, "borrowingLimitPercent": 0}
    return [
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "PriorityLevelConfiguration",
            "metadata": {"name": name},
            "spec": {
                "type": "Limited",
                "limited": {
                    "nominalConcurrencyShares": 1,
                    **limited,
                    "limitResponse": {"type": "Reject"},
                },
            },
        },
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "PriorityLevelConfiguration",
            "metadata": {"name": f"{name}-ballast"},
            "spec": {
                "type": "Limited",
                "limited": {
                    "nominalConcurrencyShares": 1000,
                    "lendablePercent": 100,
                    "limitResponse": {"type": "Reject"},
                },
            },
        },
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": name},
            "spec": {
                "matchingPrecedence": 1000,
                "priorityLevelConfiguration": {"name": name},
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [
                    {
                        "subjects": [
                            {
                                "kind": "ServiceAccount",
                                "serviceAccount": {"name": account, "namespace": namespace},
                            }
                        ],
                        "resourceRules": [
                            {
                                "verbs": ["*"],
                                "apiGroups": ["*"],
                                "resources": ["*"],
                                "clusterScope": True,
                                "namespaces": ["*"],
                            }
                        ],
                        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    }
                ],
            },
        },
    ]


@asynccontextmanager
async def squeezed(
    admin: AsyncClient, service_account: tuple[str, str], name: str = "lab-squeeze"
) -> AsyncIterator[None]:
    """Throttle one ServiceAccount with API Priority and Fairness while inside."""
    objects = squeeze_objects(name, service_account)
    plural = {
        "PriorityLevelConfiguration": "prioritylevelconfigurations",
        "FlowSchema": "flowschemas",
    }
    try:
        for obj in objects:
            await kubeapi.request(admin, "POST", f"{FLOWCONTROL}/{plural[obj['kind']]}", body=obj)
        yield
    finally:
        for obj in reversed(objects):
            path = f"{FLOWCONTROL}/{plural[obj['kind']]}/{obj['metadata']['name']}"
            with contextlib.suppress(Exception):
                await kubeapi.request(admin, "DELETE", path)
