"""A tiny controller (Widget owns ConfigMap) on the manager against a real API server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest
from lightkube import AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import ConfigMap

from experiment_lab.wait import eventually
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.apply import apply_owned, update_status
from experiment_operator.runtime.controller import ControllerBuilder, Request, Result
from experiment_operator.runtime.echoes import Echoes, only_status_changed
from experiment_operator.runtime.kubeapi import KindInfo, Obj
from experiment_operator.runtime.manager import KindNotServedError, Manager
from experiment_operator.runtime.store import Change

pytestmark = pytest.mark.integration

Widget = create_namespaced_resource("runtime.test.example", "v1", "Widget", "widgets")
Gadget = create_namespaced_resource("absent.test.example", "v1", "Gadget", "gadgets")
WIDGET = KindInfo.of(Widget)
CONFIGMAP = KindInfo.of(ConfigMap)
MANAGED = {"app.kubernetes.io/managed-by": "runtime-test"}


class WidgetReconciler:
    """Keeps a ConfigMap named after each Widget holding its spec, and reports it in status;
    the events of its own writes are echoes."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self.calls: list[Request] = []
        self.echoes = CountedEchoes()

    async def reconcile(self, request: Request) -> Result:
        self.calls.append(request)
        widget = self.manager.cache(Widget).get(request.namespace, request.name)
        if widget is None:
            return Result()
        desired = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": request.name, "namespace": request.namespace, "labels": MANAGED},
            "data": {"size": str(widget["spec"]["size"])},
        }
        children = self.manager.cache(ConfigMap)
        live = children.get(request.namespace, request.name)
        applied = await apply_owned(self.manager.client, desired, widget, live)
        if applied is not live:
            self.echoes.seen(applied, children.get(request.namespace, request.name))
        status = {"configMap": request.name}
        written = await update_status(self.manager.client, Widget, widget, status)
        if written is not None and only_status_changed(widget, written):
            self.echoes.seen(written, self.manager.cache(Widget).get(*request_key(request)))
        return Result()


class CountedEchoes(Echoes):
    """Echoes that count the writes whose event came before the response (raced) and the
    events dropped as echoes."""

    def __init__(self) -> None:
        super().__init__()
        self.raced = self.dropped = 0

    def seen(self, obj: Obj, cached: Obj | None) -> None:
        rv = obj["metadata"]["resourceVersion"]
        self.raced += cached is not None and cached["metadata"].get("resourceVersion") == rv
        super().seen(obj, cached)

    def is_echo(self, change: Change) -> bool:
        echo = super().is_echo(change)
        self.dropped += echo
        return echo


def request_key(request: Request) -> tuple[str, str]:
    return request.namespace, request.name


def record_writes(client: AsyncClient) -> list[tuple[str, str]]:
    """Start recording the write requests (method, path) the client sends."""
    writes: list[tuple[str, str]] = []

    async def hook(request: httpx2.Request) -> None:
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            writes.append((request.method, request.url.path))

    http = kubeapi.http(client)
    hooks = http.event_hooks
    hooks["request"] = [*hooks.get("request", []), hook]
    http.event_hooks = hooks
    return writes


@contextlib.asynccontextmanager
async def running(manager: Manager) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(manager.run())
    try:
        async with asyncio.timeout(60):
            await manager.wait_synced()
        yield task
    finally:
        manager.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)


async def create_widget(kube: AsyncClient, namespace: str, name: str, size: int = 1) -> Obj:
    body = {"apiVersion": WIDGET.api_version, "kind": "Widget",
            "metadata": {"name": name}, "spec": {"size": size}}  # fmt: skip
    return await kubeapi.request(kube, "POST", WIDGET.path(namespace), body=body)


