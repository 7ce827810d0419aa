"""Informer against a real API server: events, label selection, relist after 410, restarts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx2
import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from experiment_lab.binaries import find_binaries
from experiment_lab.cluster import Cluster, use_existing_cluster
from experiment_lab.controlplane import ControlPlane
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.informer import Informer
from experiment_operator.runtime.store import Change

pytestmark = pytest.mark.integration


class Recorder:
    """Collects (type, name) of every change an informer delivers."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self._changed = asyncio.Event()

    def __call__(self, change: Change) -> None:
        self.changes.append(change)
        self._changed.set()

    def seen(self) -> list[tuple[str, str]]:
        return [(c.type, c.obj["metadata"]["name"]) for c in self.changes]

    async def wait_for(self, *expected: tuple[str, str]) -> None:
        """Eventually (generously) every expected change has been delivered."""
        async with asyncio.timeout(60):
            while not all(e in self.seen() for e in expected):
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[None]:
    task = asyncio.create_task(informer.run())
    try:
        async with asyncio.timeout(60):
            await informer.has_synced.wait()
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def cm(name: str, namespace: str, labels: dict[str, str] | None = None) -> ConfigMap:
    return ConfigMap(
        metadata=ObjectMeta(name=name, namespace=namespace, labels=labels), data={"v": "1"}
    )


@pytest.mark.parametrize("watch_list", [True, False], ids=["watch-list", "paged-list"])
async def test_informer_sees_create_update_delete(
    new_client: Callable[[], AsyncClient], kube: AsyncClient, namespace: str, watch_list: bool
) -> None:
    await kube.create(cm("before", namespace))
    client = new_client()
    informer = Informer(client, ConfigMap, namespace=namespace, watch_list=watch_list)
    rec = Recorder()
    informer.add_handler(rec)
    try:
        async with running(informer):
            assert ("ADDED", "before") in rec.seen(), "initial list is delivered as ADDED"
            await kube.create(cm("a", namespace))
            await rec.wait_for(("ADDED", "a"))
            await kube.patch(ConfigMap, "a", {"data": {"v": "2"}}, namespace=namespace)
            await rec.wait_for(("MODIFIED", "a"))
            cached = informer.store.get(namespace, "a")
            assert cached is not None
            assert cached["data"] == {"v": "2"}
            assert cached["kind"] == "ConfigMap"
            await kube.delete(ConfigMap, "a", namespace=namespace)
            await rec.wait_for(("DELETED", "a"))
            assert informer.store.get(namespace, "a") is None
            modified = next(c for c in rec.changes if c.type == "MODIFIED")
            assert modified.old is not None
            assert modified.old["data"] == {"v": "1"}
    finally:
        await client.close()


async def test_label_selected_informer_never_sees_unlabelled_objects(
    new_client: Callable[[], AsyncClient], kube: AsyncClient, namespace: str
) -> None:
    selector = {"app.kubernetes.io/managed-by": "runtime-test"}
    await kube.create(cm("plain-before", namespace))
    await kube.create(cm("mine-before", namespace, selector))
    client = new_client()
    informer = Informer(client, ConfigMap, namespace=namespace, label_selector=selector)
    rec = Recorder()
    informer.add_handler(rec)
    try:
        async with running(informer):
            await kube.create(cm("plain", namespace))
            await kube.patch(ConfigMap, "plain-before", {"data": {"v": "2"}}, namespace=namespace)
            await kube.create(cm("mine", namespace, selector))  # written last: a fence
            await rec.wait_for(("ADDED", "mine"))
            assert {name for _, name in rec.seen()} == {"mine-before", "mine"}
            assert sorted(o["metadata"]["name"] for o in informer.store.list()) == [
                "mine",
                "mine-before",
            ]
    finally:
        await client.close()


