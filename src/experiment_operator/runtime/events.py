"""Kubernetes Events on the objects we reconcile, aggregated like client-go's EventCorrelator.

Events are core/v1 so `kubectl describe` shows them. `post` records one in the background, as
client-go's recorder does: an Event reports the work, it is not part of it, and a reconcile
that waited for one would hold its worker for another round trip. Identical events (same
object, type, reason and message) patch one Event's count and lastTimestamp instead of creating
a new object per occurrence. Event messages are readable by anyone who may list Events in the
namespace: they must never carry secret values; pass untrusted text (API error messages
quoting objects) through `redact` first.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import lightkube
from lightkube import ApiError
from lightkube.models.core_v1 import ObjectReference
from lightkube.resources.core_v1 import Event

from . import kubeapi

log = logging.getLogger(__name__)

EVENTS = kubeapi.KindInfo.of(Event)

NORMAL = "Normal"
WARNING = "Warning"
REDACTED = "[REDACTED]"
MAX_MESSAGE_LENGTH = 1024  # the events.k8s.io/v1 limit; long messages only bloat etcd


def redact(message: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret (and of its base64 form) with `[REDACTED]`.

    Use on any text that may quote an object holding credentials, e.g. an API error message,
    before it goes into an Event, a log line or status.
    """
    needles: set[str] = set()
    for secret in secrets:
        if secret:
            needles.add(secret)
            needles.add(base64.b64encode(secret.encode()).decode())
    for needle in sorted(needles, key=len, reverse=True):
        message = message.replace(needle, REDACTED)
    return message


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def object_reference(obj: Any) -> ObjectReference:
    """The involvedObject for a lightkube object or a dict with apiVersion/kind/metadata."""
    meta = _field(obj, "metadata")
    return ObjectReference(
        apiVersion=_field(obj, "apiVersion"),
        kind=_field(obj, "kind"),
        name=_field(meta, "name"),
        namespace=_field(meta, "namespace"),
        uid=_field(meta, "uid"),
        resourceVersion=_field(meta, "resourceVersion"),
    )


@dataclass(frozen=True)
class EventKey:
    """What makes two events 'the same' for aggregation."""

    component: str
    kind: str
    namespace: str
    name: str
    uid: str
    type: str
    reason: str
    message: str

    @classmethod
    def of(
        cls, component: str, ref: ObjectReference, type_: str, reason: str, message: str
    ) -> EventKey:
        return cls(
            component=component,
            kind=ref.kind or "",
            namespace=ref.namespace or "",
            name=ref.name or "",
            uid=ref.uid or "",
            type=type_,
            reason=reason,
            message=message,
        )


@dataclass
class EventSeries:
    """Bookkeeping for one aggregated Event: its object name once created, count, timestamps."""

    count: int
    first: datetime
    last: datetime
    name: str | None = None


class EventCache:
    """Bounded LRU of recent events; pure, so the aggregation rules are unit-testable."""

    def __init__(self, max_size: int = 4096) -> None:
        self._max_size = max_size
        self._entries: OrderedDict[EventKey, EventSeries] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def observe(self, key: EventKey, now: datetime) -> EventSeries:
        """Count one more occurrence of `key`; returns its series (new when unseen or evicted)."""
        series = self._entries.get(key)
        if series is None:
            series = EventSeries(count=1, first=now, last=now)
            self._entries[key] = series
            while len(self._entries) > self._max_size:
                self._entries.popitem(last=False)
        else:
            series.count += 1
            series.last = now
            self._entries.move_to_end(key)
        return series

    def forget(self, key: EventKey) -> None:
        self._entries.pop(key, None)


def _check_type(type_: str) -> None:
    if type_ not in (NORMAL, WARNING):
        raise ValueError(f"event type must be {NORMAL} or {WARNING}, not {type_!r}")


def _now() -> datetime:
    # core/v1 Event timestamps are meta/v1 Time: whole seconds.
    return datetime.now(UTC).replace(microsecond=0)


