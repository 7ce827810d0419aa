"""Controller workers over a store without a server: retries, requeue_after, resync, stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from lightkube import AsyncClient, KubeConfig
from lightkube.resources.core_v1 import ConfigMap, Pod
from prometheus_client import REGISTRY

from experiment_operator.runtime.controller import (
    Controller,
    ControllerBuilder,
    Request,
    Result,
    settled,
)
from experiment_operator.runtime.kubeapi import Key
from experiment_operator.runtime.manager import Manager
from experiment_operator.runtime.store import Change, Store
from experiment_operator.runtime.workqueue import Priority, WorkQueue


def store_with(*names: str) -> Store:
    store = Store()
    for name in names:
        obj = {"metadata": {"name": name, "namespace": "ns", "uid": name, "resourceVersion": "1"}}
        store.apply(Change("ADDED", obj))
    return store


class Scripted:
    """Answers reconciles from a script of results/exceptions, then succeeds."""

    def __init__(self, *script: Result | Exception) -> None:
        self.script = list(script)
        self.calls: list[Request] = []
        self.changed = asyncio.Event()

    async def reconcile(self, request: Request) -> Result:
        self.calls.append(request)
        self.changed.set()
        step = self.script.pop(0) if self.script else Result()
        if isinstance(step, Exception):
            raise step
        return step

    async def wait_until(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not check():
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def running(controller: Controller) -> AsyncIterator[None]:
    task = asyncio.create_task(controller.run())
    await asyncio.sleep(0)  # let run() set up its queue
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_errors_are_retried_with_backoff_until_success() -> None:
    rec = Scripted(RuntimeError("boom"), RuntimeError("boom"), RuntimeError("boom"))
    async with running(Controller("t-retry", rec, store_with("a"))):
        await rec.wait_until(lambda: len(rec.calls) == 4)
    assert rec.calls == [Request("ns", "a")] * 4
    assert sample("controller_runtime_reconcile_errors_total", controller="t-retry") == 3
    assert sample("controller_runtime_reconcile_total", controller="t-retry", result="error") == 3
    assert sample("controller_runtime_reconcile_total", controller="t-retry", result="success") == 1


async def test_requeue_after_reconciles_again() -> None:
    rec = Scripted(Result(requeue_after=0.05))
    async with running(Controller("t-requeue-after", rec, store_with("a"))):
        await rec.wait_until(lambda: len(rec.calls) == 2)
    labels = {"controller": "t-requeue-after", "result": "requeue_after"}
    assert sample("controller_runtime_reconcile_total", **labels) == 1


async def test_the_latest_pass_decides_when_the_key_comes_back() -> None:
    rec = Scripted(Result(requeue_after=0.3), Result(), Result(requeue_after=0.3))
    controller = Controller("t-latest", rec, store_with("a"))
    async with running(controller):
        await rec.wait_until(lambda: len(rec.calls) == 1)
        controller.enqueue(("ns", "a"))  # e.g. the event that made it Ready
        await rec.wait_until(lambda: len(rec.calls) == 2)
        await asyncio.sleep(0.6)
        assert len(rec.calls) == 2, "the first pass's timer went with the second pass"
        controller.enqueue(("ns", "a"))
        await rec.wait_until(lambda: len(rec.calls) == 3)
        await rec.wait_until(lambda: len(rec.calls) == 4)  # its own requeue_after still counts


async def test_every_cached_key_is_reconciled_at_start_and_on_resync() -> None:
    rec = Scripted()
    controller = Controller("t-resync", rec, store_with("a", "b"), resync_period=0.05)
    async with running(controller):
        await rec.wait_until(lambda: rec.calls.count(Request("ns", "b")) >= 3)
    assert set(rec.calls) == {Request("ns", "a"), Request("ns", "b")}


def with_status(name: str, generation: int, status: dict[str, object] | None) -> Change:
    meta = {"name": name, "namespace": "ns", "uid": name, "generation": generation}
    return Change("ADDED", {"metadata": meta, **({"status": status} if status else {})})


def ready(value: str, observed: int) -> dict[str, object]:
    return {"observedGeneration": observed, "conditions": [{"type": "Ready", "status": value}]}


async def test_at_start_the_objects_that_need_work_go_first() -> None:
    store = Store()
    for change in (
        with_status("settled-1", 2, ready("True", 2)),
        with_status("new", 1, None),
        with_status("settled-2", 1, {"observedGeneration": 1}),
        with_status("changed", 3, ready("True", 2)),
        with_status("failing", 1, ready("False", 1)),
    ):
        store.apply(change)
    rec = Scripted()
    async with running(Controller("t-priority", rec, store)):
        await rec.wait_until(lambda: len(rec.calls) == 5)
    names = [r.name for r in rec.calls]
    assert names[:3] == ["new", "changed", "failing"]
    assert set(names[3:]) == {"settled-1", "settled-2"}


def test_settled_means_current_generation_and_not_unready() -> None:
    assert settled(with_status("a", 4, ready("True", 4)).obj)
    assert settled(with_status("a", 4, {"observedGeneration": 4}).obj)
    assert not settled(with_status("a", 4, ready("True", 3)).obj)
    assert not settled(with_status("a", 4, ready("Unknown", 4)).obj)
    assert not settled(with_status("a", 1, None).obj)


async def test_enqueue_only_while_running() -> None:
    rec = Scripted()
    controller = Controller("t-enqueue", rec, Store(), max_concurrent_reconciles=3)
    controller.enqueue(("ns", "ignored"))  # not running: dropped, the start lists the store
    async with running(controller):
        controller.enqueue(("ns", "x"))
        await rec.wait_until(lambda: Request("ns", "x") in rec.calls)
    assert Request("ns", "ignored") not in rec.calls


async def test_stopping_cancels_an_inflight_reconcile() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    class Stuck:
        async def reconcile(self, request: Request) -> Result:
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return Result()

    async with running(Controller("t-stuck", Stuck(), store_with("a"))):
        await asyncio.wait_for(started.wait(), 10)
    assert cancelled.is_set()


async def test_changes_of_a_watched_kind_wait_behind_primaries_at_their_priority() -> None:
    """Pods are watched at LOW: a rollout's Pod churn waits behind a new TrackingServer."""
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )
    manager = Manager(AsyncClient(config=config))
    controller = (
        ControllerBuilder(manager)
        .for_(ConfigMap)
        .watches(Pod, lambda change: [("ns", "churned")], priority=Priority.LOW)
        .complete(Scripted())
    )
    controller._queue = queue = WorkQueue[Key]("priorities")  # as run() does, without workers
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "p", "resourceVersion": "1"}}
    for handler in manager._cache(Pod).handlers:
        handler(Change("MODIFIED", pod, old=pod))
    controller.enqueue(("ns", "new"))
    assert [await queue.get(), await queue.get()] == [("ns", "new"), ("ns", "churned")]
