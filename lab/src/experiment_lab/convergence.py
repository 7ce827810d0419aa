"""Bursts of TrackingServers and the check that the operator converged afterwards.

`converged()` compares the cluster with what the operator's own pure builders say each
TrackingServer should have, and reports every CR that is not Ready at its generation and every
child that is orphaned (labelled ours, controlled by no existing CR), unwanted or duplicated
(owned but not desired), missing, or stale (what the server holds of the fields the operator
applied differs from what it would apply now).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightkube import AsyncClient

from experiment_lab import credentials
from experiment_lab.objects import TS, tls_pair
from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.apply import with_controller_reference
from experiment_operator.runtime.fieldset import applied_digest, desired_digest
from experiment_operator.runtime.kubeapi import Key, KindInfo, Obj
from experiment_operator.trackingserver.children import ChildOptions, ChildRef, build_children
from experiment_operator.trackingserver.controller import OWNED_LABELS
from experiment_operator.trackingserver.labels import (
    backend_store_secret_name,
    credentials_secret_name,
)
from experiment_operator.trackingserver.resources import child_kinds

IMAGE = "ghcr.io/mlflow/mlflow:v2.19.0"
CONCURRENCY = 20


@dataclass(frozen=True)
class Workload:
    """Spec values shared by a burst's CRs; the credentials are registered for the leak check."""

    access_key: str = field(default_factory=lambda: f"AKIA{secrets.token_hex(8).upper()}")
    secret_key: str = field(default_factory=lambda: f"s3-{secrets.token_urlsafe(24)}")
    tls: tuple[str, str] = field(default_factory=lambda: tls_pair("*.reliability.example"))

    def __post_init__(self) -> None:
        credentials.register(self.access_key, "the burst's S3 access key")
        credentials.register(self.secret_key, "the burst's S3 secret key")

    def trackingserver(self, key: Key, image: str = IMAGE) -> Obj:
        """The seed's sample shape: Deployment, Service, credentials and TLS Secrets,
        IngressRoute and Middleware; no volume."""
        namespace, name = key
        cert, private_key = self.tls
        return {
            "apiVersion": TS.api_version,
            "kind": TS.kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "size": 1,
                "image": image,
                "s3_endpoint_url": "http://s3.reliability.example/",
                "aws_access_key": self.access_key,
                "aws_secret_key": self.secret_key,
                "artifact_root": "s3://mlflow/",
                "backend_uri": "sqlite:////mlflow/mlflow.db",
                "url": f"https://{namespace}.reliability.example/{name}",
                "cert": cert,
                "key": private_key,
            },
        }


def keys(count: int, namespaces: Sequence[str], prefix: str = "ts") -> list[Key]:
    """`count` CR keys spread round-robin over the namespaces."""
    return [(namespaces[i % len(namespaces)], f"{prefix}-{i:04d}") for i in range(count)]


async def bounded(calls: Iterable[Awaitable[Any]], concurrency: int = CONCURRENCY) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Awaitable[Any]) -> None:
        async with gate:
            await call

    await asyncio.gather(*(one(call) for call in calls))


async def create_namespaces(admin: AsyncClient, names: Iterable[str]) -> None:
    for name in names:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        await kubeapi.request(admin, "POST", "api/v1/namespaces", body=body)


async def create_all(admin: AsyncClient, workload: Workload, crs: Iterable[Key]) -> None:
    await bounded(
        kubeapi.request(admin, "POST", TS.path(ns), body=workload.trackingserver((ns, name)))
        for ns, name in crs
    )


async def set_image(admin: AsyncClient, crs: Iterable[Key], image: str) -> None:
    """A spec change (a new generation) for each CR."""
    await bounded(
        kubeapi.request(
            admin,
            "PATCH",
            TS.path(ns, name),
            body={"spec": {"image": image}},
            content_type=kubeapi.MERGE_PATCH_CONTENT_TYPE,
        )
        for ns, name in crs
    )


def ready_at_generation(obj: Obj) -> bool:
    generation = obj["metadata"].get("generation")
    status = obj.get("status") or {}
    ready: Obj = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return (
        status.get("observedGeneration") == generation
        and ready.get("status") == "True"
        and ready.get("observedGeneration") == generation
    )


@dataclass
class Report:
    crs: int = 0
    not_ready: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    unwanted: list[str] = field(default_factory=list)
    """Owned by a CR that does not want it: a duplicate or a leftover."""
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.not_ready or self.orphaned or self.unwanted or self.missing or self.stale)

    def __str__(self) -> str:
        parts = [f"{self.crs} TrackingServers"]
        for label in ("not_ready", "orphaned", "unwanted", "missing", "stale"):
            items: list[str] = getattr(self, label)
            if items:
                parts.append(f"{label} {len(items)}: {', '.join(items[:5])}")
        return "; ".join(parts)


def _desired(ts_obj: Obj, options: ChildOptions, live: dict[ChildRef, Obj]) -> dict[ChildRef, Obj]:
    """What the reconciler would apply, with the Deployment's Secret versions as they are."""
    ts = TrackingServer.from_api(ts_obj)
    name, ns = ts.metadata.name, ts.metadata.namespace

    def version(secret_name: str) -> str | None:
        secret = live.get(ChildRef("v1", "Secret", secret_name))
        return None if secret is None else str(secret["metadata"]["resourceVersion"])

    desired = {}
    for child in build_children(
        ts,
        options,
        tls_secret_present=ts.spec.tls_enabled,
        credentials_version=version(credentials_secret_name(name)),
        backend_store_version=version(backend_store_secret_name(name)),
    ):
        child["metadata"].setdefault("namespace", ns)
        desired[ChildRef.of(child)] = with_controller_reference(child, ts_obj)
    return desired


async def converged(
    client: AsyncClient, namespaces: Sequence[str], options: ChildOptions
) -> Report:
    """How far the cluster is from every TrackingServer's desired state (see module doc)."""
    selector = kubeapi.format_selector(OWNED_LABELS)
    report = Report()
    for ns in namespaces:
        crs = {
            cr["metadata"]["uid"]: cr for cr in (await kubeapi.list_all(client, TS, ns, None))[0]
        }
        report.crs += len(crs)
        owned: dict[str, dict[ChildRef, Obj]] = {uid: {} for uid in crs}
        for kind in child_kinds():
            info = KindInfo.of(kind)
            if not await kubeapi.is_served(client, info):
                continue
            for child in (await kubeapi.list_all(client, info, ns, selector))[0]:
                ref = ChildRef(info.api_version, info.kind, child["metadata"]["name"])
                owner = next(
                    (
                        r["uid"]
                        for r in child["metadata"].get("ownerReferences") or []
                        if r.get("controller")
                    ),
                    None,
                )
                if owner not in owned:
                    report.orphaned.append(f"{ns}/{ref.kind}/{ref.name}")
                    continue
                owned[owner][ref] = child
        for uid, cr in crs.items():
            name = f"{ns}/{cr['metadata']['name']}"
            if not ready_at_generation(cr):
                report.not_ready.append(name)
            live = owned[uid]
            desired = _desired(cr, options, live)
            report.unwanted += [f"{ns}/{r.kind}/{r.name}" for r in live if r not in desired]
            for ref, body in desired.items():
                if ref not in live:
                    report.missing.append(f"{ns}/{ref.kind}/{ref.name}")
                elif applied_digest(live[ref]) != desired_digest(body):
                    report.stale.append(f"{ns}/{ref.kind}/{ref.name}")
    return report