def widget_manager(
    client: AsyncClient, namespace: str, **options: Any
) -> tuple[Manager, WidgetReconciler]:
    manager = Manager(client, namespaces=[namespace], owned_label_selector=MANAGED, **options)
    reconciler = WidgetReconciler(manager)
    builder = ControllerBuilder(manager).named("widget").for_(Widget).owns(ConfigMap, Gadget)
    builder.without_echoes(reconciler.echoes)
    builder.with_options(max_concurrent_reconciles=2).complete(reconciler)
    return manager, reconciler


async def child_uid(kube: AsyncClient, namespace: str, name: str) -> str | None:
    live = await kubeapi.get(kube, CONFIGMAP, namespace, name)
    return None if live is None else str(live["metadata"]["uid"])


@pytest.mark.usefixtures("widget_crd")
async def test_its_own_writes_do_not_reconcile_again_but_anyone_elses_do(
    new_client: Callable[[], AsyncClient], kube: AsyncClient, namespace: str
) -> None:
    client = new_client()
    manager, reconciler = widget_manager(client, namespace)
    names = [f"e{i}" for i in range(5)]
    try:
        async with running(manager):
            for name in names:
                await create_widget(kube, namespace, name)

            def settled() -> bool:  # every write's event has reached the caches
                widgets = [manager.cache(Widget).get(namespace, n) for n in names]
                return len(reconciler.echoes) == 0 and all(
                    w is not None and (w.get("status") or {}).get("configMap") for w in widgets
                )

            await eventually(settled, "widgets reconciled, echoes arrived", within=60)
            await asyncio.sleep(0.5)
            echoes = reconciler.echoes
            # Two writes per widget (child, status). Each write's event either came after the
            # response and was dropped, or raced ahead of it and enqueued a pass like any
            # event; which one is the machine's timing, so it is counted, not assumed. (A pass
            # a raced event caused may repeat a write as a no-op while its cache lags.)
            assert echoes.dropped + echoes.raced >= 2 * len(names)
            assert len(reconciler.calls) <= len(names) + echoes.raced, reconciler.calls
            await kube.patch(ConfigMap, "e0", {"data": {"size": "9"}}, namespace=namespace)

            async def restored() -> bool:
                live = await kubeapi.get(kube, CONFIGMAP, namespace, "e0")
                return live is not None and live["data"]["size"] == "1"

            await eventually(restored, "someone else's change undone", within=60)
    finally:
        await client.close()


@pytest.mark.usefixtures("widget_crd")
async def test_owns_recreates_a_deleted_child_and_caches_only_managed_objects(
    new_client: Callable[[], AsyncClient], kube: AsyncClient, namespace: str
) -> None:
    client = new_client()
    manager, reconciler = widget_manager(client, namespace)
    try:
        async with running(manager):
            assert not manager.is_served(Gadget), "an Owns kind without its CRD is skipped"
            await create_widget(kube, namespace, "w1", size=3)
            await eventually(lambda: child_uid(kube, namespace, "w1"), "child created", within=60)
            first = await child_uid(kube, namespace, "w1")
            await kube.delete(ConfigMap, "w1", namespace=namespace)

            async def recreated() -> bool:
                uid = await child_uid(kube, namespace, "w1")
                return uid is not None and uid != first

            await eventually(recreated, "deleted child recreated", within=60)
            assert Request(namespace, "w1") in reconciler.calls
            cached = [o["metadata"]["name"] for o in manager.cache(ConfigMap).list(namespace)]
            assert "kube-root-ca.crt" not in cached, "child caches are label-selected"
            widget = manager.cache(Widget).get(namespace, "w1")
            assert widget is not None
            owner = widget["metadata"]["uid"]
            # The server has the new child before the cache's watch delivers it.
            await eventually(lambda: manager.cache(ConfigMap).by_owner(owner), "child cached")
    finally:
        await client.close()


