"""Controllers: a Reconciler fed from a work queue, declared with a controller-runtime-like
builder (`for_` the primary kind, `owns` child kinds)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Self

from lightkube.core import resource as lkr

from . import metrics
from .echoes import Echoes
from .handlers import child_priority, object_keys, owner_keys
from .kubeapi import Key, KindInfo, Obj, key_of
from .store import Change, Store
from .workqueue import Priority, WorkQueue

if TYPE_CHECKING:
    from .manager import Manager

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """What to reconcile: the primary object's key (namespace "" when cluster-scoped)."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class Result:
    """`requeue_after`: reconcile again after that many seconds; `requeue`: again with backoff."""

    requeue_after: float | None = None
    requeue: bool = False


class Reconciler(Protocol):
    """Drives the world towards the primary object's spec; raising means "retry with backoff"."""

    async def reconcile(self, request: Request) -> Result: ...


def settled(obj: Obj) -> bool:
    """Reconciled at its current generation and, if it has a `Ready` condition, Ready (the
    conventions of `status.observedGeneration` and conditions). When a controller starts or
    resyncs, such objects wait behind the others: after a restart the CRs that still need work
    go first, not after thousands of no-op passes."""
    status, meta = obj.get("status") or {}, obj.get("metadata") or {}
    if "observedGeneration" not in status or status["observedGeneration"] != meta.get("generation"):
        return False
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return all(c.get("status") == "True" for c in ready)


class Controller:
    """Runs `max_concurrent_reconciles` workers over a queue of primary keys.

    Handlers enqueue into the queue only while the controller runs (i.e. while leading); each
    run starts with a fresh queue holding every cached primary key, so nothing is missed."""

    def __init__(
        self,
        name: str,
        reconciler: Reconciler,
        primary: Store,
        *,
        max_concurrent_reconciles: int = 1,
        resync_period: float = 10 * 3600.0,
    ) -> None:
        self.name = name
        self.reconciler = reconciler
        self.primary = primary
        self.max_concurrent_reconciles = max_concurrent_reconciles
        self.resync_period = resync_period
        self._queue: WorkQueue[Key] | None = None

    def enqueue(self, key: Key, priority: Priority = Priority.NORMAL) -> None:
        if self._queue is not None:
            self._queue.add(key, priority=priority)

    async def run(self) -> None:
        """Reconcile until cancelled; then stop the workers (in-flight reconciles are cancelled)."""
        queue: WorkQueue[Key] = WorkQueue(self.name)
        self._queue = queue
        self._queue_all(queue)
        tasks = [
            asyncio.create_task(self._worker(queue)) for _ in range(self.max_concurrent_reconciles)
        ]
        tasks.append(asyncio.create_task(self._resync(queue)))
        log.info("controller started", extra={"controller": self.name})
        try:
            await asyncio.gather(*tasks)
        finally:
            self._queue = None
            queue.shutdown()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            log.info("controller stopped", extra={"controller": self.name})

    async def _resync(self, queue: WorkQueue[Key]) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            self._queue_all(queue)

    def _queue_all(self, queue: WorkQueue[Key]) -> None:
        """Every cached primary key; the settled ones behind the rest."""
        for obj in self.primary.list():
            queue.add(key_of(obj), priority=Priority.LOW if settled(obj) else Priority.NORMAL)

    async def _worker(self, queue: WorkQueue[Key]) -> None:
        while (key := await queue.get()) is not None:
            try:
                await self._reconcile(queue, key)
            finally:
                queue.done(key)

    async def _reconcile(self, queue: WorkQueue[Key], key: Key) -> None:
        request = Request(*key)
        started = time.monotonic()
        try:
            result = await self.reconciler.reconcile(request)
        except Exception as err:
            metrics.RECONCILE_ERRORS.labels(self.name).inc()
            outcome = "error"
            log.error(
                "reconcile failed: %s",
                err,
                exc_info=err,
                extra={"controller": self.name, "key": str(request)},
            )
            queue.add_rate_limited(key)
        else:
            # The pass that just ended saw the whole state, so it alone says when the key
            # needs another: an earlier pass's timer (say, a rollout's quiet time, since
            # ended by the Ready write) would only cost a pass that finds nothing to do.
            queue.cancel_delayed(key)
            if result.requeue_after is not None and result.requeue_after > 0:
                outcome = "requeue_after"
                queue.forget(key)
                queue.add_after(key, result.requeue_after)
            elif result.requeue:
                outcome = "requeue"
                queue.add_rate_limited(key)
            else:
                outcome = "success"
                queue.forget(key)
        finally:
            metrics.RECONCILE_TIME.labels(self.name).observe(time.monotonic() - started)
        metrics.RECONCILE_TOTAL.labels(self.name, outcome).inc()


