"""Operators started and stopped within a test (as the ServiceAccount, scoped to the test's
namespace): no writes when idle or restarted, option changes, and taking over what the original
controller created."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient
from prometheus_client import REGISTRY

from experiment_lab.cluster import Kubectl
from experiment_lab.crds import crds_removed
from experiment_lab.objects import (
    condition,
    create,
    events,
    get,
    merge_patch,
    sample,
    trackingserver,
)
from experiment_lab.operator import run_operator
from experiment_lab.wait import eventually
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.kubeapi import KindInfo, Obj
from experiment_operator.trackingserver.children import ChildOptions, IngressController
from experiment_operator.trackingserver.lifecycle import LEGACY_FINALIZER

pytestmark = pytest.mark.integration

NAME = "trackingserver"
KINDS = [
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "Secret"),
    ("v1", "PersistentVolumeClaim"),
    ("networking.k8s.io/v1", "Ingress"),
    ("traefik.io/v1alpha1", "IngressRoute"),
    ("traefik.io/v1alpha1", "Middleware"),
    ("traefik.containo.us/v1alpha1", "IngressRoute"),
    ("traefik.containo.us/v1alpha1", "Middleware"),
    ("experiment.aiscope/v1alpha2", "TrackingServer"),
    ("v1", "Event"),
]


def reconciles(controller: str) -> float:
    value = REGISTRY.get_sample_value(
        "controller_runtime_reconcile_total", {"controller": controller, "result": "success"}
    )
    return value or 0.0


async def wait_reconciles(controller: str, count: int, within: float = 30.0) -> None:
    target = reconciles(controller) + count
    await eventually(lambda: reconciles(controller) >= target, within=within)


async def resource_versions(kube: AsyncClient, ns: str) -> dict[tuple[str, str, str], str]:
    """(apiVersion, kind, name) → resourceVersion of every object of our kinds in `ns`."""
    versions: dict[tuple[str, str, str], str] = {}
    for api_version, kind in KINDS:
        info = KindInfo.for_object({"apiVersion": api_version, "kind": kind})
        for obj in (await kubeapi.list_all(kube, info, ns, None))[0]:
            meta = obj["metadata"]
            versions[(api_version, kind, meta["name"])] = meta["resourceVersion"]
    return versions


async def ready(kube: AsyncClient, ns: str) -> bool:
    return condition(await trackingserver(kube, ns)).get("status") == "True"


async def test_no_writes_when_nothing_changed_and_on_restart(
    operator_kubeconfig: Path, kube: AsyncClient, namespace: str
) -> None:
    async with run_operator(
        operator_kubeconfig, namespaces=[namespace], resync_period=0.3, name="ts-idle"
    ) as op:
        await create(kube, sample("blog", namespace))
        await eventually(lambda: ready(kube, namespace), within=60)
        await wait_reconciles("ts-idle", 5)  # let the Deployment's last status updates settle
        mark = len(op.requests)
        before = await resource_versions(kube, namespace)
        await wait_reconciles("ts-idle", 5)  # forced reconciles (resync) of a converged CR
        assert op.writes(mark) == []
        assert await resource_versions(kube, namespace) == before

    async with run_operator(
        operator_kubeconfig, namespaces=[namespace], resync_period=0.3, name="ts-restart"
    ) as op:
        await wait_reconciles("ts-restart", 3)
        assert op.writes() == [], "a restart wrote"
        verbs = {method for method, _, _ in op.requests}
        assert verbs == {"GET"}  # lists and watches only
    assert await resource_versions(kube, namespace) == before


def child_requests(requests: list[tuple[str, str, int]], ns: str) -> list[tuple[str, str, int]]:
    """The requests on children (not on the TrackingServer, Events or discovery)."""
    return [
        r for r in requests
        if f"/namespaces/{ns}/" in r[1] and "/trackingservers" not in r[1]
        and "/events" not in r[1]
    ]  # fmt: skip


async def test_a_new_server_is_written_without_reading_first(
    operator_kubeconfig: Path, kube: AsyncClient, namespace: str
) -> None:
    """Each child is created by one create-only apply, with no read before it (a read follows
    only a refused create); an image change is one Deployment apply."""
    async with run_operator(operator_kubeconfig, namespaces=[namespace], name="ts-new") as op:
        ts = await create(kube, sample("blog", namespace))
        await eventually(lambda: ready(kube, namespace), within=60)
        children = child_requests(op.requests, namespace)
        for index, (method, path, _) in enumerate(children):
            name = path.rpartition("/")[2]
            if method == "GET" and (name == NAME or name.startswith(f"{NAME}-")):  # not a list
                assert ("PATCH", path, 409) in children[:index], f"read before write: {path}"
        applied = [path for method, path, code in children if method == "PATCH" and code < 300]
        assert len(applied) == len(set(applied)), "each child is written once"

        mark = len(op.requests)
        await merge_patch(kube, ts, {"spec": {"image": "mlflow:next"}})

        async def rolled_out() -> bool:
            stored = await trackingserver(kube, namespace)
            status = stored.get("status") or {}
            return bool(ready_condition_current(stored) and status.get("readyReplicas") == 1)

        await eventually(rolled_out, within=60)
        # One apply of the Deployment, no read. (How many status writes and Events follow
        # depends on how long the rollout takes: bench/ counts them.)
        changed = child_requests(op.requests[mark:], namespace)
        assert [(m, p) for m, p, _ in changed if "/deployments/" in p] == [
            ("PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/{NAME}")
        ]


def ready_condition_current(stored: Obj) -> bool:
    ready_cond = condition(stored)
    return bool(
        ready_cond.get("status") == "True"
        and ready_cond.get("observedGeneration") == stored["metadata"]["generation"]
    )


async def routing(kube: AsyncClient, ns: str) -> set[tuple[str, str]]:
    """(kind/apiVersion, name) of the routing objects in the namespace."""
    found = set()
    for api_version, kind in KINDS:
        if kind in ("IngressRoute", "Middleware", "Ingress"):
            info = KindInfo.for_object({"apiVersion": api_version, "kind": kind})
            for obj in (await kubeapi.list_all(kube, info, ns, None))[0]:
                found.add((f"{kind}/{api_version}", obj["metadata"]["name"]))
    return found


async def test_switching_the_ingress_controller_removes_what_is_not_needed(
    operator_kubeconfig: Path, kube: AsyncClient, namespace: str
) -> None:
    traefik = {
        ("IngressRoute/traefik.io/v1alpha1", NAME),
        ("Middleware/traefik.io/v1alpha1", NAME),
        ("Middleware/traefik.io/v1alpha1", f"{NAME}-redirect"),
    }
    nginx = {
        ("Ingress/networking.k8s.io/v1", NAME),
        ("Ingress/networking.k8s.io/v1", f"{NAME}-static"),
        ("Ingress/networking.k8s.io/v1", f"{NAME}-redirect"),
    }
    await create(kube, sample("blog", namespace))
    for controller, expected in [
        (IngressController.TRAEFIK, traefik),
        (IngressController.NGINX, nginx),
        (IngressController.NONE, set()),
    ]:
        options = ChildOptions(ingress_controller=controller)
        async with run_operator(operator_kubeconfig, namespaces=[namespace], options=options):

            async def switched(expected: set[tuple[str, str]] = expected) -> bool:
                return await routing(kube, namespace) == expected

            await eventually(switched)
    ingress = await get(kube, "networking.k8s.io/v1", "Ingress", namespace, NAME)
    assert ingress is None


async def test_legacy_traefik_group(
    operator_kubeconfig: Path, kube: AsyncClient, namespace: str, kubectl: Kubectl
) -> None:
    """A cluster that only serves the original controller's `traefik.containo.us` gets that
    group; once Traefik v3's CRDs are installed (no operator restart), the next reconcile moves
    to `traefik.io` and deletes the legacy objects."""
    legacy = "traefik.containo.us/v1alpha1"
    names = (("IngressRoute", NAME), ("Middleware", NAME), ("Middleware", f"{NAME}-redirect"))
    with crds_removed(kubectl, "ingressroutes.traefik.io", "middlewares.traefik.io") as restore:
        options = ChildOptions(ingress_controller=IngressController.TRAEFIK)
        async with run_operator(operator_kubeconfig, namespaces=[namespace], options=options):
            ts = await create(kube, sample("blog", namespace))
            await eventually(lambda: ready(kube, namespace), within=60)
            for kind, name in names:
                assert await get(kube, legacy, kind, namespace, name) is not None, kind
            route = await get(kube, legacy, "IngressRoute", namespace, NAME)
            assert route is not None
            assert route["spec"]["tls"] == {"secretName": NAME}

            restore()
            await merge_patch(kube, ts, {"spec": {"size": 2}})  # any change reconciles
            current = {(f"{kind}/traefik.io/v1alpha1", name) for kind, name in names}

            async def moved() -> bool:
                return await routing(kube, namespace) == current

            await eventually(moved, within=60)


SEED_MANAGER = "controller-manager.exe"


def seed_children(ts: Obj) -> list[Obj]:
    """The children as the original Go controller created them: plain create calls, its
    labels only, credentials as plaintext env values, defaulted strategy, legacy Traefik group."""
    name, spec = ts["metadata"]["name"], ts["spec"]
    ref = {
        "apiVersion": ts["apiVersion"],
        "kind": ts["kind"],
        "name": name,
        "uid": ts["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }

    def meta(**extra: Any) -> Obj:
        return {"name": name, "namespace": ts["metadata"]["namespace"], "ownerReferences": [ref]}

    labels = {"app": "trackingserver", "ts_name": name}
    env = [
        {"name": "MLFLOW_TRACKING_URI", "value": spec["url"]},
        {"name": "MLFLOW_S3_ENDPOINT_URL", "value": spec["s3_endpoint_url"]},
        {"name": "AWS_ACCESS_KEY_ID", "value": spec["aws_access_key"]},
        {"name": "AWS_SECRET_ACCESS_KEY", "value": spec["aws_secret_key"]},
        {"name": "ARTIFACT_ROOT", "value": spec["artifact_root"]},
        {"name": "BACKEND_URI", "value": spec["backend_uri"]},
    ]
    volume = {"name": "trackingserver-sqllite-data", "persistentVolumeClaim": {"claimName": name}}
    host_rule = "Host(`mlflow.platform.aiscope.io`)"

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": meta(),
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": spec["storageClassName"],
                "resources": {"requests": {"storage": spec["volumeSize"]}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta(),
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(spec["cert"]), "tls.key": b64(spec["key"])},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(),
            "spec": {
                "replicas": spec["size"],
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "mlflow",
                                "image": spec["image"],
                                "imagePullPolicy": "IfNotPresent",
                                "ports": [{"containerPort": 5000, "name": "server"}],
                                "env": env,
                                "volumeMounts": [{"name": volume["name"], "mountPath": "/mlflow"}],
                            }
                        ],
                        "volumes": [volume],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(),
            "spec": {
                "selector": labels,
                "ports": [{"name": "server", "port": 5000, "targetPort": 5000}],
            },
        },
        {
            "apiVersion": "traefik.containo.us/v1alpha1",
            "kind": "Middleware",
            "metadata": meta(),
            "spec": {"stripPrefix": {"prefixes": ["/platform"]}},
        },
        {
            "apiVersion": "traefik.containo.us/v1alpha1",
            "kind": "IngressRoute",
            "metadata": meta(),
            "spec": {
                "entryPoints": ["websecure", "web"],
                "routes": [
                    {
                        "kind": "Rule",
                        "match": f"{host_rule} && PathPrefix(`/platform`)",
                        "middlewares": [{"name": name}],
                        "services": [{"name": name, "port": 5000}],
                    }
                ],
                "tls": {"secretName": name},
            },
        },
    ]


async def test_children_of_the_original_controller_are_taken_over_in_place(
    operator_kubeconfig: Path, kube: AsyncClient, namespace: str
) -> None:
    cr = sample("repo", namespace)
    cr["metadata"]["finalizers"] = [LEGACY_FINALIZER]
    ts = await create(kube, cr, field_manager="kubectl")
    seeded = {}
    for obj in seed_children(ts):
        made = await create(kube, obj, field_manager=SEED_MANAGER)
        seeded[(obj["apiVersion"], obj["kind"])] = made

    async with run_operator(operator_kubeconfig, namespaces=[namespace]):

        async def finalizer_removed() -> bool:
            stored = await trackingserver(kube, namespace)
            return LEGACY_FINALIZER not in (stored["metadata"].get("finalizers") or [])

        await eventually(finalizer_removed)
        for (api_version, kind), made in seeded.items():
            now = await get(kube, api_version, kind, namespace, NAME)
            if api_version.startswith("traefik.containo.us"):  # replaced by traefik.io
                assert now is None or "deletionTimestamp" in now["metadata"], kind
                continue
            assert now is not None, kind
            assert now["metadata"]["uid"] == made["metadata"]["uid"], f"{kind} was replaced"
            assert now["metadata"]["labels"]["app.kubernetes.io/managed-by"] == (
                "experiment-operator"
            )
        dep = await get(kube, "apps/v1", "Deployment", namespace, NAME)
        assert dep is not None
        assert dep["spec"]["strategy"] == {"type": "Recreate"}
        assert dep["spec"]["selector"] == seeded[("apps/v1", "Deployment")]["spec"]["selector"]
        env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert set(env[key]) == {"name", "valueFrom"}
        assert "mlflow1234" not in json.dumps(dep)
        for kind in ("IngressRoute", "Middleware"):
            assert await get(kube, "traefik.io/v1alpha1", kind, namespace, NAME) is not None
        assert all(e["reason"] != "FailedSync" for e in await events(kube, namespace))
