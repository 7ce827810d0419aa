"""Apply helpers against a real API server: create-only and uid-guarded applies, no-op applies
(also from slim cached copies), foreign objects, deletes, status."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest
from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource

from experiment_lab.cluster import Kubectl
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.apply import (
    CREATE_ONLY,
    FIELD_MANAGER,
    NotOwnedError,
    apply_owned,
    delete_if_owned,
    update_status,
)
from experiment_operator.runtime.cache import cache_transform
from experiment_operator.runtime.kubeapi import KindInfo, Obj

pytestmark = pytest.mark.integration

Widget = create_namespaced_resource("runtime.test.example", "v1", "Widget", "widgets")
CONFIGMAP = KindInfo("", "v1", "ConfigMap", "configmaps", True)


WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class RecordingClient:
    """An API client that remembers the method, path and answer of every request it sends."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.requests: list[tuple[str, str]] = []
        self.codes: list[int] = []
        http = kubeapi.http(client)
        hooks = http.event_hooks
        hooks["request"] = [*hooks.get("request", []), self._record]
        hooks["response"] = [*hooks.get("response", []), self._answer]
        http.event_hooks = hooks

    async def _record(self, request: httpx2.Request) -> None:
        self.requests.append((request.method, request.url.path))

    async def _answer(self, response: httpx2.Response) -> None:
        self.codes.append(response.status_code)

    def clear(self) -> None:
        self.requests.clear()
        self.codes.clear()

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] in WRITE_METHODS]

    def accepted_writes(self) -> list[tuple[str, str]]:
        """Writes the server carried out (a refused guard answers 409 or 422)."""
        return [
            r for r, code in zip(self.requests, self.codes, strict=True)
            if r[0] in WRITE_METHODS and code < 400
        ]  # fmt: skip


@pytest.fixture
async def rec(new_client: Callable[[], AsyncClient]) -> AsyncIterator[RecordingClient]:
    client = new_client()
    try:
        yield RecordingClient(client)
    finally:
        await client.close()


async def make_owner(kube: AsyncClient, namespace: str, name: str = "owner") -> Obj:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    return await kubeapi.request(kube, "POST", CONFIGMAP.path(namespace), body=body)


def child(namespace: str, name: str = "child", value: str = "1") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "rt-test"}},
        "data": {"value": value},
    }


def kubectl_json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", "-o", "json", "--show-managed-fields", *args).stdout)


