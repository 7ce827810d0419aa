"""List-then-watch informer feeding a Store, like client-go's reflector + shared informer.

It gets the current state, watches from its resourceVersion with bookmarks, resumes from the
last seen resourceVersion after connection errors (capped exponential backoff) and, when the
server answers 410 Gone, gets the state again and delivers the differences against the store
as ordinary changes — so deletions that happened while no watch was open are not lost.

The state comes in the watch itself where the server can (a "watch list"; the API server's
WatchList feature is on by default from Kubernetes 1.34): one request streams every object,
then the changes; no pages. A restarted operator under load took 3.2 s to sync its 13 caches
by paged lists (bench/RESULTS.md, round 7). Servers without the feature answer 422: then it
lists.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from typing import Protocol

from lightkube import AsyncClient
from lightkube.core import resource as lkr
from lightkube.core.exceptions import ApiError

from . import kubeapi
from .kubeapi import KindInfo, Obj, key_of
from .store import Change, Store, diff_relist

log = logging.getLogger(__name__)

Handler = Callable[[Change], None]


class Transform(Protocol):
    """Makes the cached form of a decoded object, given the cached form of the version before
    it (None for a new object)."""

    def __call__(self, obj: Obj, previous: Obj | None = None, /) -> Obj: ...


LIST_PAGE_SIZE = 100
"""Objects per list page. Each page is decoded whole before the transform slims its items, so
big pages raise the memory high-water mark of a (re)list; with 1000 TrackingServers a fresh
operator settled at 117 MiB with pages of 500 and at 102 MiB with pages of 100."""


class _Gone(Exception):
    """The resourceVersion we watch from is no longer available: relist."""


class Informer:
    """Keeps `store` in sync with one kind in one namespace (or all) and notifies handlers."""

    def __init__(
        self,
        client: AsyncClient,
        kind: type[lkr.Resource] | KindInfo,
        *,
        namespace: str | None = None,
        label_selector: Mapping[str, str] | str | None = None,
        store: Store | None = None,
        transform: Transform | None = None,
        initial_backoff: float = 0.2,
        max_backoff: float = 30.0,
        watch_list: bool = True,
    ) -> None:
        self.client = client
        self.kind = KindInfo.of(kind)
        self.namespace = namespace if self.kind.namespaced else None
        self.label_selector = kubeapi.format_selector(label_selector)
        self.store = store if store is not None else Store()
        self.has_synced = asyncio.Event()
        self.relists = 0
        self._transform = transform
        self._handlers: list[Handler] = []
        self._rv: str | None = None
        self._watch_list = watch_list
        self._initial: list[Obj] | None = None
        """The state received so far in a watch list, until its end bookmark."""
        self._progressed = False
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff

    def __repr__(self) -> str:
        scope = self.namespace or "*"
        return f"Informer({self.kind.kind}.{self.kind.group or 'core'} in {scope})"

    @property
    def watch_list(self) -> bool:
        """Whether the state comes in the watch (false once the server refused to stream it)."""
        return self._watch_list

    def add_handler(self, handler: Handler) -> None:
        """Call `handler` for every change (also for the initial list)."""
        self._handlers.append(handler)

    async def run(self) -> None:
        """Run until cancelled; calling it again later resumes from the last resourceVersion.

        Never gives up: any failure is logged and retried with backoff, which resets whenever a
        list or a watch event got through."""
        backoff = self._initial_backoff
        while True:
            error: Exception | None = None
            try:
                if self._rv is None and not self._watch_list:
                    await self._relist()
                await self._watch()
            except _Gone:
                log.info("%r: resourceVersion %s expired, relisting", self, self._rv)
                self._rv = None
                continue
            except ApiError as err:
                if err.status.code == 410:
                    log.info("%r: resourceVersion %s expired, relisting", self, self._rv)
                    self._rv = None
                    continue
                if err.status.code == 422 and self._rv is None and self._watch_list:
                    log.info("%r: the server does not stream lists (WatchList); listing", self)
                    self._watch_list = False
                    continue
                error = err
            except Exception as err:  # transport errors, bad JSON, anything: keep the cache alive
                error = err
            if self._progressed:
                backoff, self._progressed = self._initial_backoff, False
                if error is None:
                    continue  # the server ended a healthy watch: resume at once
            if error is not None:
                log.warning("%r: %s; retrying in %.1fs", self, _describe(error), backoff)
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self._max_backoff)

    async def _relist(self) -> None:
        listed, rv = await kubeapi.list_all(
            self.client,
            self.kind,
            self.namespace,
            self.label_selector,
            page_size=LIST_PAGE_SIZE,
            transform=self._prepare,
        )
        self._replace(listed, rv)

    def _replace(self, listed: list[Obj], rv: str) -> None:
        """Make the store hold exactly `listed` (the state at `rv`), delivering the changes."""
        for change in diff_relist(self.store.snapshot(self.namespace), listed):
            self._deliver(change)
        self._rv = rv
        self._progressed = True
        self.relists += 1
        self.has_synced.set()

    async def _watch(self) -> None:
        """Follow one watch request until the server ends it (after timeoutSeconds); without a
        resourceVersion to resume from, it is a watch list that starts with the state."""
        timeout = random.randint(300, 600)
        self._initial = [] if self._rv is None else None
        async for event in kubeapi.watch(
            self.client, self.kind, self.namespace, self.label_selector, self._rv, timeout
        ):
            self._handle_event(event)
            self._progressed = True

    def _handle_event(self, event: Obj) -> None:
        type_, obj = event.get("type"), event.get("object") or {}
        if type_ == "ERROR":
            if obj.get("code") == 410:
                raise _Gone
            raise ValueError(f"watch error {obj.get('code')}: {obj.get('message')}")
        meta = obj.get("metadata", {})
        rv = meta.get("resourceVersion")
        if type_ == "BOOKMARK":
            if self._initial is None:
                self._rv = rv or self._rv
            elif (meta.get("annotations") or {}).get(kubeapi.INITIAL_EVENTS_END) == "true":
                listed, self._initial = self._initial, None
                self._replace(listed, rv)
            return
        obj = self._prepare(obj)
        if self._initial is not None:  # part of the state (ADDED): resuming needs the end's rv
            self._initial.append(obj)
            return
        old = self.store.get(*key_of(obj))
        if type_ == "DELETED":
            self._deliver(Change("DELETED", obj))
        elif type_ in ("ADDED", "MODIFIED"):
            self._deliver(Change("ADDED", obj) if old is None else Change("MODIFIED", obj, old))
        self._rv = rv or self._rv

    def _prepare(self, obj: Obj) -> Obj:
        obj.setdefault("apiVersion", self.kind.api_version)
        obj.setdefault("kind", self.kind.kind)
        if self._transform is None:
            return obj
        return self._transform(obj, self.store.get(*key_of(obj)))

    def _deliver(self, change: Change) -> None:
        self.store.apply(change)
        for handler in self._handlers:
            try:
                handler(change)
            except Exception:
                log.exception("%r: event handler failed for %s", self, key_of(change.obj))


def _describe(err: Exception) -> str:
    if isinstance(err, ApiError):
        return f"API error {err.status.code}: {err.status.message}"
    return f"{type(err).__name__}: {err}"
