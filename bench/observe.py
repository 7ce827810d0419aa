"""Watch TrackingServers and their children from outside the operator and timestamp what is seen.

The benchmark's own informers (the runtime's, run with the admin client) record when each CR
first appeared, when it became Ready for its current generation, when each child appeared and
when each Deployment carried a new image and finished rolling out. Scenario times come from
these timestamps, not from polling, so a slow check does not inflate them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self

from lightkube import AsyncClient

from experiment_operator.api.trackingserver import GROUP, KIND, PLURAL, VERSION
from experiment_operator.runtime.informer import Informer
from experiment_operator.runtime.kubeapi import Key, KindInfo, Obj, key_of
from experiment_operator.runtime.store import Change, controller_owner
from experiment_operator.trackingserver.labels import MANAGED_BY_SELECTOR

TRACKINGSERVER = KindInfo(GROUP, VERSION, KIND, PLURAL, namespaced=True)
DEPLOYMENT = KindInfo("apps", "v1", "Deployment", "deployments", namespaced=True)
CHILD_KINDS = (
    DEPLOYMENT,
    KindInfo("", "v1", "Service", "services", namespaced=True),
    KindInfo("", "v1", "Secret", "secrets", namespaced=True),
    KindInfo("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", namespaced=True),
    KindInfo("networking.k8s.io", "v1", "Ingress", "ingresses", namespaced=True),
    KindInfo("traefik.io", "v1alpha1", "IngressRoute", "ingressroutes", namespaced=True),
    KindInfo("traefik.io", "v1alpha1", "Middleware", "middlewares", namespaced=True),
)
"""Every kind the operator may create, watched with its managed-by label like the operator."""
LEGACY_TRAEFIK_KINDS = (
    KindInfo("traefik.containo.us", "v1alpha1", "IngressRoute", "ingressroutes", namespaced=True),
    KindInfo("traefik.containo.us", "v1alpha1", "Middleware", "middlewares", namespaced=True),
)
"""The original controller's routing kinds."""


def _slim(obj: Obj, previous: Obj | None = None, /) -> Obj:
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


def is_ready(cr: Obj) -> bool:
    """Ready=True, computed for the CR's current generation."""
    generation = cr["metadata"].get("generation")
    status = cr.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            observed = condition.get("observedGeneration", status.get("observedGeneration"))
            return bool(condition.get("status") == "True" and observed in (None, generation))
    return False


def deployment_image(deployment: Obj) -> str | None:
    containers = deployment["spec"]["template"]["spec"].get("containers") or []
    return str(containers[0].get("image")) if containers else None


def rolled_out(deployment: Obj) -> bool:
    """The Deployment controller saw the current spec and every replica is updated and available."""
    spec, status = deployment["spec"], deployment.get("status") or {}
    replicas = spec.get("replicas", 1)
    return bool(
        status.get("observedGeneration") == deployment["metadata"].get("generation")
        and status.get("updatedReplicas", 0) == replicas
        and status.get("availableReplicas", 0) == replicas
        and status.get("replicas", 0) == replicas
    )


class Observer:
    """Timestamps (monotonic seconds) of what the benchmark sees happen to CRs and children."""

    def __init__(self, client: AsyncClient, *, labelled: bool = True) -> None:
        """`labelled`: children carry our managed-by label (the original controller's do
        not: they are then watched unselected, on a control plane of the benchmark's own)."""
        selector = MANAGED_BY_SELECTOR if labelled else None
        kinds = CHILD_KINDS if labelled else (*CHILD_KINDS, *LEGACY_TRAEFIK_KINDS)
        self.crs = Informer(client, TRACKINGSERVER, transform=_slim)
        self.children = [
            Informer(client, kind, label_selector=selector, transform=_slim) for kind in kinds
        ]
        self.cr_seen: dict[Key, float] = {}
        self.ready_at: dict[Key, float] = {}
        self.child_seen: dict[Key, dict[tuple[str, str], float]] = {}
        self.image_at: dict[Key, tuple[str | None, float]] = {}
        self.rolled_out_at: dict[Key, float] = {}
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.crs.add_handler(self._on_cr)
        for informer in self.children:
            informer.add_handler(self._on_child)

    async def __aenter__(self) -> Self:
        for informer in (self.crs, *self.children):
            self._tasks.append(asyncio.create_task(informer.run()))
        await asyncio.gather(*(i.has_synced.wait() for i in (self.crs, *self.children)))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_cr(self, change: Change) -> None:
        key, now = key_of(change.obj), time.monotonic()
        if change.type == "DELETED":
            self.cr_seen.pop(key, None)
            self.ready_at.pop(key, None)
        else:
            self.cr_seen.setdefault(key, now)
            if is_ready(change.obj):
                self.ready_at.setdefault(key, now)
            else:
                self.ready_at.pop(key, None)
        self._changed.set()

    def _on_child(self, change: Change) -> None:
        owner = controller_owner(change.obj)
        if owner is None or owner.get("kind") != KIND or change.type == "DELETED":
            return
        now, obj = time.monotonic(), change.obj
        key = (obj["metadata"].get("namespace", ""), str(owner["name"]))
        self.child_seen.setdefault(key, {}).setdefault((obj["kind"], obj["metadata"]["name"]), now)
        if obj["kind"] == DEPLOYMENT.kind:
            image = deployment_image(obj)
            if self.image_at.get(key, (None, 0.0))[0] != image:
                self.image_at[key] = (image, now)
            if rolled_out(obj):
                self.rolled_out_at.setdefault(key, now)
            else:
                self.rolled_out_at.pop(key, None)
        self._changed.set()

    # --- questions the scenarios ask ---

    def children_of(self, key: Key) -> dict[tuple[str, str], float]:
        return self.child_seen.get(key, {})

    def cr(self, key: Key) -> dict[str, Any] | None:
        return self.crs.store.get(*key)

    def all_ready(self, keys: Iterable[Key]) -> bool:
        return all(key in self.ready_at for key in keys)

    def all_children(self, keys: Iterable[Key], per_cr: int) -> bool:
        return all(len(self.children_of(key)) >= per_cr for key in keys)

    def all_rolled_out(self, keys: Iterable[Key], image: str) -> bool:
        return all(
            self.image_at.get(key, (None, 0.0))[0] == image and key in self.rolled_out_at
            for key in keys
        )

    async def wait_until(self, check: Callable[[], bool], *, within: float, what: str) -> None:
        """Re-check after changes (at most every 0.1 s) until `check()` holds."""
        deadline = time.monotonic() + within
        while not check():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{what}: not reached in {within:.0f}s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 5.0))
            await asyncio.sleep(0.1)