def _event_name(object_name: str) -> str:
    # client-go's "<name>.<unix nanos in hex>", kept within the 253-character name limit.
    suffix = f".{time.time_ns():x}"
    return object_name[: 253 - len(suffix)] + suffix


class EventRecorder:
    """Writes Events as one component (e.g. `trackingserver-controller`); API errors are logged.
    At most `max_pending` background writes at once (client-go's queue holds 1000); beyond
    that an Event is dropped and logged."""

    def __init__(
        self,
        client: lightkube.AsyncClient,
        component: str,
        cache_size: int = 4096,
        max_pending: int = 1000,
    ) -> None:
        self._client = client
        self._component = component
        self._instance = socket.gethostname()
        self._cache = EventCache(cache_size)
        self._locks: weakref.WeakValueDictionary[EventKey, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._max_pending = max_pending
        self._pending: set[asyncio.Task[None]] = set()

    def post(self, obj: Any, type_: str, reason: str, message: str) -> None:
        """Record an Event on `obj` in the background (see `event`); returns at once."""
        _check_type(type_)
        ref = object_reference(obj)  # now: the caller's object may be replaced meanwhile
        if len(self._pending) >= self._max_pending:
            log.warning(
                "event dropped: too many writes pending",
                extra={"key": f"{ref.namespace}/{ref.name}", "reason": reason},
            )
            return
        task = asyncio.create_task(self._record(ref, type_, reason, message))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def shutdown(self, grace: float) -> None:
        """Give the background writes up to `grace` seconds, then cancel the rest."""
        if not self._pending:
            return
        pending = set(self._pending)
        late = (await asyncio.wait(pending, timeout=grace))[1] if grace > 0 else pending
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def event(self, obj: Any, type_: str, reason: str, message: str) -> None:
        """Record an Event on `obj` and wait for the write; repeats of the same one increase
        its count.

        `message` must not contain secret values (see `redact`).
        """
        _check_type(type_)
        await self._record(object_reference(obj), type_, reason, message)

    async def _record(self, ref: ObjectReference, type_: str, reason: str, message: str) -> None:
        message = message[:MAX_MESSAGE_LENGTH]
        key = EventKey.of(self._component, ref, type_, reason, message)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            series = self._cache.observe(key, _now())
            log.debug(
                "event",
                extra={"key": f"{key.namespace}/{key.name}", "type": type_, "reason": reason},
            )
            try:
                await self._write(ref, key, series)
            except Exception as exc:
                if series.name is None:
                    self._cache.forget(key)  # nothing was created; start afresh next time
                status = exc.status.code if isinstance(exc, ApiError) else type(exc).__name__
                log.warning(
                    "could not record event",
                    extra={"key": f"{key.namespace}/{key.name}", "reason": reason, "error": status},
                )

    async def _write(self, ref: ObjectReference, key: EventKey, series: EventSeries) -> None:
        namespace = key.namespace or "default"  # cluster-scoped objects: client-go's choice
        if series.name is not None:
            patch = {"count": series.count, "lastTimestamp": series.last.isoformat()}
            try:
                await kubeapi.request(
                    self._client,
                    "PATCH",
                    EVENTS.path(namespace, series.name),
                    body=patch,
                    content_type=kubeapi.MERGE_PATCH_CONTENT_TYPE,
                )
                return
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
                # The Event expired (kube-apiserver --event-ttl) or was deleted: create it again.
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": _event_name(key.name), "namespace": namespace},
            "involvedObject": ref.to_dict(),
            "type": key.type,
            "reason": key.reason,
            "message": key.message,
            "count": series.count,
            "firstTimestamp": series.first.isoformat(),
            "lastTimestamp": series.last.isoformat(),
            "source": {"component": self._component, "host": self._instance},
            "reportingComponent": self._component,
            "reportingInstance": self._instance,
        }
        created = await kubeapi.request(self._client, "POST", EVENTS.path(namespace), body=event)
        series.name = created.get("metadata", {}).get("name")