@pytest.mark.usefixtures("widget_crd")
async def test_resync_of_a_converged_object_makes_no_writes(
    new_client: Callable[[], AsyncClient], kube: AsyncClient, namespace: str
) -> None:
    client = new_client()
    writes = record_writes(client)
    manager, reconciler = widget_manager(client, namespace, resync_period=0.3)
    try:
        async with running(manager):
            await create_widget(kube, namespace, "w2")

            def converged() -> bool:
                widget = manager.cache(Widget).get(namespace, "w2")
                child = manager.cache(ConfigMap).get(namespace, "w2")
                return bool(widget and widget.get("status") and child)

            await eventually(converged, "widget converged", within=60)
            await eventually(lambda: writes, "writes seen", within=60)
            writes.clear()
            calls = len(reconciler.calls)
            await eventually(
                lambda: len(reconciler.calls) >= calls + 3, "resyncs happened", within=60
            )
            assert writes == [], "reconciling an unchanged object must not write"
    finally:
        await client.close()


@pytest.mark.usefixtures("widget_crd")
async def test_only_the_leader_reconciles_and_a_successor_takes_over(
    new_client: Callable[[], AsyncClient], kube: AsyncClient, namespace: str
) -> None:
    clients = [new_client(), new_client()]
    election = {"leader_election": True, "leader_election_namespace": namespace,
                "leader_election_id": "widget-test"}  # fmt: skip
    pairs = [widget_manager(c, namespace, **election) for c in clients]
    tasks = [asyncio.create_task(m.run()) for m, _ in pairs]
    try:
        await create_widget(kube, namespace, "w3")
        await eventually(lambda: any(r.calls for _, r in pairs), "someone reconciled", within=60)
        await eventually(lambda: any(m.is_leader for m, _ in pairs), "someone leads", within=60)
        leader = next(i for i, (m, _) in enumerate(pairs) if m.is_leader)
        follower = 1 - leader
        await create_widget(kube, namespace, "w4")
        await eventually(
            lambda: Request(namespace, "w4") in pairs[leader][1].calls, "leader reconciled"
        )
        assert pairs[follower][1].calls == [], "the follower never reconciles"

        pairs[leader][0].stop()  # graceful: releases the Lease
        await asyncio.wait_for(tasks[leader], 30)
        await eventually(lambda: pairs[follower][0].is_leader, "successor leads", within=60)
        await create_widget(kube, namespace, "w5")
        await eventually(
            lambda: Request(namespace, "w5") in pairs[follower][1].calls, "successor reconciled"
        )
        assert Request(namespace, "w5") not in pairs[leader][1].calls
    finally:
        for manager, _ in pairs:
            manager.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.close()


@pytest.mark.usefixtures("widget_crd")
async def test_probes_and_metrics_of_a_running_manager(
    new_client: Callable[[], AsyncClient], kube: AsyncClient, namespace: str
) -> None:
    client = new_client()
    manager, reconciler = widget_manager(client, namespace, probe_address=("127.0.0.1", 0))
    try:
        async with running(manager):
            assert manager.probe is not None
            base = f"http://127.0.0.1:{manager.probe.port}"
            await create_widget(kube, namespace, "w6")
            await eventually(
                lambda: Request(namespace, "w6") in reconciler.calls, "reconciled", within=60
            )
            async with httpx2.AsyncClient(base_url=base) as http:
                assert (await http.get("/healthz")).status_code == 200
                assert (await http.get("/readyz")).status_code == 200, "caches synced"
                text = (await http.get("/metrics")).text
            assert (
                'controller_runtime_reconcile_total{controller="widget",result="success"}' in text
            )
            assert 'workqueue_adds_total{name="widget"}' in text
            assert 'rest_client_requests_total{code="200",verb="watch"}' in text
    finally:
        await client.close()


async def test_an_unserved_primary_kind_stops_the_manager_with_a_clear_error(
    kube: AsyncClient, namespace: str
) -> None:
    manager = Manager(kube, namespaces=[namespace])
    ControllerBuilder(manager).named("gadget").for_(Gadget).complete(WidgetReconciler(manager))
    with pytest.raises(KindNotServedError, match="install its CustomResourceDefinition"):
        async with asyncio.timeout(30):
            await manager.run()
