"""What the benchmark asks of the cluster: TrackingServers, image changes, unrelated objects.

Everything goes through one admin lightkube AsyncClient with bounded concurrency (the httpx
pool holds 100 connections; more waiting requests would hit its pool timeout).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

from lightkube import AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import Container, PodSpec, PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Namespace
from lightkube.types import PatchType

from experiment_lab.objects import tls_pair
from experiment_operator.api.trackingserver import GROUP, KIND, PLURAL, VERSION
from experiment_operator.runtime.kubeapi import Key

TrackingServer = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
CONCURRENCY = 50
IMAGE = "ghcr.io/mlflow/mlflow:v2.19.0"
NEW_IMAGE = "ghcr.io/mlflow/mlflow:v2.20.0"


async def bounded(calls: Iterable[Awaitable[Any]], concurrency: int = CONCURRENCY) -> None:
    """Await all calls with at most `concurrency` in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Awaitable[Any]) -> None:
        async with gate:
            await call

    await asyncio.gather(*(one(call) for call in calls))


def cr_keys(count: int, namespaces: Sequence[str], prefix: str = "ts") -> list[Key]:
    """`count` CR keys spread round-robin over the namespaces."""
    return [(namespaces[i % len(namespaces)], f"{prefix}-{i:05d}") for i in range(count)]


@functools.cache
def bench_tls_pair() -> tuple[str, str]:
    """One valid self-signed pair for every CR (generating 1000 keys would dominate the run)."""
    return tls_pair("*.bench.example", days=365)


def trackingserver(key: Key, image: str = IMAGE, size: int = 1) -> Any:
    """The seed's sample (valid TLS pair, URL with a path) without a volume: Deployment,
    Service, credentials Secret, TLS Secret, IngressRoute and StripPrefix Middleware."""
    namespace, name = key
    cert, private_key = bench_tls_pair()
    return TrackingServer(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec={
            "size": size,
            "image": image,
            "s3_endpoint_url": "http://s3.bench.example/",
            "aws_access_key": "bench",
            "aws_secret_key": "bench-secret",
            "artifact_root": "s3://mlflow/",
            "backend_uri": "sqlite:////mlflow/mlflow.db",
            "url": f"https://{namespace}.bench.example/{name}",
            "cert": cert,
            "key": private_key,
        },
    )


async def create_namespaces(client: AsyncClient, names: Iterable[str]) -> None:
    await bounded(client.create(Namespace(metadata=ObjectMeta(name=name))) for name in names)


async def create_trackingservers(
    client: AsyncClient, keys: Iterable[Key], *, size: int = 1
) -> None:
    await bounded(client.create(trackingserver(key, size=size)) for key in keys)


async def set_image(client: AsyncClient, keys: Iterable[Key], image: str) -> None:
    await bounded(
        client.patch(
            TrackingServer,
            name,
            {"spec": {"image": image}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
        for namespace, name in keys
    )


def unrelated_deployment(namespace: str, index: int) -> Deployment:
    """A Deployment of someone else (no managed-by label), scaled to 0 to spare the node."""
    labels = {"app": f"unrelated-{index}"}
    return Deployment(
        metadata=ObjectMeta(name=f"unrelated-{index:05d}", namespace=namespace, labels=labels),
        spec=DeploymentSpec(
            replicas=0,
            selector=LabelSelector(matchLabels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(containers=[Container(name="app", image="registry.example/app:1")]),
            ),
        ),
    )


async def create_unrelated(
    client: AsyncClient, namespaces: Sequence[str], configmaps: int, deployments: int
) -> None:
    """ConfigMaps (about 1 KiB each) and Deployments the operator must never cache."""
    payload = {"payload": "x" * 1024}
    await bounded(
        client.create(
            ConfigMap(
                metadata=ObjectMeta(
                    name=f"unrelated-{i:05d}", namespace=namespaces[i % len(namespaces)]
                ),
                data=payload,
            )
        )
        for i in range(configmaps)
    )
    await bounded(
        client.create(unrelated_deployment(namespaces[i % len(namespaces)], i))
        for i in range(deployments)
    )
