"""Small helpers on raw objects for tests, demos and benchmarks: create/get/patch/delete as
the API server stores them, conditions, Events, seed samples and throwaway TLS material."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lightkube import AsyncClient

from experiment_lab import credentials
from experiment_lab.binaries import REPO_ROOT
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.kubeapi import KindInfo, Obj
from experiment_operator.trackingserver.resources import TrackingServerResource

FIXTURES = REPO_ROOT / "tests" / "fixtures"
TS = KindInfo.of(TrackingServerResource)
Check = Callable[[], Awaitable[bool]]
"""A condition to poll with `experiment_lab.wait.eventually`."""


def sample(name: str, namespace: str, **spec: Any) -> Obj:
    """A seed sample (`blog` or `repo`) in `namespace`, with spec overrides (None removes)."""
    obj: Obj = yaml.safe_load((FIXTURES / f"seed-{name}-sample.yaml").read_text())
    obj["metadata"]["namespace"] = namespace
    for key, value in spec.items():
        if value is None:
            obj["spec"].pop(key, None)
        else:
            obj["spec"][key] = value
    credentials.register_all(
        (obj["spec"].get(key), f"the TrackingServer's {key}")
        for key in ("aws_access_key", "aws_secret_key", "key", "backend_uri")
    )
    return obj


async def create(client: AsyncClient, obj: Obj, field_manager: str = "tests") -> Obj:
    kind = KindInfo.for_object(obj)
    ns = obj["metadata"].get("namespace")
    return await kubeapi.request(
        client, "POST", kind.path(ns), params={"fieldManager": field_manager}, body=obj
    )


async def get(client: AsyncClient, api_version: str, kind: str, ns: str, name: str) -> Obj | None:
    info = KindInfo.for_object({"apiVersion": api_version, "kind": kind})
    return await kubeapi.get(client, info, ns, name)


async def merge_patch(client: AsyncClient, obj: Obj, patch: Obj) -> Obj:
    kind = KindInfo.for_object(obj)
    meta = obj["metadata"]
    return await kubeapi.request(
        client,
        "PATCH",
        kind.path(meta.get("namespace"), meta["name"]),
        body=patch,
        content_type=kubeapi.MERGE_PATCH_CONTENT_TYPE,
    )


async def delete(client: AsyncClient, api_version: str, kind: str, ns: str, name: str) -> None:
    info = KindInfo.for_object({"apiVersion": api_version, "kind": kind})
    await kubeapi.request(client, "DELETE", info.path(ns, name))


async def trackingserver(client: AsyncClient, ns: str, name: str = "trackingserver") -> Obj:
    """The TrackingServer as stored (it must exist)."""
    obj = await kubeapi.get(client, TS, ns, name)
    assert obj is not None
    return obj


def condition(obj: Obj, type_: str = "Ready") -> dict[str, Any]:
    """The condition of that type (empty when absent)."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


async def events(client: AsyncClient, ns: str) -> list[Obj]:
    """Events on TrackingServers in the namespace."""
    listed = await kubeapi.request(
        client,
        "GET",
        f"api/v1/namespaces/{ns}/events",
        params={"fieldSelector": "involvedObject.kind=TrackingServer"},
    )
    return list(listed.get("items") or [])


def ready_is(client: AsyncClient, ns: str, status: str, reason: str | None = None) -> Check:
    """The TrackingServer's Ready has `status` (and `reason`, when given)."""

    async def check() -> bool:
        ready = condition(await trackingserver(client, ns))
        return ready.get("status") == status and (reason is None or ready["reason"] == reason)

    return check


def has_event(client: AsyncClient, ns: str, type_: str, reason: str) -> Check:
    """An Event of that type and reason exists on a TrackingServer of the namespace."""

    async def check() -> bool:
        return any(e["type"] == type_ and e["reason"] == reason for e in await events(client, ns))

    return check


def tls_pair(host: str = "mlflow.example.com", days: int = 30) -> tuple[str, str]:
    """A self-signed certificate and its key (PEM), valid for `days` (negative: expired).

    The host is also its subject alternative name and the certificate may act as its own CA, so
    clients that verify (Python's ssl, MLflow's client) trust it given as their CA file."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    start, end = sorted([now - datetime.timedelta(days=1), now + datetime.timedelta(days=days)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - datetime.timedelta(days=1))
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    credentials.register(key_pem.decode(), "a TLS private key")
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()
