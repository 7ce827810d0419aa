"""The TrackingServer controller on the real control plane, run as its ServiceAccount.

One operator (all namespaces) serves the whole module; each test works in its own namespace.
Deployments become available through kwok; children are removed by the real garbage collector.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient

from experiment_lab.objects import (
    Check,
    condition,
    create,
    delete,
    events,
    get,
    has_event,
    merge_patch,
    ready_is,
    sample,
    tls_pair,
    trackingserver,
)
from experiment_lab.operator import Operator, run_operator
from experiment_lab.wait import eventually
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.kubeapi import Obj
from experiment_operator.trackingserver.lifecycle import (
    LEGACY_FINALIZER,
    RETAIN_FINALIZER,
    RETAINED_ANNOTATION,
)
from experiment_operator.trackingserver.workload import (
    BACKEND_STORE_VERSION_ANNOTATION,
    CREDENTIALS_VERSION_ANNOTATION,
)

pytestmark = pytest.mark.integration

NAME = "trackingserver"
IR, MW = "traefik.io/v1alpha1", "traefik.io/v1alpha1"
SECRET_VALUES = ("mlflow1234", base64.b64encode(b"mlflow1234").decode())


@pytest.fixture(scope="module")
async def operator(operator_kubeconfig: Path) -> AsyncIterator[Operator]:
    async with run_operator(operator_kubeconfig) as op:
        yield op


async def until(check: Check, within: float = 30.0) -> None:
    await eventually(check, within=within)


async def child(kube: AsyncClient, api_version: str, kind: str, ns: str, name: str = NAME) -> Obj:
    obj = await get(kube, api_version, kind, ns, name)
    assert obj is not None, f"{kind} {name} missing"
    return obj


async def exists(kube: AsyncClient, api_version: str, kind: str, ns: str, name: str = NAME) -> bool:
    return await get(kube, api_version, kind, ns, name) is not None


async def gone(kube: AsyncClient, api_version: str, kind: str, ns: str, name: str = NAME) -> bool:
    return await get(kube, api_version, kind, ns, name) is None


def container(deployment: Obj) -> dict[str, Any]:
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


async def test_blog_sample_becomes_ready(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    ts = await create(kube, sample("blog", namespace))
    await until(ready_is(kube, namespace, "True", "Available"), within=60)
    stored = await trackingserver(kube, namespace)
    status = stored["status"]
    assert status["observedGeneration"] == ts["metadata"]["generation"]
    assert status["url"] == "https://mlflow.platform.aiscope.io/platform"
    assert (status["replicas"], status["readyReplicas"]) == (1, 1)
    assert condition(stored, "TLS")["reason"] == "CertificateExpired"  # the seed's cert
    assert condition(stored, "Volume")["reason"] == "NotRequested"

    dep = await child(kube, "apps/v1", "Deployment", namespace)
    assert dep["spec"]["selector"]["matchLabels"] == {"app": "trackingserver", "ts_name": NAME}
    env = {e["name"]: e for e in container(dep)["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == (
        f"{NAME}-s3-credentials"
    )
    tls = await child(kube, "v1", "Secret", namespace)
    assert tls["type"] == "kubernetes.io/tls"
    route = await child(kube, IR, "IngressRoute", namespace)
    assert route["spec"]["entryPoints"] == ["websecure", "web"]
    assert route["spec"]["tls"] == {"secretName": NAME}
    assert (await child(kube, MW, "Middleware", namespace))["spec"]["stripPrefix"] == {
        "prefixes": ["/platform"]
    }
    assert await gone(kube, "v1", "PersistentVolumeClaim", namespace)
    await until(has_event(kube, namespace, "Normal", "Synced"))
    await until(has_event(kube, namespace, "Warning", "CertificateExpired"))
    # No credential in the Deployment, the status or any Event.
    visible = json.dumps([dep, stored["status"], await events(kube, namespace)])
    assert not any(secret in visible for secret in SECRET_VALUES)


async def test_repo_sample_makes_a_volume(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    await create(kube, sample("repo", namespace))

    async def volume_applied() -> bool:
        return condition(await trackingserver(kube, namespace), "Volume").get("reason") == "Applied"

    await until(volume_applied)
    pvc = await child(kube, "v1", "PersistentVolumeClaim", namespace)
    assert pvc["spec"]["storageClassName"] == "ceph-rbd"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50G"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    dep = await child(kube, "apps/v1", "Deployment", namespace)
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert container(dep)["volumeMounts"] == [
        {"name": "trackingserver-sqllite-data", "mountPath": "/mlflow"}
    ]


async def test_volume_and_tls_switched_on_and_off(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    plain = sample("blog", namespace, cert="", key="", url="http://mlflow.example.com/platform")
    ts = await create(kube, plain)
    await until(lambda: _route_entrypoints_are(kube, namespace, ["web"]))
    assert await gone(kube, "v1", "Secret", namespace)
    assert await gone(kube, "v1", "PersistentVolumeClaim", namespace)

    cert, key = tls_pair()
    volume = {"volumeSize": "1Gi", "storageClassName": "standard"}
    await merge_patch(kube, ts, {"spec": {"cert": cert, "key": key, **volume}})
    await until(lambda: _route_entrypoints_are(kube, namespace, ["websecure", "web"]))
    await child(kube, "v1", "Secret", namespace)
    await child(kube, "v1", "PersistentVolumeClaim", namespace)
    # The status is written after the children, so it may lag the route by one request.
    await until(lambda: _tls_reason_is(kube, namespace, "Valid"))

    await merge_patch(
        kube, ts, {"spec": {"cert": "", "key": "", "volumeSize": "", "storageClassName": ""}}
    )
    await until(lambda: _route_entrypoints_are(kube, namespace, ["web"]))
    await until(lambda: gone(kube, "v1", "Secret", namespace))
    await until(lambda: _pvc_gone_or_terminating(kube, namespace))


async def _route_entrypoints_are(kube: AsyncClient, ns: str, entry_points: list[str]) -> bool:
    route = await get(kube, IR, "IngressRoute", ns, NAME)
    return route is not None and route["spec"]["entryPoints"] == entry_points


async def _tls_reason_is(kube: AsyncClient, ns: str, reason: str) -> bool:
    return condition(await trackingserver(kube, ns), "TLS").get("reason") == reason


async def _pvc_gone_or_terminating(kube: AsyncClient, ns: str) -> bool:
    pvc = await get(kube, "v1", "PersistentVolumeClaim", ns, NAME)
    return pvc is None or "deletionTimestamp" in pvc["metadata"]


@pytest.fixture
async def expandable_class(kube: AsyncClient) -> AsyncIterator[str]:
    """A StorageClass that allows expansion, with a 10Gi PV so a claim binds (the API only lets
    bound claims grow)."""
    name = f"expandable-{uuid.uuid4().hex[:6]}"
    base = "apis/storage.k8s.io/v1/storageclasses"
    await kubeapi.request(
        kube,
        "POST",
        base,
        body={
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": name},
            "provisioner": "kubernetes.io/no-provisioner",
            "allowVolumeExpansion": True,
            "volumeBindingMode": "Immediate",
        },
    )
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": name,
            "hostPath": {"path": f"/tmp/{name}"},
        },
    }
    await kubeapi.request(kube, "POST", "api/v1/persistentvolumes", body=pv)
    yield name
    await kubeapi.request(kube, "DELETE", f"api/v1/persistentvolumes/{name}")
    await kubeapi.request(kube, "DELETE", f"{base}/{name}")


async def test_volume_grows_and_forbidden_changes_are_reported(
    operator: Operator, kube: AsyncClient, namespace: str, expandable_class: str
) -> None:
    ts = await create(
        kube,
        sample("repo", namespace, volumeSize="1Gi", storageClassName=expandable_class),
    )

    async def bound() -> bool:
        pvc = await get(kube, "v1", "PersistentVolumeClaim", namespace, NAME)
        return pvc is not None and (pvc.get("status") or {}).get("phase") == "Bound"

    await until(bound)
    pvc = await child(kube, "v1", "PersistentVolumeClaim", namespace)
    await merge_patch(kube, ts, {"spec": {"volumeSize": "2Gi"}})

    async def grown() -> bool:
        pvc = await child(kube, "v1", "PersistentVolumeClaim", namespace)
        return bool(pvc["spec"]["resources"]["requests"]["storage"] == "2Gi")

    await until(grown)
    await merge_patch(kube, ts, {"spec": {"volumeSize": "1Gi"}})  # shrinking is forbidden
    await until(ready_is(kube, namespace, "False", "VolumeUpdateForbidden"))
    stored = await trackingserver(kube, namespace)
    assert condition(stored, "Volume")["reason"] == "VolumeUpdateForbidden"
    assert "can not be less than" in condition(stored, "Volume")["message"]
    await until(has_event(kube, namespace, "Warning", "VolumeUpdateForbidden"))
    kept = await child(kube, "v1", "PersistentVolumeClaim", namespace)
    assert kept["metadata"]["uid"] == pvc["metadata"]["uid"]  # never "fixed" by deleting
    assert kept["spec"]["resources"]["requests"]["storage"] == "2Gi"
    # The rest of the server is still managed: the Deployment follows spec changes.
    await merge_patch(kube, ts, {"spec": {"image": "mlflow:new"}})

    async def image_updated() -> bool:
        dep = await child(kube, "apps/v1", "Deployment", namespace)
        return bool(container(dep)["image"] == "mlflow:new")

    await until(image_updated)


async def test_retain_policy_keeps_the_volume(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    ts = await create(kube, sample("repo", namespace, volumeRetentionPolicy="Retain"))

    async def finalizer_added() -> bool:
        stored = await trackingserver(kube, namespace)
        return RETAIN_FINALIZER in (stored["metadata"].get("finalizers") or [])

    await until(finalizer_added)
    # The finalizer goes on before the claim is created: wait for the claim too.
    await until(lambda: exists(kube, "v1", "PersistentVolumeClaim", namespace))
    pvc = await child(kube, "v1", "PersistentVolumeClaim", namespace)

    # Volume fields cleared: the claim is released, not deleted; the finalizer goes.
    await merge_patch(kube, ts, {"spec": {"volumeSize": "", "storageClassName": ""}})

    async def released() -> bool:
        claim = await child(kube, "v1", "PersistentVolumeClaim", namespace)
        stored = await trackingserver(kube, namespace)
        return not claim["metadata"].get("ownerReferences") and RETAIN_FINALIZER not in (
            stored["metadata"].get("finalizers") or []
        )

    await until(released)
    claim = await child(kube, "v1", "PersistentVolumeClaim", namespace)
    assert claim["metadata"]["uid"] == pvc["metadata"]["uid"]
    assert claim["metadata"]["annotations"][RETAINED_ANNOTATION] == NAME

    # Volume fields set again: the released claim is adopted back.
    await merge_patch(kube, ts, {"spec": {"volumeSize": "50G", "storageClassName": "ceph-rbd"}})

    async def adopted() -> bool:
        claim = await child(kube, "v1", "PersistentVolumeClaim", namespace)
        refs = claim["metadata"].get("ownerReferences") or []
        return [r["uid"] for r in refs] == [ts["metadata"]["uid"]]

    await until(adopted)
    await until(finalizer_added)

    # CR deleted: the finalizer releases the claim first; the other children are collected.
    await delete(kube, ts["apiVersion"], "TrackingServer", namespace, NAME)
    await until(lambda: gone(kube, ts["apiVersion"], "TrackingServer", namespace))
    await until(lambda: gone(kube, "apps/v1", "Deployment", namespace), within=60)
    claim = await child(kube, "v1", "PersistentVolumeClaim", namespace)
    assert claim["metadata"]["uid"] == pvc["metadata"]["uid"]
    assert not claim["metadata"].get("ownerReferences")
    assert "deletionTimestamp" not in claim["metadata"]


async def test_deletion_removes_every_child(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    ts = await create(kube, sample("repo", namespace))
    await until(lambda: _exists(kube, "v1", "PersistentVolumeClaim", namespace))
    await until(lambda: _exists(kube, MW, "Middleware", namespace))
    await delete(kube, ts["apiVersion"], "TrackingServer", namespace, NAME)
    kinds = [
        ("apps/v1", "Deployment", NAME),
        ("v1", "Service", NAME),
        ("v1", "Secret", NAME),
        ("v1", "Secret", f"{NAME}-s3-credentials"),
        (IR, "IngressRoute", NAME),
        (MW, "Middleware", NAME),
    ]

    async def all_gone() -> bool:
        return all([await gone(kube, a, k, namespace, n) for a, k, n in kinds])

    await until(all_gone, within=60)
    await until(lambda: _pvc_gone_or_terminating(kube, namespace), within=60)


async def _exists(kube: AsyncClient, api_version: str, kind: str, ns: str) -> bool:
    return await get(kube, api_version, kind, ns, NAME) is not None


async def test_users_tls_secret_is_read_and_never_modified(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    ts = await create(kube, sample("blog", namespace, cert="", key=""))

    await until(lambda: _tls_reason_is(kube, namespace, "SecretNotFound"))
    await until(has_event(kube, namespace, "Warning", "SecretNotFound"))
    assert await _route_entrypoints_are(kube, namespace, ["web"])

    cert, key = tls_pair("mlflow.platform.aiscope.io")
    secret = await create(
        kube,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": NAME, "namespace": namespace},
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": base64.b64encode(cert.encode()).decode(),
                "tls.key": base64.b64encode(key.encode()).decode(),
            },
        },
        field_manager="cert-manager",
    )
    # Not in the operator's cache (no label of ours): found by the periodic recheck.
    await until(lambda: _route_entrypoints_are(kube, namespace, ["websecure", "web"]))
    await until(lambda: _tls_reason_is(kube, namespace, "UserSecret"))
    await until(ready_is(kube, namespace, "True"), within=60)
    assert await child(kube, "v1", "Secret", namespace) == secret

    await delete(kube, ts["apiVersion"], "TrackingServer", namespace, NAME)
    await until(lambda: gone(kube, "apps/v1", "Deployment", namespace), within=60)
    assert await child(kube, "v1", "Secret", namespace) == secret


async def test_foreign_objects_are_left_untouched(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    labels = {"app": "someone-else"}
    foreign = [
        await create(
            kube,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
                "spec": {"selector": labels, "ports": [{"port": 80}]},
            },
        ),
        await create(
            kube,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": NAME, "namespace": namespace},
                "stringData": {"note": "mine"},
            },
        ),
        await create(
            kube,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
                    },
                },
            },
        ),
    ]
    await create(kube, sample("blog", namespace))
    await until(ready_is(kube, namespace, "False", "ForeignObject"))
    message = condition(await trackingserver(kube, namespace))["message"]
    for kind in ("Service", "Secret", "Deployment"):
        assert f"{kind} {NAME}" in message
    await until(has_event(kube, namespace, "Warning", "ForeignObject"))
    # The other children are made all the same.
    await child(kube, "v1", "Secret", namespace, f"{NAME}-s3-credentials")
    await child(kube, IR, "IngressRoute", namespace)
    for obj in foreign:
        now = await child(kube, obj["apiVersion"], obj["kind"], namespace)
        if obj["kind"] == "Deployment":  # the Deployment controller writes its status
            now = {**now, "status": obj.get("status")}
            now["metadata"] = {k: v for k, v in now["metadata"].items() if k != "managedFields"}
            now["metadata"]["annotations"] = obj["metadata"].get("annotations")
            assert now["spec"] == obj["spec"]
            assert now["metadata"]["labels"] == labels
            assert now["metadata"].get("ownerReferences") is None
        else:
            assert now == obj, f"{obj['kind']} was modified"


async def test_no_pod_mounts_a_foreign_claim(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    """A claim of someone else under the PVC's name holds their data: the server gets no
    replicas until the name is free, then its own claim and its size."""
    claim = await create(
        kube,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": NAME, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "other",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    ts = await create(kube, sample("repo", namespace))

    async def replicas(count: int) -> bool:
        dep = await get(kube, "apps/v1", "Deployment", namespace, NAME)
        return dep is not None and dep["spec"]["replicas"] == count

    await until(ready_is(kube, namespace, "False", "ForeignObject"))
    assert condition(await trackingserver(kube, namespace), "Volume")["reason"] == "ForeignObject"
    await until(lambda: replicas(0))
    await delete(kube, "v1", "PersistentVolumeClaim", namespace, NAME)

    async def ours() -> bool:
        pvc = await get(kube, "v1", "PersistentVolumeClaim", namespace, NAME)
        return pvc is not None and pvc["metadata"]["uid"] != claim["metadata"]["uid"]

    await until(ours)
    await until(lambda: replicas(ts["spec"].get("size", 1)))


async def test_drift_is_put_back(operator: Operator, kube: AsyncClient, namespace: str) -> None:
    await create(kube, sample("blog", namespace))
    await until(ready_is(kube, namespace, "True"), within=60)
    dep = await child(kube, "apps/v1", "Deployment", namespace)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "mlflow", "image": "evil"}]}}}}
    await kubeapi.request(
        kube,
        "PATCH",
        f"apis/apps/v1/namespaces/{namespace}/deployments/{NAME}",
        body=patch,
        content_type="application/strategic-merge-patch+json",
    )

    async def image_restored() -> bool:
        now = await child(kube, "apps/v1", "Deployment", namespace)
        return bool(container(now)["image"] == container(dep)["image"])

    await until(image_restored)
    svc = await child(kube, "v1", "Service", namespace)
    await delete(kube, "v1", "Service", namespace, NAME)

    async def recreated() -> bool:
        now = await get(kube, "v1", "Service", namespace, NAME)
        return now is not None and now["metadata"]["uid"] != svc["metadata"]["uid"]

    await until(recreated)


@pytest.mark.parametrize(
    ("cert", "key", "reason"),
    [
        ("not a certificate", "VALID", "InvalidCertificate"),
        ("VALID", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
         "InvalidPrivateKey"),
        ("VALID", "OTHER", "CertificateKeyMismatch"),
    ],
)  # fmt: skip
async def test_invalid_pem_is_reported(
    operator: Operator, kube: AsyncClient, namespace: str, cert: str, key: str, reason: str
) -> None:
    valid_cert, valid_key = tls_pair()
    other_key = tls_pair()[1]
    values = {"VALID": (valid_cert, valid_key), "OTHER": ("", other_key)}
    cert = values[cert][0] if cert in values else cert
    key = values[key][1] if key in values else key
    await create(kube, sample("blog", namespace, cert=cert, key=key))
    await until(ready_is(kube, namespace, "False", reason))
    stored = await trackingserver(kube, namespace)
    assert condition(stored, "TLS")["reason"] == reason
    assert "PRIVATE KEY" not in json.dumps(stored["status"])
    await until(has_event(kube, namespace, "Warning", reason))
    assert await gone(kube, "v1", "Secret", namespace)  # nothing invalid is written
    await child(kube, "apps/v1", "Deployment", namespace)  # the rest is


async def test_url_change_removes_routing_no_longer_needed(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    ts = await create(kube, sample("blog", namespace))
    await until(lambda: _exists(kube, MW, "Middleware", namespace))
    await merge_patch(kube, ts, {"spec": {"url": "https://mlflow.example.com"}})
    await until(lambda: gone(kube, MW, "Middleware", namespace))
    route = await child(kube, IR, "IngressRoute", namespace)
    assert [r["match"] for r in route["spec"]["routes"]] == ["Host(`mlflow.example.com`)"]
    await until(lambda: _status_url_is(kube, namespace, "https://mlflow.example.com"))


async def _status_url_is(kube: AsyncClient, ns: str, url: str) -> bool:
    return bool((await trackingserver(kube, ns)).get("status", {}).get("url") == url)


async def test_incomplete_volume_spec_is_explained(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    await create(kube, sample("blog", namespace, volumeSize="5Gi", storageClassName=""))
    await until(ready_is(kube, namespace, "True"), within=60)
    volume = condition(await trackingserver(kube, namespace), "Volume")
    assert volume["reason"] == "IncompleteVolumeSpec"
    assert "storageClassName" in volume["message"]
    await until(has_event(kube, namespace, "Warning", "IncompleteVolumeSpec"))
    assert await gone(kube, "v1", "PersistentVolumeClaim", namespace)


async def test_referenced_credentials_secret(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    ref = {"name": "s3", "accessKeyIDKey": "id", "secretAccessKeyKey": "key"}
    cr = sample("blog", namespace, aws_access_key=None, aws_secret_key=None)
    cr["spec"]["s3CredentialsSecretRef"] = ref
    await create(kube, cr)
    await until(ready_is(kube, namespace, "False", "CredentialsSecretNotFound"))
    await until(has_event(kube, namespace, "Warning", "CredentialsSecretNotFound"))
    secret = await create(
        kube,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3", "namespace": namespace},
            "stringData": {"id": "a", "key": "b"},
        },
    )
    await until(ready_is(kube, namespace, "True"), within=60)
    dep = await child(kube, "apps/v1", "Deployment", namespace)
    env = {e["name"]: e for e in container(dep)["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "s3", "key": "id"}
    assert await child(kube, "v1", "Secret", namespace, "s3") == secret
    assert await gone(kube, "v1", "Secret", namespace, f"{NAME}-s3-credentials")


async def test_changed_credentials_roll_the_pods(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    ts = await create(kube, sample("blog", namespace))

    async def version() -> str | None:
        dep = await get(kube, "apps/v1", "Deployment", namespace, NAME)
        annotations = (dep or {}).get("spec", {}).get("template", {}).get("metadata", {})
        return (annotations.get("annotations") or {}).get(CREDENTIALS_VERSION_ANNOTATION)

    async def has_version() -> bool:
        return await version() is not None

    await until(has_version)
    before = await version()
    await merge_patch(kube, ts, {"spec": {"aws_secret_key": "rotated"}})

    async def rolled() -> bool:
        secret = await child(kube, "v1", "Secret", namespace, f"{NAME}-s3-credentials")
        current = await version()
        return current != before and current == secret["metadata"]["resourceVersion"]

    await until(rolled)


async def test_backend_uri_with_password_goes_through_a_secret(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    cr = sample("blog", namespace)
    cr["spec"]["backend_uri"] = "postgresql://mlflow:s3cr3t@db.example/mlflow"
    ts = await create(kube, cr)
    store = f"{NAME}-backend-store"

    async def backend_env() -> dict[str, Any]:
        dep = await child(kube, "apps/v1", "Deployment", namespace)
        env: dict[str, Any] = {e["name"]: e for e in container(dep)["env"]}["BACKEND_URI"]
        return env

    async def annotation() -> str | None:
        dep = await child(kube, "apps/v1", "Deployment", namespace)
        return (dep["spec"]["template"]["metadata"].get("annotations") or {}).get(
            BACKEND_STORE_VERSION_ANNOTATION
        )

    async def rolled_to(uri: str, before: str | None) -> bool:
        secret = await get(kube, "v1", "Secret", namespace, store)
        if secret is None or base64.b64decode(secret["data"]["BACKEND_URI"]).decode() != uri:
            return False
        # Children are applied concurrently: the Secret may exist before the Deployment.
        if await get(kube, "apps/v1", "Deployment", namespace, NAME) is None:
            return False
        current = await annotation()
        return current != before and current == secret["metadata"]["resourceVersion"]

    await until(lambda: rolled_to(cr["spec"]["backend_uri"], None))
    assert (await backend_env())["valueFrom"] == {
        "secretKeyRef": {"name": store, "key": "BACKEND_URI"}
    }
    dep = await child(kube, "apps/v1", "Deployment", namespace)
    assert "s3cr3t" not in json.dumps(dep)

    before = await annotation()
    rotated = "postgresql://mlflow:rotated@db.example/mlflow"
    await merge_patch(kube, ts, {"spec": {"backend_uri": rotated}})
    await until(lambda: rolled_to(rotated, before))

    plain = "sqlite:////mlflow/mlflow.db"
    await merge_patch(kube, ts, {"spec": {"backend_uri": plain}})

    async def plain_again() -> bool:
        return await gone(kube, "v1", "Secret", namespace, store) and (
            await backend_env() == {"name": "BACKEND_URI", "value": plain}
        )

    await until(plain_again)
    assert await annotation() is None


async def test_original_controllers_finalizer_is_removed(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    cr = sample("blog", namespace)
    cr["metadata"]["finalizers"] = [LEGACY_FINALIZER]
    ts = await create(kube, cr)

    async def removed() -> bool:
        stored = await trackingserver(kube, namespace)
        return LEGACY_FINALIZER not in (stored["metadata"].get("finalizers") or [])

    await until(removed)
    await delete(kube, ts["apiVersion"], "TrackingServer", namespace, NAME)
    await until(lambda: gone(kube, ts["apiVersion"], "TrackingServer", namespace))


async def test_credentials_secret_without_a_named_key(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    """Ready=False naming the missing key (never a value) instead of failing Pods."""
    ref = {"name": "s3", "accessKeyIDKey": "id", "secretAccessKeyKey": "key"}
    cr = sample("blog", namespace, aws_access_key=None, aws_secret_key=None)
    cr["spec"]["s3CredentialsSecretRef"] = ref
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s3", "namespace": namespace},
        "stringData": {"id": "AKIAEXAMPLE"},
    }
    await create(kube, secret)
    await create(kube, cr)
    await until(ready_is(kube, namespace, "False", "CredentialsSecretKeyMissing"))
    ready = condition(await trackingserver(kube, namespace))
    assert "has no key key (s3CredentialsSecretRef.secretAccessKeyKey)" in ready["message"]
    await until(has_event(kube, namespace, "Warning", "CredentialsSecretKeyMissing"))
    visible = json.dumps([ready, await events(kube, namespace)])
    assert "AKIAEXAMPLE" not in visible
    await merge_patch(
        kube, {**secret, "metadata": secret["metadata"]}, {"stringData": {"key": "x"}}
    )
    await until(ready_is(kube, namespace, "True"), within=60)


async def test_unschedulable_pods_explain_and_recover(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    """The real scheduler reports the Pod unschedulable; fixing nodeSelector clears it."""
    ts = await create(
        kube, sample("blog", namespace, image=None, nodeSelector={"node.example/gpu": "h100"})
    )
    await until(ready_is(kube, namespace, "False", "Unschedulable"), within=60)
    ready = condition(await trackingserver(kube, namespace))
    assert "didn't match Pod's node affinity/selector" in ready["message"]
    await until(has_event(kube, namespace, "Warning", "Unschedulable"))
    await merge_patch(kube, ts, {"spec": {"nodeSelector": None}})
    await until(ready_is(kube, namespace, "True", "Available"), within=90)


async def _restricted(kube: AsyncClient, namespace: str) -> None:
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    await merge_patch(kube, ns, {"metadata": {"labels": labels}})


async def test_operator_started_server_is_admitted_under_restricted(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    """Pod Security `restricted` admits the default server's Pods (kwok then runs them)."""
    await _restricted(kube, namespace)
    await create(kube, sample("blog", namespace, image=None, url="https://m.example/team-a"))
    await until(ready_is(kube, namespace, "True", "Available"), within=90)
    dep = await child(kube, "apps/v1", "Deployment", namespace)
    assert container(dep)["command"][:2] == ["mlflow", "server"]


async def test_root_image_is_refused_under_restricted_and_says_so(
    operator: Operator, kube: AsyncClient, namespace: str
) -> None:
    """The seed's image runs as root with its own command: restricted refuses its Pods, and
    the status names the violation (the ReplicaSet's FailedCreate)."""
    await _restricted(kube, namespace)
    await create(kube, sample("blog", namespace))
    await until(ready_is(kube, namespace, "False", "FailedCreate"), within=90)
    ready = condition(await trackingserver(kube, namespace))
    assert 'violates PodSecurity "restricted' in ready["message"]
