"""Run the operator in-process against a cluster, for tests and benchmarks.

`run_operator` starts a Manager with the TrackingServer controller on an asyncio task and records
every request its client makes, so a caller can count the operator's writes exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

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
    client = AsyncClient(config=KubeConfig.from_file(kubeconfig), field_manager=FIELD_MANAGER)
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