class ControllerBuilder:
    """`ControllerBuilder(mgr).named(n).for_(Kind).owns(Child, ...).complete(reconciler)`."""

    def __init__(self, manager: Manager) -> None:
        self._manager = manager
        self._name: str | None = None
        self._for: type[lkr.Resource] | None = None
        self._for_selector: dict[str, str] | None = None
        self._owns: list[tuple[type[lkr.Resource], tuple[str, ...] | None]] = []
        self._watches: list[
            tuple[
                type[lkr.Resource],
                Callable[[Change], list[Key]],
                tuple[str, ...] | None,
                Priority,
            ]
        ] = []
        self._max_concurrent = 1
        self._resync_period: float | None = None
        self._echoes: Echoes | None = None

    def named(self, name: str) -> Self:
        self._name = name
        return self

    def for_(self, kind: type[lkr.Resource], label_selector: dict[str, str] | None = None) -> Self:
        """The primary kind: its own changes enqueue its key."""
        self._for, self._for_selector = kind, label_selector
        return self

    def owns(self, *kinds: type[lkr.Resource], fields: Iterable[str] | None = None) -> Self:
        """Child kinds, watched with the manager's owned-label selector; changes enqueue the
        controlling owner. A kind whose API is not served is skipped at start with a warning.
        `fields`: the top-level fields the reconciler reads besides metadata (e.g. "status");
        None caches whole objects. Applying needs none (see `runtime.cache`)."""
        kept = None if fields is None else tuple(fields)
        self._owns.extend((kind, kept) for kind in kinds)
        return self

    def watches(
        self,
        kind: type[lkr.Resource],
        map_keys: Callable[[Change], list[Key]],
        fields: Iterable[str] | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> Self:
        """Another kind, watched with the manager's owned-label selector, whose changes enqueue
        the primary keys `map_keys` returns (e.g. Pods, owned by ReplicaSets, by a label), with
        `priority`. `fields` as for `owns`."""
        kept = None if fields is None else tuple(fields)
        self._watches.append((kind, map_keys, kept, priority))
        return self

    def without_echoes(self, echoes: Echoes) -> Self:
        """Changes of the primary or owned objects that only echo what the reconciler saw
        (recorded in `echoes`, see `runtime.echoes`) enqueue nothing."""
        self._echoes = echoes
        return self

    def with_options(
        self, *, max_concurrent_reconciles: int | None = None, resync_period: float | None = None
    ) -> Self:
        if max_concurrent_reconciles is not None:
            if max_concurrent_reconciles < 1:
                raise ValueError("max_concurrent_reconciles must be >= 1")
            self._max_concurrent = max_concurrent_reconciles
        self._resync_period = resync_period
        return self

    def complete(self, reconciler: Reconciler) -> Controller:
        if self._for is None:
            raise ValueError("for_() is required")
        primary = KindInfo.of(self._for)
        name = self._name or primary.kind.lower()
        mgr = self._manager
        store = mgr.watch(self._for, label_selector=self._for_selector, required=True)
        controller = Controller(
            name,
            reconciler,
            store,
            max_concurrent_reconciles=self._max_concurrent,
            resync_period=self._resync_period or mgr.resync_period,
        )

        echoes = self._echoes

        def on_primary(change: Change) -> None:
            if echoes is not None and echoes.is_echo(change):
                return
            for key in object_keys(change):
                controller.enqueue(key)

        def on_child(change: Change) -> None:
            if echoes is not None and echoes.is_echo(change):
                return
            priority = child_priority(change)
            for key in owner_keys(change, primary.group, primary.kind, primary.namespaced):
                controller.enqueue(key, priority)

        mgr.add_handler(self._for, on_primary)
        for child, fields in self._owns:
            mgr.watch(child, label_selector=mgr.owned_label_selector, fields=fields)
            mgr.add_handler(child, on_child)
        for kind, map_keys, kept, priority in self._watches:

            def on_watched(
                change: Change,
                map_keys: Callable[[Change], list[Key]] = map_keys,
                priority: Priority = priority,
            ) -> None:
                for key in map_keys(change):
                    controller.enqueue(key, priority)

            mgr.watch(kind, label_selector=mgr.owned_label_selector, fields=kept)
            mgr.add_handler(kind, on_watched)
        mgr.add_controller(controller)
        return controller
