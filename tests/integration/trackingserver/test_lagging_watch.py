"""A pass that starts before a watch has delivered the last pass's own writes reads those writes
and sends nothing again.

Under load a watch can lag seconds behind: the Deployment stream of an operator whose API server
is busy with a thousand rollouts delivers the echo of an image change long after the Pods of the
new ReplicaSet (another stream) have queued more passes. Here the Deployment informer's
deliveries are held back on purpose, the way such a lag looks to the reconciler.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest
from lightkube import AsyncClient
from lightkube.resources.apps_v1 import Deployment
from prometheus_client import REGISTRY

from experiment_lab.objects import create, get, merge_patch, ready_is, sample, trackingserver
from experiment_lab.operator import Operator, run_operator
from experiment_lab.wait import eventually
from experiment_operator.runtime.informer import Informer
from experiment_operator.runtime.manager import Manager
from experiment_operator.runtime.store import Change
from experiment_operator.trackingserver.passes import version

pytestmark = pytest.mark.integration

NAME = "trackingserver"
CONTROLLER = "lagging-watch"
RESULTS = ("success", "error", "requeue", "requeue_after")


@pytest.fixture(scope="module")
async def operator(operator_kubeconfig: Path) -> AsyncIterator[Operator]:
    async with run_operator(operator_kubeconfig, name=CONTROLLER) as op:
        yield op


@contextmanager
def deliveries_held(manager: Manager, kind: str) -> Iterator[None]:
    """Hold back what the informers of `kind` deliver (to cache and handlers alike), as a
    lagging watch would; delivered in order on exit."""
    informers = [i for i in manager._informers if i.kind.kind == kind]
    held: list[tuple[Informer, Change]] = []
    for informer in informers:
        informer._deliver = partial(hold, held, informer)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for informer in informers:
            del informer._deliver
        for informer, change in held:
            informer._deliver(change)


def hold(held: list[tuple[Informer, Change]], informer: Informer, change: Change) -> None:
    held.append((informer, change))


def reconciles() -> float:
    return sum(
        REGISTRY.get_sample_value(
            "controller_runtime_reconcile_total", {"controller": CONTROLLER, "result": result}
        )
        or 0.0
        for result in RESULTS
    )


async def settled(within: int = 30) -> float:
    """The reconcile count once it has not changed for a second (or after `within` seconds)."""
    count = reconciles()
    for _ in range(within):
        await asyncio.sleep(1.0)
        if reconciles() == count:
            break
        count = reconciles()
    return count


async def image_is(kube: AsyncClient, namespace: str, image: str) -> bool:
    dep = await get(kube, "apps/v1", "Deployment", namespace, NAME)
    return dep is not None and dep["spec"]["template"]["spec"]["containers"][0]["image"] == image


async def test_a_pass_ahead_of_the_deployment_watch_applies_nothing_again(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    await create(kube, sample("blog", namespace))
    await eventually(ready_is(kube, namespace, "True", "Available"), within=60)
    cache = operator.manager.cache(Deployment)
    with deliveries_held(operator.manager, "Deployment"):
        since = len(operator.requests)
        ts = await trackingserver(kube, namespace)
        await merge_patch(kube, ts, {"spec": {"image": "mlflow:next"}})
        await eventually(lambda: image_is(kube, namespace, "mlflow:next"), within=30)
        before = await settled()
        # Another pass while the Deployment's cache still holds the old image: touch the CR.
        ts = await trackingserver(kube, namespace)
        await merge_patch(kube, ts, {"metadata": {"annotations": {"touched": "yes"}}})
        await eventually(lambda: reconciles() > before, within=30)
        await settled()
        live = await get(kube, "apps/v1", "Deployment", namespace, NAME)
        cached = cache.get(namespace, NAME)
        assert live is not None
        assert version(cached) != version(live), "the cache lags behind"
        applies = [r for r in operator.writes(since) if "/deployments/" in r[1]]
        assert len(applies) == 1, applies
    await eventually(lambda: version(cache.get(namespace, NAME)) == version(live), within=10)
