"""The TrackingServer reconciler: one level-triggered pass from the spec to the cluster.

Reads the TrackingServer and its children from the manager's caches (a child it wrote, from the
write's response until the cache has it), applies every desired child (server-side apply;
nothing is sent when a child already matches), deletes owned leftovers,
and writes status and Events only when something changed. An unchanged world costs no write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from lightkube.core import resource as lkr
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import PersistentVolumeClaim, Pod, Secret
from pydantic import ValidationError

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.apply import (
    NotOwnedError,
    WrittenStatus,
    apply_owned,
    delete_if_owned,
    is_controlled_by,
    update_status,
)
from experiment_operator.runtime.controller import Request, Result
from experiment_operator.runtime.echoes import Echoes, only_status_changed
from experiment_operator.runtime.events import NORMAL, WARNING, EventRecorder, redact
from experiment_operator.runtime.kubeapi import KindInfo, Obj
from experiment_operator.runtime.logging import bind
from experiment_operator.runtime.manager import Manager
from experiment_operator.runtime.store import Store
from experiment_operator.trackingserver import lifecycle, podstatus, status
from experiment_operator.trackingserver.children import (
    ChildOptions,
    ChildRef,
    build_children,
    unwanted_children,
)
from experiment_operator.trackingserver.gatewaystatus import gateway_findings
from experiment_operator.trackingserver.labels import INSTANCE_LABEL
from experiment_operator.trackingserver.mlflow import ServerPlan, server_command
from experiment_operator.trackingserver.passes import Pass, version
from experiment_operator.trackingserver.resources import (
    POSTED_KINDS,
    TrackingServerResource,
    kind_of,
)
from experiment_operator.trackingserver.rollouts import (
    CHANGE_QUIET_SECONDS,
    NEW_QUIET_SECONDS,
    QuietRollouts,
)
from experiment_operator.trackingserver.routingapi import RoutingChooser
from experiment_operator.trackingserver.speccheck import SpecChecks
from experiment_operator.trackingserver.status import ConditionValue, Findings
from experiment_operator.trackingserver.url import InvalidURLError
from experiment_operator.trackingserver.workload import (
    deployment,
    deployment_reads,
    deployment_versions,
)

log = logging.getLogger(__name__)

SYNCED = "Synced"
SYNCED_MESSAGE = "TrackingServer synced successfully"
FAILED_SYNC = "FailedSync"
INVALID_SPEC = "InvalidSpec"

RECHECK_SECONDS = 30.0
"""Objects of the user (a referenced S3 credentials Secret, a TLS Secret made by e.g.
cert-manager, a foreign object in the way) are not in our label-selected caches, so their
appearance or removal fires no event: while such a condition lasts, look again at this
interval. An unserved routing API is rechecked 10x slower."""

PVC = lifecycle.PVC
TS_KIND = KindInfo.of(TrackingServerResource)
ROUTING_KINDS = frozenset({"IngressRoute", "Middleware", "Ingress", "HTTPRoute", "ListenerSet"})


class SyncError(Exception):
    """A reconcile failed; the message is redacted (it reaches logs and Events)."""


def secret_values(ts: TrackingServer) -> list[str]:
    """Every spec value that must never reach a log line, an Event or status."""
    spec = ts.spec
    return [
        spec.aws_access_key.get_secret_value(),
        spec.aws_secret_key.get_secret_value(),
        spec.backend_uri.get_secret_value(),
        spec.key.get_secret_value(),
    ]


class TrackingServerReconciler:
    """Drives one TrackingServer's children towards its spec (see the module docstring)."""

    def __init__(
        self,
        manager: Manager,
        options: ChildOptions,
        recorder: EventRecorder,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        recheck_interval: float = RECHECK_SECONDS,
    ) -> None:
        self.manager = manager
        self.client = manager.client
        self.options = options
        self.recorder = recorder
        self.clock = clock
        self.recheck_interval = recheck_interval
        self.rollouts = QuietRollouts()
        self.written = WrittenStatus()
        self.echoes = Echoes()
        self.routing = RoutingChooser(manager, options, interval=recheck_interval)
        self.checks = SpecChecks(manager, clock=clock, recheck_interval=recheck_interval)

    async def reconcile(self, request: Request) -> Result:
        obj = self.manager.cache(TrackingServerResource).get(request.namespace, request.name)
        if obj is None:
            self.rollouts.forget((request.namespace, request.name))
            self.written.forget(request.namespace, request.name)
            return Result()  # deleted: the garbage collector removes the children
        try:
            ts = TrackingServer.from_api(obj)
        except ValidationError as err:
            # Never quote the input: it may be a credential. Locations and messages only.
            where = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
            )
            self.recorder.post(obj, WARNING, INVALID_SPEC, f"invalid spec: {where}")
            return Result()
        try:
            return await self._reconcile(Pass(obj, ts))
        except Exception as err:
            message = redact(str(err) or type(err).__name__, secret_values(ts))
            self.recorder.post(obj, WARNING, FAILED_SYNC, f"Failed to sync: {message}")
            raise SyncError(message) from None

    # --- the pass ---

    async def _reconcile(self, p: Pass) -> Result:
        if p.ts.metadata.deletion_timestamp:
            await lifecycle.finalize(self.client, TS_KIND, p)
            return Result()
        tls_value, tls_present, keep_tls_secret = await self.checks.tls(p)
        await self.checks.credentials(p)
        self._check_volume_spec(p)
        try:
            plan = self.options.plan(p.ts)
        except InvalidURLError as err:
            # Stored before the CRD's rules: change nothing, say why.
            p.problems.append(ConditionValue("False", status.INVALID_URL, f"spec.url: {err}"))
            p.routing_failed = True
            p.deployment = self._latest(Deployment, p.namespace, p.name)
            return await self._finish(p, tls_value)
        options = await self.routing.options_for(p)
        expected = deployment_versions(p.ts, lambda name: self._latest(Secret, p.namespace, name))
        children = build_children(p.ts, options, tls_secret_present=tls_present, **expected)
        unwanted = unwanted_children(p.name, children)
        if keep_tls_secret:  # an invalid cert/key: neither write it nor delete what exists
            children = [c for c in children if not self._is_tls_secret(c, p)]
        # Every child is applied at once; only the Deployment waits, for what it reads: the
        # Secrets whose resourceVersions its pod template carries, and the claim (a foreign one
        # keeps it at 0 replicas). Nothing waits for the Service, whose ClusterIP allocation
        # takes seconds in a burst.
        reads = [deployment_reads(c, p.ts) for c in children]
        inputs = [c for c, read in zip(children, reads, strict=True) if read]
        if not await self._retain_first(p, inputs):
            return Result(requeue=True)
        built = next(c for c in children if c["kind"] == "Deployment")
        others = [c for c, read in zip(children, reads, strict=True) if not read and c is not built]
        p.deployment, _ = await asyncio.gather(
            self._apply_deployment(p, plan, inputs, built, expected), self._apply_all(p, others)
        )
        tls_value = gateway_findings(self.manager, p, options, children, tls_value, tls_present)
        await self._delete_unwanted(p, unwanted)
        if await lifecycle.update_finalizers(self.client, TS_KIND, p, children):
            p.wrote = True
        if not p.wrote:
            return await self._finish(p, tls_value)
        bind(log, key=f"{p.namespace}/{p.name}").info(
            "children synced", extra={"applied": p.applied}
        )
        self.recorder.post(p.obj, NORMAL, SYNCED, SYNCED_MESSAGE)
        return await self._finish(p, tls_value)

    def _pods(self, p: Pass) -> list[Obj]:
        """The TrackingServer's Pods from the label-selected Pod cache."""
        return self.manager.cache(Pod).with_label(p.namespace, INSTANCE_LABEL, p.name)

    async def _finish(self, p: Pass, tls_value: ConditionValue) -> Result:
        """Write the status (if it changed) and the Warning Events of new problems."""
        now = self.clock()
        pods = self._pods(p)
        workload = podstatus.diagnose(
            p.deployment,
            pods,
            command=server_command(p.ts.spec, self.options.mlflow_image),
            now=now,
            secrets=secret_values(p.ts),
        )
        grace = podstatus.probe_grace_left(pods, now)
        if grace is not None:  # an unready container becomes ProbeFailing without an event
            p.requeue_after.append(grace + 1)
        findings = Findings(
            tls=tls_value,
            volume=p.volume or status.volume_condition(p.ts),
            problems=status.ready_problems(sorted(p.foreign), sorted(p.not_served)) + p.problems,
            deployment=p.deployment,
            routed=not p.routing_failed,
            workload=workload,
        )
        new_status, warnings = status.compute_status(p.ts, findings, now=now)
        rolling = status.ready_condition(p.ts, findings).reason == status.PROGRESSING
        current = p.obj.get("status") or {}
        rolling = rolling and status.only_rollout_progress(current, new_status)
        window = CHANGE_QUIET_SECONDS if current else NEW_QUIET_SECONDS
        quiet = self.rollouts.quiet_for(p.key, rolling, window, reported=bool(current))
        if quiet is not None:
            p.requeue_after.append(quiet)  # the status waits for the rollout's outcome
        else:
            written = await update_status(
                self.client, TrackingServerResource, p.obj, new_status, self.written
            )
            if written is not None and only_status_changed(p.obj, written):
                cached = self.manager.cache(TrackingServerResource).get(p.namespace, p.name)
                self.echoes.seen(written, cached)
        for warning in warnings:
            self.recorder.post(p.obj, WARNING, warning.reason, warning.message)
        return Result(requeue_after=min(p.requeue_after, default=None))

    # --- spec checks ---

    def _check_volume_spec(self, p: Pass) -> None:
        incomplete = status.incomplete_volume(p.ts)
        if incomplete is not None:
            p.volume = incomplete

    # --- children ---

    def _store(self, res: type[lkr.Resource]) -> Store | None:
        """The cache of a kind if this controller watches it, else None."""
        try:
            return self.manager.cache(res)
        except KeyError:
            return None

    def _latest(self, res: type[lkr.Resource], namespace: str, name: str) -> Obj | None:
        """The newest copy we know of a watched child: the response of our write until its
        event comes (see `Echoes.unseen_write`), else the cache's."""
        store = self.manager.cache(res)
        info = KindInfo.of(res)
        written = self.echoes.unseen_write(info.api_version, info.kind, namespace, name)
        return written if written is not None else store.get(namespace, name)

    def _is_tls_secret(self, child: Obj, p: Pass) -> bool:
        return bool(child["kind"] == "Secret" and child["metadata"]["name"] == p.name)

    async def _apply_deployment(
        self,
        p: Pass,
        plan: ServerPlan,
        inputs: list[Obj],
        built: Obj,
        expected: dict[str, str | None],
    ) -> Obj | None:
        """Apply `inputs`, then the Deployment that carries their resourceVersions: `built`
        with the `expected` versions (as last known), unless applying the inputs changed them."""
        applied = {
            child["metadata"]["name"]: live
            for child, live in zip(inputs, await self._apply_all(p, inputs), strict=True)
            if child["kind"] == "Secret"
        }
        versions = deployment_versions(p.ts, applied.get)
        child = built if versions == expected else deployment(p.ts, plan, **versions)
        if p.volume_foreign:  # never a Pod on someone else's claim (on its data)
            child["spec"]["replicas"] = 0
        return await self._apply(p, child)

    async def _apply_all(self, p: Pass, children: list[Obj]) -> list[Obj | None]:
        return await asyncio.gather(*(self._apply(p, child) for child in children))

    async def _apply(self, p: Pass, child: Obj) -> Obj | None:
        """Apply one child; foreign objects, unserved APIs and forbidden volume changes are
        recorded for the status instead of failing the pass."""
        kind, name = child["kind"], child["metadata"]["name"]
        res = kind_of(child["apiVersion"], kind)
        store = self._store(res) if res is not None else None
        if res is not None and store is not None and not self.manager.is_served(res):
            p.not_served.append(f"{kind} ({child['apiVersion']})")
            p.routing_failed = p.routing_failed or kind in ROUTING_KINDS
            p.requeue_after.append(10 * self.recheck_interval)
            return None
        live = None if res is None or store is None else self._latest(res, p.namespace, name)
        if (
            live is not None
            and kind == "PersistentVolumeClaim"
            and lifecycle.is_released_for(live, p.obj)
        ):
            await lifecycle.adopt_released_volume(self.client, PVC, live, p.obj)
            p.wrote, live = True, None
        try:
            applied = await apply_owned(
                self.client, child, p.obj, live=live, post_create=res in POSTED_KINDS
            )
        except NotOwnedError as err:
            p.foreign.append(f"{err.kind} {err.name}")
            p.requeue_after.append(self.recheck_interval)  # its removal fires no event for us
            p.routing_failed = p.routing_failed or kind in ROUTING_KINDS
            if kind == "PersistentVolumeClaim":
                p.volume = ConditionValue("False", status.FOREIGN_OBJECT, str(err))
            return None
        except ApiError as err:
            if kind == "Deployment" and err.status.code == 422:
                # e.g. an env or affinity the Pod API refuses: the spec is wrong, not the pass
                message = redact(err.status.message or str(err), secret_values(p.ts))
                p.problems.append(ConditionValue("False", status.DEPLOYMENT_REJECTED, message))
                return live
            if kind != "PersistentVolumeClaim" or err.status.code not in (403, 422):
                raise
            message = redact(err.status.message or str(err), secret_values(p.ts))
            forbidden = ConditionValue("False", status.VOLUME_UPDATE_FORBIDDEN, message)
            p.volume = forbidden
            p.problems.append(forbidden)
            return live
        if version(live) != version(applied):
            p.wrote = True
            if store is not None:
                self.echoes.seen(applied, store.get(p.namespace, name))
            p.applied.append(f"{kind}/{name}")
            if kind == "Deployment":
                self.rollouts.started(p.key)
        return applied

    async def _delete_unwanted(self, p: Pass, unwanted: list[ChildRef]) -> None:
        """Delete (or, for a retained volume, release) owned children no longer desired.

        Our children carry our labels, so the caches hold them; objects the original
        controller made do not, and are looked up on the server while its finalizer is still
        on the TrackingServer (its first reconcile by this operator)."""
        legacy = lifecycle.LEGACY_FINALIZER in p.ts.metadata.finalizers
        for ref in unwanted:
            res = kind_of(ref.api_version, ref.kind)
            if res is None:
                continue
            store = self._store(res)
            live = store.get(p.namespace, ref.name) if store is not None else None
            if live is None and legacy:
                live = await kubeapi.get(self.client, KindInfo.of(res), p.namespace, ref.name)
            if live is None or not is_controlled_by(live, p.uid):
                continue
            if (
                ref.kind == "PersistentVolumeClaim"
                and p.ts.spec.volume_retention_policy == "Retain"
            ):
                written = await lifecycle.release_volume(self.client, PVC, live, p.obj)
            else:
                written = await delete_if_owned(
                    self.client, KindInfo.of(res), p.namespace, ref.name, p.uid, live=live
                )
            if written:
                p.wrote = True
                log.info("removed", extra={"key": f"{p.namespace}/{ref.name}", "kind": ref.kind})

    # --- finalizers ---

    async def _retain_first(self, p: Pass, children: list[Obj]) -> bool:
        """With Retain, the finalizer goes on before the PVC is created or adopted: deleted in
        between, the TrackingServer would take the claim to the garbage collector with it.
        False when the TrackingServer was stale or is gone (nothing may be applied)."""
        live = self._latest(PersistentVolumeClaim, p.namespace, p.name)
        retains = lifecycle.retains(p.ts, children, foreign=p.volume_foreign)
        if not retains or (live and lifecycle.is_foreign(live, p.obj)):
            return True
        held = await lifecycle.hold_finalizer(
            self.client, TS_KIND, p.obj, lifecycle.RETAIN_FINALIZER
        )
        if held is not None and held is not p.obj:
            p.obj, p.wrote = held, True
        return held is not None
