"""pytest plugin (`-p experiment_lab.leakcheck`): no credential the suite used may appear in an
operator log line, an Event or a TrackingServer's status.

- In-process operators log through Python logging: the `experiment_operator` logger is set to
  DEBUG for the session (the strictest case) and every record is scanned, fields included.
- Operator processes log to files that the lab registers (`credentials.scan_file`).
- `watch_cluster(kubeconfig)` follows a cluster for the session: Events written by the operator
  and every TrackingServer status are scanned; every Secret's values are registered as
  credentials (`harvest`).

Each test fails at teardown if something it produced contains a credential; the session fails
at the end for anything seen later (an Event that arrived after its test).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.core.resource import Resource
from lightkube.resources.core_v1 import Event, Secret

from experiment_lab.credentials import PUBLIC_KEYS, SCANNER, LogHandler, Scanner
from experiment_operator.runtime.informer import Handler, Informer
from experiment_operator.runtime.kubeapi import Obj
from experiment_operator.runtime.store import Change
from experiment_operator.trackingserver.controller import EVENT_COMPONENT
from experiment_operator.trackingserver.resources import TrackingServerResource

OPERATOR_LOGGER = "experiment_operator"


class ClusterWatch:
    """A thread with its own event loop following one cluster, independent of the tests' loop
    (which sync tests block)."""

    def __init__(self, kubeconfig: Path, *, harvest: bool, scanner: Scanner = SCANNER) -> None:
        self._kubeconfig = kubeconfig
        self._harvest = harvest
        self._scanner = scanner
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leakcheck", daemon=True)

    def start(self) -> ClusterWatch:
        self._thread.start()
        self._started.wait(30)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        client = AsyncClient(config=KubeConfig.from_file(self._kubeconfig))
        informers = [
            self._informer(client, Event, self._event),
            self._informer(client, TrackingServerResource, self._status),
        ]
        if self._harvest:
            informers.append(self._informer(client, Secret, self._secret))
        tasks = [asyncio.create_task(i.run()) for i in informers]
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.close()

    @staticmethod
    def _informer(client: AsyncClient, kind: type[Resource], handler: Handler) -> Informer:
        informer = Informer(client, kind)
        informer.add_handler(handler)
        return informer

    def _event(self, change: Change) -> None:
        event = change.obj
        source = (event.get("source") or {}).get("component")
        if change.type == "DELETED" or EVENT_COMPONENT not in (
            event.get("reportingComponent"),
            source,
        ):
            return
        meta = event["metadata"]
        shown = {k: v for k, v in event.items() if k != "metadata"}
        where = f"Event {meta.get('namespace')}/{meta['name']} ({event.get('reason')})"
        self._scanner.add(where, json.dumps(shown))

    def _status(self, change: Change) -> None:
        obj = change.obj
        if change.type == "DELETED" or not obj.get("status"):
            return
        meta = obj["metadata"]
        where = f"TrackingServer {meta.get('namespace')}/{meta['name']} status"
        self._scanner.add(where, json.dumps(obj["status"]))

    def _secret(self, change: Change) -> None:
        secret: Obj = change.obj
        meta = secret["metadata"]
        for key, value in (secret.get("data") or {}).items():
            if key in PUBLIC_KEYS or not value:
                continue
            try:
                text = base64.b64decode(value).decode()
            except (ValueError, UnicodeDecodeError):
                continue  # binary: cannot appear in a log line as is
            self._scanner.register(text, f"Secret {meta.get('namespace')}/{meta['name']} {key}")


def watch_cluster(kubeconfig: Path, *, harvest: bool = True) -> ClusterWatch:
    """Scan a cluster's Events and TrackingServer status until `stop()`; with `harvest`,
    register every Secret's values (only for the suite's own clusters)."""
    return ClusterWatch(kubeconfig, harvest=harvest).start()


def _report(leaks: list[object]) -> str:
    lines = "\n".join(f"  - {leak}" for leak in leaks)
    return f"credential(s) leaked (values not shown):\n{lines}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line saying what was checked, so a run shows the check ran."""
    files = len(SCANNER.files)
    terminalreporter.write_line(
        f"leak check: {SCANNER.registered} credentials "
        f"({len(SCANNER.secrets)} forms) looked for in {len(SCANNER.texts)} log lines, Events "
        f"and statuses (from in-process operators, {files} operator log files, the clusters)"
    )


def pytest_configure(config: pytest.Config) -> None:
    logger = logging.getLogger(OPERATOR_LOGGER)
    logger.setLevel(logging.DEBUG)
    logger.addHandler(LogHandler())


@pytest.fixture(autouse=True)
def no_credential_in_this_tests_output() -> Iterator[None]:
    yield
    leaks = SCANNER.check()
    if leaks:
        pytest.fail(_report(list(leaks)))


@pytest.fixture(scope="session", autouse=True)
def no_credential_in_the_sessions_output() -> Iterator[None]:
    yield
    leaks = SCANNER.check()
    if leaks:
        pytest.fail(_report(list(leaks)))
