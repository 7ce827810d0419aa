"""The manager: shared caches, controllers, leader election, probes/metrics and signals.

Start order: probe server → caches (informers; every replica keeps warm caches) → wait until
synced (ready) → campaign for leadership → run the controllers while leading. On SIGTERM/SIGINT
or `stop()` the controllers stop first, then the Lease is released and the informers end.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lightkube import AsyncClient
from lightkube.core import resource as lkr

from . import kubeapi, metrics, throttle
from .cache import cache_transform
from .controller import Controller
from .events import EventRecorder
from .informer import Handler, Informer
from .kubeapi import KindInfo
from .leaderelection import LeaderElector
from .store import Store

log = logging.getLogger(__name__)

EVENT_GRACE = 2.0
"""Seconds a stopping manager gives the Events still being written."""


class KindNotServedError(RuntimeError):
    """The primary kind's API is not served (its CRD is not installed): nothing to reconcile."""


class LeadershipLost(RuntimeError):
    """The Lease could not be renewed: the process should exit and start over."""


@dataclass
class _Cache:
    """One kind's store, the informers filling it, and the handlers they notify."""

    kind: KindInfo
    selector: str | None
    required: bool
    fields: frozenset[str] | None
    store: Store = field(default_factory=Store)
    handlers: list[Handler] = field(default_factory=list)
    served: bool | None = None
    checked: float = 0.0
    """`time.monotonic()` of the last discovery of `served`."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Manager:
    """Runs controllers against shared, label-selectable caches, optionally only while leader.

    `identity` names this replica in the Lease (default: the host name, i.e. the Pod's name);
    `instance` is the Pod's UID, which lets a restarted container take its Lease back at once
    (see `LeaderElector`). `lease_timings` are (lease_duration, renew_deadline, retry_period)
    in seconds, client-go's defaults; `probe_address` (host, port) serves /healthz, /readyz and
    /metrics (port 0 picks a free port, see `probe.port`)."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        namespaces: list[str] | None = None,
        owned_label_selector: Mapping[str, str] | None = None,
        leader_election: bool = False,
        leader_election_namespace: str = "default",
        leader_election_id: str = "experiment-operator",
        identity: str | None = None,
        instance: str = "",
        lease_timings: tuple[float, float, float] = (15.0, 10.0, 2.0),
        probe_address: tuple[str, int] | None = None,
        resync_period: float = 10 * 3600.0,
        handle_signals: bool = False,
    ) -> None:
        self.client = client
        self.namespaces = namespaces or None
        self.owned_label_selector = dict(owned_label_selector or {}) or None
        self.resync_period = resync_period
        self.identity = identity or socket.gethostname()
        self.instance = instance
        self._leader_election = leader_election
        self._lease_namespace = leader_election_namespace
        self._lease_name = leader_election_id
        self._lease_timings = lease_timings
        self._probe_address = probe_address
        self._handle_signals = handle_signals
        self._caches: dict[KindInfo, _Cache] = {}
        self._controllers: list[Controller] = []
        self._recorders: list[EventRecorder] = []
        self._informers: list[Informer] = []
        self._informer_tasks: list[asyncio.Task[None]] = []
        self._synced = asyncio.Event()
        self._stop = asyncio.Event()
        self.elector: LeaderElector | None = None
        self.probe: metrics.ProbeServer | None = None

    # --- registration (before run) ---

    def watch(
        self,
        kind: type[lkr.Resource],
        *,
        label_selector: Mapping[str, str] | None = None,
        required: bool = False,
        fields: Iterable[str] | None = None,
    ) -> Store:
        """Cache `kind` (once per kind; all users must agree on the label selector and on the
        cached `fields`: None for whole objects, else the top-level fields kept besides
        metadata, e.g. ("status",) — see `runtime.cache`)."""
        info = KindInfo.of(kind)
        selector = kubeapi.format_selector(label_selector)
        kept = None if fields is None else frozenset(fields)
        cache = self._caches.get(info)
        if cache is None:
            cache = self._caches[info] = _Cache(info, selector, required, kept)
        elif cache.selector != selector:
            raise ValueError(f"{info.kind} is already cached with selector {cache.selector!r}")
        elif cache.fields != kept:
            raise ValueError(f"{info.kind} is already cached with fields {cache.fields!r}")
        cache.required = cache.required or required
        return cache.store

    def add_handler(self, kind: type[lkr.Resource], handler: Handler) -> None:
        self._cache(kind).handlers.append(handler)

    def event_recorder(self, component: str) -> EventRecorder:
        """An Event recorder for `component` whose background writes get `EVENT_GRACE`
        seconds when the manager stops (controller-runtime's `GetEventRecorderFor`); none after
        a lost lease."""
        recorder = EventRecorder(self.client, component)
        self._recorders.append(recorder)
        return recorder

    def add_controller(self, controller: Controller) -> None:
        self._controllers.append(controller)

    # --- reading (reconcilers) ---

    def cache(self, kind: type[lkr.Resource]) -> Store:
        """The cached objects of a watched kind (read-only dicts; cheap)."""
        return self._cache(kind).store

    def is_served(self, kind: type[lkr.Resource]) -> bool:
        """Whether the API server serves a watched kind (known once caches started)."""
        return bool(self._cache(kind).served)

    @property
    def ready(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    @property
    def is_leader(self) -> bool:
        return self.elector.is_leader if self.elector is not None else self.ready

    def _cache(self, kind: type[lkr.Resource]) -> _Cache:
        info = KindInfo.of(kind)
        try:
            return self._caches[info]
        except KeyError:
            raise KeyError(f"{info.kind} is not watched by this manager") from None

    # --- running ---

    def stop(self) -> None:
        """Ask `run()` to shut down cleanly (also what SIGTERM/SIGINT do)."""
        self._stop.set()

    async def run(self) -> None:
        """Run until `stop()`, a signal or cancellation; raises LeadershipLost if demoted."""
        metrics.instrument_client(self.client)
        throttle.honour_retry_after(self.client)
        kubeapi.prepare_connections(self.client)  # a deposed leader's writes must not linger
        loop = asyncio.get_running_loop()
        if self._handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        if self._probe_address is not None:
            self.probe = metrics.ProbeServer(*self._probe_address, ready=lambda: self.ready)
            await self.probe.start()
        main = asyncio.create_task(self._main())
        stopping = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait([main, stopping], return_when=asyncio.FIRST_COMPLETED)
            if main.done():
                main.result()
        finally:
            for task in (main, stopping):
                task.cancel()
            await asyncio.gather(main, stopping, return_exceptions=True)
            grace = EVENT_GRACE if self._stop.is_set() else 0.0
            await asyncio.gather(*(r.shutdown(grace) for r in self._recorders))
            for task in self._informer_tasks:
                task.cancel()
            await asyncio.gather(*self._informer_tasks, return_exceptions=True)
            if self.probe is not None:
                await self.probe.stop()
            if self._handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            log.info("manager stopped")

    async def _main(self) -> None:
        await self._start_caches()
        if not self._leader_election:
            await self._run_controllers()
            return
        self.elector = LeaderElector(
            self.client,
            namespace=self._lease_namespace,
            name=self._lease_name,
            identity=self.identity,
            instance=self.instance,
            lease_duration=self._lease_timings[0],
            renew_deadline=self._lease_timings[1],
            retry_period=self._lease_timings[2],
        )
        await self.elector.run(self._run_controllers)
        raise LeadershipLost(f"lost the lease {self._lease_namespace}/{self._lease_name}")

    async def _start_caches(self) -> None:
        for cache in self._caches.values():
            cache.served = await kubeapi.is_served(self.client, cache.kind)
            cache.checked = time.monotonic()
            if not cache.served:
                if cache.required:
                    raise KindNotServedError(
                        f"{cache.kind.api_version} {cache.kind.kind} is not served by the API "
                        "server; install its CustomResourceDefinition first"
                    )
                log.warning(
                    "API not served, not watching it",
                    extra={"kind": cache.kind.kind, "apiVersion": cache.kind.api_version},
                )
                continue
            self._start_informers(cache)
        await asyncio.gather(*(i.has_synced.wait() for i in self._informers))
        self._synced.set()
        log.info("caches synced", extra={"informers": len(self._informers)})

    def _start_informers(self, cache: _Cache) -> list[Informer]:
        scopes: list[str | None] = [None]
        if cache.kind.namespaced and self.namespaces:
            scopes = list(self.namespaces)
        started: list[Informer] = []
        for namespace in scopes:
            informer = Informer(
                self.client,
                cache.kind,
                namespace=namespace,
                label_selector=cache.selector,
                store=cache.store,
                transform=cache_transform(cache.fields),
            )
            for handler in cache.handlers:
                informer.add_handler(handler)
            started.append(informer)
            self._informers.append(informer)
            self._informer_tasks.append(asyncio.create_task(informer.run()))
        return started

    async def rediscover(self, kind: type[lkr.Resource], min_interval: float) -> bool:
        """Whether `kind` is served, asking the API server again if it was not at the last
        check (at most every `min_interval` seconds): a CRD installed after the start is then
        watched from now on, its cache synced before this returns True. No restart needed."""
        cache = self._cache(kind)
        if cache.served:
            return True
        async with cache.lock:
            if cache.served or time.monotonic() - cache.checked < min_interval:
                return bool(cache.served)
            cache.checked = time.monotonic()
            if not await kubeapi.is_served(self.client, cache.kind):
                return False
            informers = self._start_informers(cache)
            await asyncio.gather(*(i.has_synced.wait() for i in informers))
            cache.served = True
            log.info(
                "API now served, watching it",
                extra={"kind": cache.kind.kind, "apiVersion": cache.kind.api_version},
            )
            return True

    async def _run_controllers(self) -> None:
        async with asyncio.TaskGroup() as group:
            for controller in self._controllers:
                group.create_task(controller.run())