@pytest.mark.parametrize("watch_list", [True, False], ids=["watch-list", "paged-list"])
async def test_relist_after_gone_delivers_changes_made_during_the_gap(
    cluster: Cluster, new_client: Callable[[], AsyncClient], namespace: str, watch_list: bool
) -> None:
    labels = {"test": "relist"}  # leaves out the namespace's kube-root-ca.crt
    admin = new_client()
    for name in ("keep", "update", "delete"):
        await admin.create(cm(name, namespace, labels))
    client = new_client()
    informer = Informer(
        client, ConfigMap, namespace=namespace, label_selector=labels, watch_list=watch_list
    )
    rec = Recorder()
    informer.add_handler(rec)
    try:
        async with running(informer):
            assert len(informer.store) == 3
        # No watch is open now: change things, then make the old resourceVersion unservable.
        await admin.create(cm("create", namespace, labels))
        await admin.patch(ConfigMap, "update", {"data": {"v": "2"}}, namespace=namespace)
        await admin.delete(ConfigMap, "delete", namespace=namespace)
        await cluster.compact_etcd()
        await cluster.restart_apiserver()
        rec.changes.clear()
        async with running(informer):
            await rec.wait_for(("ADDED", "create"), ("MODIFIED", "update"), ("DELETED", "delete"))
            assert informer.relists >= 2, "the resumed watch got 410 Gone and relisted"
            assert ("MODIFIED", "keep") not in rec.seen(), "unchanged objects are not replayed"
            assert sorted(informer.store.snapshot(namespace)) == [
                (namespace, "create"),
                (namespace, "keep"),
                (namespace, "update"),
            ]
            # and the informer keeps watching after the relist
            await admin.create(cm("after", namespace, labels))
            await rec.wait_for(("ADDED", "after"))
    finally:
        await admin.close()
        await client.close()


async def test_apiserver_restart_mid_watch_recovers(
    cluster: Cluster, new_client: Callable[[], AsyncClient], namespace: str
) -> None:
    client = new_client()
    informer = Informer(client, ConfigMap, namespace=namespace)
    rec = Recorder()
    informer.add_handler(rec)
    try:
        async with running(informer):
            await cluster.restart_apiserver()
            admin = new_client()
            try:
                await admin.create(cm("after-restart", namespace))
                await rec.wait_for(("ADDED", "after-restart"))
                await admin.delete(ConfigMap, "after-restart", namespace=namespace)
                await rec.wait_for(("DELETED", "after-restart"))
            finally:
                await admin.close()
    finally:
        await client.close()


async def test_the_state_comes_in_one_watch_request(
    new_client: Callable[[], AsyncClient], kube: AsyncClient, namespace: str
) -> None:
    """No list, no pages: one watch streams the objects, its end bookmark syncs the cache."""
    for i in range(5):
        await kube.create(cm(f"c{i}", namespace))
    client = new_client()
    sent: list[httpx2.URL] = []

    async def record(request: httpx2.Request) -> None:
        sent.append(request.url)

    http = kubeapi.http(client)
    http.event_hooks = {**http.event_hooks, "request": [*http.event_hooks["request"], record]}
    informer = Informer(client, ConfigMap, namespace=namespace)
    rec = Recorder()
    informer.add_handler(rec)
    try:
        async with running(informer):
            assert informer.watch_list
            assert {f"c{i}" for i in range(5)} <= {name for _, name in rec.seen()}
            await kube.create(cm("later", namespace))
            await rec.wait_for(("ADDED", "later"))
        assert len(sent) == 1
        params = sent[0].params
        assert (params["watch"], params["sendInitialEvents"]) == ("true", "true")
        assert "resourceVersion" not in params, "a consistent read: the state as of now"
    finally:
        await client.close()


async def test_a_server_without_watch_list_gets_paged_lists(tmp_path: Path) -> None:
    """Kubernetes 1.27-1.33 may have the WatchList feature off (422): the informer lists."""
    if use_existing_cluster():
        pytest.skip("starts its own control plane with the WatchList feature turned off")
    flags = ("--feature-gates=WatchList=false",)
    plane = ControlPlane(tmp_path / "plane", find_binaries(), fake_nodes=0, apiserver_flags=flags)
    await asyncio.to_thread(plane.start)
    client = AsyncClient(config=KubeConfig.from_file(plane.kubeconfig), field_manager="tests")
    try:
        await client.create(cm("before", "default"))
        informer = Informer(client, ConfigMap, namespace="default")
        rec = Recorder()
        informer.add_handler(rec)
        async with running(informer):
            assert not informer.watch_list
            assert ("ADDED", "before") in rec.seen()
            await client.create(cm("after", "default"))
            await rec.wait_for(("ADDED", "after"))
    finally:
        await client.close()
        await asyncio.to_thread(plane.stop)
