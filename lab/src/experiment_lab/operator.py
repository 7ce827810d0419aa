"""Run the operator in-process against a cluster, for tests and benchmarks.

`run_operator` starts a Manager with the TrackingServer controller on an asyncio task and records
every request its client makes, so a caller can count the operator's writes exactly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from lightkube import AsyncClient, KubeConfig

from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.apply import FIELD_MANAGER
from experiment_operator.runtime.manager import Manager
from experiment_operator.trackingserver.children import ChildOptions, IngressController
from experiment_operator.trackingserver.controller import OWNED_LABELS, child_options, setup

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Operator:
    """A running operator and the requests its client made (method, path, status)."""

    manager: Manager
    client: AsyncClient
    requests: list[tuple[str, str, int]] = field(default_factory=list)

    def writes(self, since: int = 0) -> list[tuple[str, str, int]]:
        return [r for r in self.requests[since:] if r[0] in WRITE_METHODS]


@asynccontextmanager
async def run_operator(
    kubeconfig: Path,
    *,
    namespaces: list[str] | None = None,
    options: ChildOptions | None = None,
    resync_period: float | None = None,
    name: str = "trackingserver",
) -> AsyncIterator[Operator]:
    """Start the operator (no leader election) and stop it cleanly afterwards."""
    client = AsyncClient(
        config=KubeConfig.from_file(kubeconfig),
        field_manager=FIELD_MANAGER,
        timeout=kubeapi.REQUEST_TIMEOUT,
    )
    requests: list[tuple[str, str, int]] = []

    async def record(response: httpx2.Response) -> None:
        requests.append((response.request.method, response.request.url.path, response.status_code))

    http = kubeapi.http(client)
    http.event_hooks = {**http.event_hooks, "response": [*http.event_hooks["response"], record]}
    if options is None:
        options = await child_options(client, IngressController.TRAEFIK, "nginx")
    manager = Manager(client, namespaces=namespaces, owned_label_selector=OWNED_LABELS)
    setup(manager, options, name=name, resync_period=resync_period, recheck_interval=1.0)
    task = asyncio.create_task(manager.run())
    try:
        await asyncio.wait_for(manager.wait_synced(), 60)
        yield Operator(manager, client, requests)
    finally:
        manager.stop()
        await asyncio.wait_for(task, 30)
        await client.close()


@contextmanager
def operator_in_thread(kubeconfig: Path, **kwargs: Any) -> Iterator[None]:
    """`run_operator` on an event loop of its own thread, for synchronous tests that block
    while they wait (the operator keeps reconciling meanwhile)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        try:
            async with run_operator(kubeconfig, **kwargs):
                started.set()
                await stop.wait()
        except BaseException as err:
            failure.append(err)
            started.set()
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(120)
    if failure or not started.is_set():
        raise RuntimeError("the operator did not start") from (failure[0] if failure else None)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        loop.close()
