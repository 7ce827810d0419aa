"""The local control plane behaves like a real cluster where a fake would not."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from experiment_lab.cluster import Kubectl, third_party_crds_dir
from experiment_lab.wait import eventually

pytestmark = pytest.mark.integration


async def test_deployment_pod_becomes_ready(kubectl: Kubectl, namespace: str) -> None:
    manifest = textwrap.dedent(
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: 1
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec: {containers: [{name: web, image: example.invalid/web:1}]}
        """
    )
    kubectl("apply", "-n", namespace, "-f", "-", input=manifest)

    def available() -> bool:
        out = kubectl("get", "deploy", "web", "-n", namespace, "-o", "json").stdout
        status: dict[str, object] = json.loads(out).get("status", {})
        return status.get("availableReplicas") == 1

    await eventually(available, within=60)
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    ready = [c["status"] for c in pods[0]["status"]["conditions"] if c["type"] == "Ready"]
    assert ready == ["True"]


WIDGET_CRD = textwrap.dedent(
    """
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: widgets.fidelity.test}
    spec:
      group: fidelity.test
      names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
      scope: Namespaced
      versions:
      - name: v1
        served: true
        storage: true
        subresources: {status: {}}
        additionalPrinterColumns:
        - {name: COLOUR, type: string, jsonPath: .spec.colour}
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec: {type: object, properties: {colour: {type: string}}}
              status: {type: object, properties: {phase: {type: string}}}
    """
)


async def test_crd_status_subresource_and_printer_columns(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-f", "-", input=WIDGET_CRD)
    kubectl("wait", "--for=condition=Established", "crd/widgets.fidelity.test", "--timeout=30s")
    widget = {
        "apiVersion": "fidelity.test/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": namespace},
        "spec": {"colour": "teal"},
    }
    kubectl("apply", "-f", "-", input=json.dumps(widget))
    table = kubectl("get", "widgets", "-n", namespace).stdout
    assert "COLOUR" in table.splitlines()[0]
    assert "teal" in table

    def get() -> Any:
        return json.loads(kubectl("get", "widget", "w", "-n", namespace, "-o", "json").stdout)

    def patch(body: dict[str, Any], *flags: str) -> None:
        kubectl("patch", "widget", "w", "-n", namespace, "--type=merge", "-p", json.dumps(body),
                *flags)  # fmt: skip

    patch({"status": {"phase": "Done"}, "spec": {"colour": "red"}}, "--subresource=status")
    after_status = get()
    assert after_status["spec"] == {"colour": "teal"}, "a status write must not change spec"
    assert after_status["status"] == {"phase": "Done"}
    assert after_status["metadata"]["generation"] == 1

    patch({"spec": {"colour": "red"}})
    assert get()["metadata"]["generation"] == 2
    patch({"metadata": {"labels": {"x": "y"}}})
    assert get()["metadata"]["generation"] == 2, "metadata changes leave generation alone"


async def test_stale_resource_version_conflicts(kube: AsyncClient, namespace: str) -> None:
    created = await kube.create(
        ConfigMap(metadata=ObjectMeta(name="cm", namespace=namespace), data={"a": "1"})
    )
    await kube.patch(ConfigMap, "cm", {"data": {"a": "2"}}, namespace=namespace)
    created.data = {"a": "3"}
    with pytest.raises(ApiError) as err:
        await kube.replace(created)
    assert err.value.status.code == 409


async def test_server_side_apply_is_idempotent_and_detects_conflicts(
    new_client: Callable[[], AsyncClient], namespace: str
) -> None:
    first, second = new_client(), new_client()
    try:
        desired = ConfigMap(metadata=ObjectMeta(name="ssa", namespace=namespace), data={"k": "v"})
        applied = await first.apply(desired, field_manager="one")
        again = await first.apply(desired, field_manager="one")
        assert again.metadata is not None
        assert applied.metadata is not None
        assert again.metadata.resourceVersion == applied.metadata.resourceVersion

        rival = ConfigMap(metadata=ObjectMeta(name="ssa", namespace=namespace), data={"k": "other"})
        with pytest.raises(ApiError) as err:
            await second.apply(rival, field_manager="two")
        assert err.value.status.code == 409
    finally:
        await first.close()
        await second.close()


async def test_garbage_collector_deletes_owned_children(kube: AsyncClient, namespace: str) -> None:
    owner = await kube.create(ConfigMap(metadata=ObjectMeta(name="owner", namespace=namespace)))
    assert owner.metadata is not None
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    await kube.create(
        ConfigMap(metadata=ObjectMeta(name="child", namespace=namespace, ownerReferences=[ref]))  # type: ignore[list-item]
    )
    await kube.delete(ConfigMap, "owner", namespace=namespace)

    async def child_gone() -> bool:
        try:
            await kube.get(ConfigMap, "child", namespace=namespace)
        except ApiError as err:
            return err.status.code == 404
        return False

    await eventually(child_gone, within=60)


def ingress_route(name: str, namespace: str, match: object) -> str:
    return json.dumps(
        {
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "IngressRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "entryPoints": ["web"],
                "routes": [
                    {"kind": "Rule", "match": match, "services": [{"name": "s", "port": 80}]}
                ],
            },
        }
    )


async def test_third_party_crds_validate(
    kubectl: Kubectl, kube: AsyncClient, namespace: str
) -> None:
    names = kubectl("get", "crd", "-o", "name").stdout
    for crd in (
        "ingressroutes.traefik.io",
        "middlewares.traefik.io",
        "ingressroutes.traefik.containo.us",
        "httproutes.gateway.networking.k8s.io",
    ):
        assert f"customresourcedefinition.apiextensions.k8s.io/{crd}" in names
    assert third_party_crds_dir().is_dir()

    kubectl("apply", "-f", "-", input=ingress_route("good", namespace, "Host(`a.example`)"))
    route = create_namespaced_resource("traefik.io", "v1alpha1", "IngressRoute", "ingressroutes")
    with pytest.raises(ApiError) as err:
        await kube.create(route.from_dict(json.loads(ingress_route("bad", namespace, 42))))
    assert err.value.status.code == 422
    assert "spec.routes[0].match" in str(err.value.status.message)
