"""Wiring of the TrackingServer controller onto a runtime Manager.

mgr = Manager(client, owned_label_selector=OWNED_LABELS, ...)
options = ChildOptions(..., traefik_group=await served_traefik_group(client))
setup(mgr, options, max_concurrent_reconciles=16)
await mgr.run()
"""

from __future__ import annotations

from lightkube import AsyncClient
from lightkube.resources.apps_v1 import Deployment

from experiment_operator.runtime.controller import Controller, ControllerBuilder
from experiment_operator.runtime.kubeapi import Key
from experiment_operator.runtime.manager import Manager
from experiment_operator.runtime.store import Change
from experiment_operator.runtime.workqueue import Priority
from experiment_operator.trackingserver.children import (
    TRAEFIK_GROUPS,
    ChildOptions,
    IngressController,
)
from experiment_operator.trackingserver.gateway import DEFAULT_HTTPS_PORT, ParentGateway
from experiment_operator.trackingserver.labels import INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from experiment_operator.trackingserver.mlflow import DEFAULT_MLFLOW_IMAGE
from experiment_operator.trackingserver.reconciler import RECHECK_SECONDS, TrackingServerReconciler
from experiment_operator.trackingserver.resources import (
    GATEWAY_KINDS,
    WATCHED_KINDS,
    TrackingServerResource,
    child_kinds,
    served_traefik_group,
)

CONTROLLER_NAME = "trackingserver"
EVENT_COMPONENT = "trackingserver-controller"
"""The seed's Event source, so `kubectl describe` reads as before."""
OWNED_LABELS = {MANAGED_BY_LABEL: MANAGED_BY}
"""The manager's child watches only stream objects carrying this label."""


async def child_options(
    client: AsyncClient,
    ingress_controller: IngressController,
    nginx_ingress_class: str | None,
    mlflow_image: str = DEFAULT_MLFLOW_IMAGE,
    *,
    gateway: ParentGateway | None = None,
    gateway_https_port: int = DEFAULT_HTTPS_PORT,
    gateway_listener_sets: bool = True,
    traefik_group: str | None = None,
) -> ChildOptions:
    """The options with the Traefik group the cluster serves at start (each reconcile looks
    again, see `routingapi`), or only `traefik_group` when given."""
    return ChildOptions(
        ingress_controller=ingress_controller,
        traefik_group=traefik_group or await served_traefik_group(client),
        traefik_groups=(traefik_group,) if traefik_group else TRAEFIK_GROUPS,
        nginx_ingress_class=nginx_ingress_class,
        mlflow_image=mlflow_image,
        gateway=gateway,
        gateway_https_port=gateway_https_port,
        listener_sets_enabled=gateway_listener_sets,
    )


def instance_keys(change: Change) -> list[Key]:
    """The TrackingServer a Pod belongs to, by its `app.kubernetes.io/instance` label."""
    keys: list[Key] = []
    for obj in (change.old, change.obj):
        if obj is None:
            continue
        meta = obj["metadata"]
        name = (meta.get("labels") or {}).get(INSTANCE_LABEL)
        if name and (meta.get("namespace", ""), name) not in keys:
            keys.append((meta.get("namespace", ""), name))
    return keys


def setup(
    manager: Manager,
    options: ChildOptions,
    *,
    name: str = CONTROLLER_NAME,
    max_concurrent_reconciles: int = 16,
    resync_period: float | None = None,
    recheck_interval: float = RECHECK_SECONDS,
) -> Controller:
    """Register the controller: For(TrackingServer), Owns(every child kind)."""
    reconciler = TrackingServerReconciler(
        manager,
        options,
        manager.event_recorder(EVENT_COMPONENT),
        recheck_interval=recheck_interval,
    )
    return (
        ControllerBuilder(manager)
        .named(name)
        .for_(TrackingServerResource)
        # The reconciler reads the Deployment's and the Pods' status; of the other children
        # only metadata.
        .owns(Deployment, fields=("status",))
        .owns(*GATEWAY_KINDS, fields=("status",))  # the Gateway's verdict on them
        .owns(*(k for k in child_kinds() if k not in (Deployment, *GATEWAY_KINDS)), fields=())
        # A Pod's change matters when it explains a broken server; progress shows in the
        # Deployment's status. So Pod churn (a rollout's old Pods going) waits behind new and
        # changed TrackingServers: p50 create → children 0.5-1.8 s at 10 CR/s after a rollout
        # or burst when it did not (bench/RESULTS.md, round 15).
        .watches(WATCHED_KINDS[0], instance_keys, fields=("status",), priority=Priority.LOW)
        .without_echoes(reconciler.echoes)
        .with_options(
            max_concurrent_reconciles=max_concurrent_reconciles, resync_period=resync_period
        )
        .complete(reconciler)
    )
