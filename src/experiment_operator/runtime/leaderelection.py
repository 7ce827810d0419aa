"""Leader election on a coordination.k8s.io/v1 Lease, following client-go's leaderelection.

Only the leader runs `lead()`. Expiry of someone else's lease is judged by our own monotonic
clock since we last saw the lease record change, never by comparing timestamps written by other
hosts (clock skew). A leader that cannot renew within `renew_deadline` cancels `lead()` before
the lease can expire for anyone else; on graceful shutdown the Lease is released so a successor
takes over at once.

Unlike client-go, the holder is a process, not just an identity: every elector writes its own
random incarnation next to `holderIdentity` (annotation `HOLDER_ANNOTATION`), so two live
processes that share an identity (a stable Pod name) are never both leader. A process whose
identity *and* instance (the Pod's UID) match the holder's is a restarted container of the same
Pod: the kubelet never runs two instances of a container at once, so the previous holder is dead
and the Lease is taken back at once instead of after it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import lightkube
from lightkube import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from .metrics import LEADER_STATUS

log = logging.getLogger(__name__)

HOLDER_ANNOTATION = "leaderelection.experiment.aiscope/holder"
"""`<instance>/<incarnation>` of the process holding the Lease (instance may be empty)."""


def _micro_now() -> datetime:
    """Now, for a MicroTime field.

    The API server parses MicroTime with a fixed six-digit fraction, and msgspec drops a zero
    fraction entirely, so a timestamp that falls on a whole second is nudged by 1 us.
    """
    now = datetime.now(UTC)
    return now if now.microsecond else now.replace(microsecond=1)


def _record(lease: Lease) -> dict[str, Any]:
    record = lease.spec.to_dict() if lease.spec else {}
    record["holder"] = _annotation(lease)
    return record


def _annotation(lease: Lease | None) -> str:
    annotations = lease.metadata.annotations if lease and lease.metadata else None
    return str((annotations or {}).get(HOLDER_ANNOTATION, ""))


def _holder_identity(lease: Lease | None) -> str:
    return str((lease.spec.holderIdentity if lease and lease.spec else None) or "")


class LeaderElector:
    """Campaigns for one Lease and runs `lead()` while holding it."""

    def __init__(
        self,
        client: lightkube.AsyncClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        instance: str = "",
        lease_duration: float = 15,
        renew_deadline: float = 10,
        retry_period: float = 2,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")
        if not identity:
            raise ValueError("identity must not be empty")
        if "/" in instance:
            raise ValueError("instance must not contain '/'")
        self._client = client
        self._namespace = namespace
        self._name = name
        self._identity = identity
        self._instance = instance
        self._incarnation = uuid.uuid4().hex
        self._lease_duration = lease_duration
        self._renew_deadline = renew_deadline
        self._retry_period = retry_period
        self._lease: Lease | None = None  # last lease we read or wrote
        self._observed_at = 0.0  # monotonic time the lease record last changed, to our eyes
        self._renewed_at = 0.0  # monotonic time our last successful write was sent
        self._leading = False

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def holder(self) -> str:
        """What this process writes into `HOLDER_ANNOTATION`: `<instance>/<incarnation>`."""
        return f"{self._instance}/{self._incarnation}"

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Acquire the Lease, run `lead()` while renewing it, and return when leadership ends.

        Returns after `lead()` was cancelled because renewal failed (the caller should exit) or
        after `lead()` finished on its own (re-raising its exception, Lease released). Cancelling
        `run()` cancels `lead()`, waits for it, then releases the Lease.
        """
        await self._acquire()
        task = asyncio.ensure_future(lead())
        self._set_leading(True)
        lost = False
        try:
            lost = await self._renew_while(task)
        finally:
            self._set_leading(False)
            if not task.done():
                task.cancel()
            await asyncio.wait([task])
            if not lost:
                await self._release()
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc

    def _set_leading(self, leading: bool) -> None:
        self._leading = leading
        LEADER_STATUS.labels(name=self._name).set(1 if leading else 0)

    async def _acquire(self) -> None:
        log.info("waiting for leadership", extra=self._log_fields())
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            # Bounded by the renew deadline, not the retry period: an API server slower than
            # the retry period must not keep a standby from ever seeing the Lease. A slow
            # acquisition is safe: the deadline counts from when the write was sent.
            if await self._attempt(self._renew_deadline):
                log.info("acquired lease", extra=self._log_fields())
                return
            await asyncio.sleep(max(0.0, started + self._retry_period - loop.time()))

    async def _renew_while(self, task: asyncio.Future[None]) -> bool:
        """Renew every retry period until `task` ends (False) or leadership is lost (True)."""
        loop = asyncio.get_running_loop()
        while True:
            done, _ = await asyncio.wait([task], timeout=self._retry_period)
            if done:
                return False
            while True:
                remaining = self._renewed_at + self._renew_deadline - loop.time()
                if remaining <= 0:
                    log.error("failed to renew lease in time; stopping", extra=self._log_fields())
                    return True
                started = loop.time()
                if await self._attempt(remaining):
                    break
                if self._held_by_other():
                    log.error("lease taken by another holder; stopping", extra=self._log_fields())
                    return True
                deadline = self._renewed_at + self._renew_deadline
                pause = min(started + self._retry_period, deadline) - loop.time()
                done, _ = await asyncio.wait([task], timeout=max(0.0, pause))
                if done:
                    return False

    async def _attempt(self, budget: float) -> bool:
        """Try to acquire or renew within `budget` seconds; any failure just means 'not now'."""
        try:
            async with asyncio.timeout(budget):
                return await self._try_acquire_or_renew()
        except Exception as exc:  # ApiError, timeouts, transport errors: all retried
            log.warning("lease request failed", extra={**self._log_fields(), "error": _why(exc)})
        return False

    async def _try_acquire_or_renew(self) -> bool:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        if self._leading and self._lease is not None:
            # Fast path like client-go: update the lease we last wrote, no GET first.
            try:
                await self._write(self._lease, self._renewed_spec(self._lease), sent)
                return True
            except ApiError as exc:
                if exc.status.code != 409:
                    raise
        try:
            current = await self._client.get(Lease, self._name, namespace=self._namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            return await self._create(sent)
        self._observe(current)
        if self._held_by_other() and not self._observed_expired() and not self._reclaimable():
            return False
        if self._reclaimable():
            log.info(
                "taking back the lease of an earlier process of this instance",
                extra={**self._log_fields(), "previous": _annotation(current)},
            )
        await self._write(current, self._renewed_spec(current), loop.time())
        return True

    async def _create(self, sent: float) -> bool:
        now = _micro_now()
        lease = Lease(
            metadata=ObjectMeta(
                name=self._name,
                namespace=self._namespace,
                annotations={HOLDER_ANNOTATION: self.holder},
            ),
            spec=LeaseSpec(
                holderIdentity=self._identity,
                leaseDurationSeconds=math.ceil(self._lease_duration),
                acquireTime=now,
                renewTime=now,
                leaseTransitions=0,
            ),
        )
        try:
            created = await self._client.create(lease)
        except ApiError as exc:
            if exc.status.code == 409:
                return False  # someone else created it first
            raise
        self._renewed_at = sent
        self._observe(created)
        return True

    def _renewed_spec(self, lease: Lease) -> LeaseSpec:
        old = lease.spec or LeaseSpec()
        now = _micro_now()
        ours = self._is_ours(lease)
        return LeaseSpec(
            holderIdentity=self._identity,
            leaseDurationSeconds=math.ceil(self._lease_duration),
            acquireTime=old.acquireTime if ours and old.acquireTime else now,
            renewTime=now,
            leaseTransitions=(old.leaseTransitions or 0) + (0 if ours else 1),
        )

    async def _write(self, lease: Lease, spec: LeaseSpec, sent: float) -> None:
        """Replace the lease with optimistic concurrency (its resourceVersion): 409 if it moved."""
        updated = await self._client.replace(Lease(metadata=self._metadata(lease), spec=spec))
        self._renewed_at = sent
        self._observe(updated)

    def _metadata(self, lease: Lease, holder: str | None = None) -> ObjectMeta:
        """The lease's metadata (with its resourceVersion) naming `holder` (default: us)."""
        meta = copy.copy(lease.metadata) if lease.metadata else ObjectMeta()
        annotations = dict(meta.annotations or {})
        annotations.pop(HOLDER_ANNOTATION, None)
        if holder is None:
            holder = self.holder
        if holder:
            annotations[HOLDER_ANNOTATION] = holder
        meta.annotations = annotations or None
        return meta

    def _observe(self, lease: Lease) -> None:
        previous, self._lease = self._lease, lease
        if previous is None or _record(lease) != _record(previous):
            self._observed_at = asyncio.get_running_loop().time()
            leader, holder = _holder_identity(lease), _annotation(lease)
            before = (_holder_identity(previous), _annotation(previous)) if previous else None
            if leader and (leader, holder) != before:
                log.info(
                    "observed leader",
                    extra={**self._log_fields(), "leader": leader, "leaderHolder": holder},
                )

    def _is_ours(self, lease: Lease | None) -> bool:
        """Whether this very process holds `lease` (identity and incarnation)."""
        return _holder_identity(lease) == self._identity and _annotation(lease) == self.holder

    def _held_by_other(self) -> bool:
        """Held by anyone but this process, including an earlier process of our identity."""
        return bool(_holder_identity(self._lease)) and not self._is_ours(self._lease)

    def _reclaimable(self) -> bool:
        """Held by an earlier process of this identity and instance (a restarted container),
        while we campaign: it is dead, so its lease need not expire first. A leader never
        reclaims: a later process of our instance has taken over, and we step down."""
        if self._leading or not self._instance or not self._held_by_other():
            return False
        instance, _, _ = _annotation(self._lease).rpartition("/")
        return _holder_identity(self._lease) == self._identity and instance == self._instance

    def _observed_expired(self) -> bool:
        spec = self._lease.spec if self._lease else None
        duration = spec.leaseDurationSeconds if spec and spec.leaseDurationSeconds else 0
        return asyncio.get_running_loop().time() > self._observed_at + duration

    async def _release(self) -> None:
        """Hand the lease back (like client-go ReleaseOnCancel) so a successor need not wait."""
        lease = self._lease
        if lease is None or self._held_by_other():
            return
        now = _micro_now()
        spec = LeaseSpec(
            holderIdentity=None,
            leaseDurationSeconds=1,
            acquireTime=now,
            renewTime=now,
            leaseTransitions=lease.spec.leaseTransitions if lease.spec else 0,
        )
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._renew_deadline):
                await self._client.replace(Lease(metadata=self._metadata(lease, ""), spec=spec))
                log.info("released lease", extra=self._log_fields())
                return
        log.warning("could not release lease; successor waits for expiry", extra=self._log_fields())

    def _log_fields(self) -> dict[str, str]:
        return {
            "lease": f"{self._namespace}/{self._name}",
            "identity": self._identity,
            "holder": self.holder,
        }


def _why(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.status.code} {exc.status.reason}"
    return type(exc).__name__