async def test_apply_unchanged_twice_makes_no_write(
    kube: AsyncClient, rec: RecordingClient, namespace: str
) -> None:
    owner = await make_owner(kube, namespace)
    created = await apply_owned(rec.client, child(namespace), owner)
    assert created["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    assert [m["manager"] for m in created["metadata"]["managedFields"]] == [FIELD_MANAGER]
    rv = created["metadata"]["resourceVersion"]

    rec.clear()
    again = await apply_owned(rec.client, child(namespace), owner)  # not cached: create-only
    assert again["metadata"]["resourceVersion"] == rv
    assert rec.accepted_writes() == []
    assert [m for m, _ in rec.requests] == ["PATCH", "GET"], "refused create, then a look"
    assert rec.codes == [409, 200]

    rec.clear()
    await apply_owned(rec.client, child(namespace), owner, live=again)  # live from a cache
    assert rec.requests == [], "nothing changed: not even a read"
    slim = cache_transform(())(again)  # a metadata-only cached copy knows it too
    assert "data" not in slim
    await apply_owned(rec.client, child(namespace), owner, live=slim)
    assert rec.requests == []

    changed = await apply_owned(rec.client, child(namespace, value="2"), owner, live=again)
    assert changed["data"] == {"value": "2"}
    assert changed["metadata"]["resourceVersion"] != rv
    assert [m for m, _ in rec.writes()] == ["PATCH"]


async def test_a_field_no_longer_desired_is_removed_then_no_more_writes(
    kube: AsyncClient, rec: RecordingClient, namespace: str
) -> None:
    owner = await make_owner(kube, namespace)
    both = child(namespace)
    both["data"]["extra"] = "x"
    live = await apply_owned(rec.client, both, owner)
    rec.clear()
    slim = cache_transform(())(live)
    live = await apply_owned(rec.client, child(namespace), owner, live=slim)  # ⊆ live, yet
    assert live["data"] == {"value": "1"}, "the field we stopped wanting is gone"
    assert [m for m, _ in rec.writes()] == ["PATCH"]
    rec.clear()
    await apply_owned(rec.client, child(namespace), owner, live=cache_transform(())(live))
    assert rec.requests == []


async def test_foreign_object_is_left_byte_for_byte_unchanged(
    kube: AsyncClient, rec: RecordingClient, namespace: str, kubectl: Kubectl
) -> None:
    owner = await make_owner(kube, namespace)
    kubectl("create", "configmap", "child", "-n", namespace, "--from-literal=value=theirs")
    before = kubectl_json(kubectl, "configmap", "child", "-n", namespace)

    with pytest.raises(NotOwnedError) as raised:
        await apply_owned(rec.client, child(namespace), owner)
    assert (raised.value.kind, raised.value.namespace, raised.value.name) == (
        "ConfigMap",
        namespace,
        "child",
    )
    assert rec.writes() == [("PATCH", f"/api/v1/namespaces/{namespace}/configmaps/child")]
    assert rec.accepted_writes() == [], "the create-only apply was refused"
    rec.clear()
    # also when the (stale) cached copy is passed in: no request at all
    with pytest.raises(NotOwnedError):
        await apply_owned(rec.client, child(namespace), owner, live=before)
    assert rec.requests == []
    assert not await delete_if_owned(rec.client, CONFIGMAP, namespace, "child", owner_uid="x")
    assert rec.writes() == []

    after = kubectl_json(kubectl, "configmap", "child", "-n", namespace)
    assert after == before
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["metadata"]["managedFields"] == before["metadata"]["managedFields"]


async def test_create_only_apply_is_refused_by_any_existing_object(
    kube: AsyncClient, namespace: str, kubectl: Kubectl
) -> None:
    """The guard the create path relies on: an apply with resourceVersion CREATE_ONLY creates
    a missing object (owned by our Apply entry) and is refused, changing nothing, otherwise."""
    path = CONFIGMAP.path(namespace, "guarded")
    body = {**child(namespace, "guarded"), "metadata": {"name": "guarded",
            "namespace": namespace, "resourceVersion": CREATE_ONLY}}  # fmt: skip
    params = {"fieldManager": FIELD_MANAGER, "force": "true"}
    created = await kubeapi.request(kube, "PATCH", path, params=params, body=body,
                                    content_type=kubeapi.APPLY_CONTENT_TYPE)  # fmt: skip
    entries = created["metadata"]["managedFields"]
    assert [(e["manager"], e["operation"]) for e in entries] == [(FIELD_MANAGER, "Apply")]
    body["data"] = {"value": "changed"}
    with pytest.raises(ApiError) as refused:
        await kubeapi.request(kube, "PATCH", path, params=params, body=body,
                              content_type=kubeapi.APPLY_CONTENT_TYPE)  # fmt: skip
    assert refused.value.status.code == 409
    after = await kubeapi.get(kube, CONFIGMAP, namespace, "guarded")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_a_stale_cached_copy_never_lets_a_replacement_be_modified(
    kube: AsyncClient, rec: RecordingClient, namespace: str, kubectl: Kubectl
) -> None:
    """Our object is deleted and a stranger's takes its name before the cache notices: the
    uid-guarded apply is refused and the stranger's object is left as it is."""
    owner = await make_owner(kube, namespace)
    ours = await apply_owned(rec.client, child(namespace), owner)
    stale = cache_transform(())(ours)
    await kubeapi.request(kube, "DELETE", CONFIGMAP.path(namespace, "child"))
    kubectl("create", "configmap", "child", "-n", namespace, "--from-literal=value=theirs")
    before = kubectl_json(kubectl, "configmap", "child", "-n", namespace)
    rec.clear()
    with pytest.raises(NotOwnedError):
        await apply_owned(rec.client, child(namespace, value="2"), owner, live=stale)
    assert rec.accepted_writes() == []
    assert rec.codes[0] == 422, "the uid guard refused the write"
    assert kubectl_json(kubectl, "configmap", "child", "-n", namespace) == before


async def test_a_stale_cached_copy_of_a_deleted_object_recreates_it(
    kube: AsyncClient, rec: RecordingClient, namespace: str
) -> None:
    owner = await make_owner(kube, namespace)
    ours = await apply_owned(rec.client, child(namespace), owner)
    await kubeapi.request(kube, "DELETE", CONFIGMAP.path(namespace, "child"))
    again = await apply_owned(rec.client, child(namespace, "child", "2"), owner,
                              live=cache_transform(())(ours))  # fmt: skip
    assert again["metadata"]["uid"] != ours["metadata"]["uid"]
    assert again["data"] == {"value": "2"}


async def test_object_controlled_by_another_owner_is_not_taken(
    kube: AsyncClient, rec: RecordingClient, namespace: str
) -> None:
    first = await make_owner(kube, namespace, "first")
    second = await make_owner(kube, namespace, "second")
    await apply_owned(rec.client, child(namespace), first)
    with pytest.raises(NotOwnedError):
        await apply_owned(rec.client, child(namespace, value="2"), second)
    live = await kubeapi.get(kube, CONFIGMAP, namespace, "child")
    assert live is not None
    assert live["data"] == {"value": "1"}


async def test_delete_if_owned(kube: AsyncClient, rec: RecordingClient, namespace: str) -> None:
    owner = await make_owner(kube, namespace)
    await apply_owned(rec.client, child(namespace), owner)
    uid = owner["metadata"]["uid"]
    assert not await delete_if_owned(rec.client, CONFIGMAP, namespace, "child", owner_uid="other")
    assert await kubeapi.get(kube, CONFIGMAP, namespace, "child") is not None
    assert await delete_if_owned(rec.client, CONFIGMAP, namespace, "child", owner_uid=uid)
    assert await kubeapi.get(kube, CONFIGMAP, namespace, "child") is None
    assert not await delete_if_owned(rec.client, CONFIGMAP, namespace, "child", owner_uid=uid)


async def test_update_status_writes_only_changes(
    widget_crd: str, kube: AsyncClient, rec: RecordingClient, namespace: str
) -> None:
    body = {"apiVersion": "runtime.test.example/v1", "kind": "Widget",
            "metadata": {"name": "w"}, "spec": {"size": 1}}  # fmt: skip
    widget = await kubeapi.request(kube, "POST", KindInfo.of(Widget).path(namespace), body=body)
    status = {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}

    assert await update_status(rec.client, Widget, widget, status)
    live = await kubeapi.get(kube, KindInfo.of(Widget), namespace, "w")
    assert live is not None
    assert live["status"] == status
    assert live["spec"] == {"size": 1}
    assert live["metadata"]["generation"] == widget["metadata"]["generation"]

    rec.requests.clear()
    assert not await update_status(rec.client, Widget, live, status)
    assert rec.requests == []

    assert await update_status(rec.client, Widget, live, {"phase": "Failed"})
    final = await kubeapi.get(kube, KindInfo.of(Widget), namespace, "w")
    assert final is not None
    assert final["status"] == {"phase": "Failed"}, "keys no longer wanted are removed"
