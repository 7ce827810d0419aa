"""`kubeapi.list_all` follows continue tokens and transforms items page by page (so an informer
never holds a whole big list of raw objects)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import httpx2
from lightkube import AsyncClient

from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.kubeapi import KindInfo, Obj

SECRETS = KindInfo("", "v1", "Secret", "secrets", namespaced=True)


def fake_client(pages: list[dict[str, Any]], seen: list[httpx2.Request]) -> AsyncClient:
    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=pages[len(seen) - 1])

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler), base_url="https://k8s")
    return cast(AsyncClient, SimpleNamespace(_client=SimpleNamespace(_client=http)))


async def test_pages_are_followed_and_each_item_transformed_once() -> None:
    pages = [
        {"metadata": {"continue": "c1"}, "items": [{"metadata": {"name": "a"}}]},
        {"metadata": {"resourceVersion": "42"}, "items": [{"metadata": {"name": "b"}}]},
    ]
    seen: list[httpx2.Request] = []
    transformed: list[str] = []

    def transform(obj: Obj) -> Obj:
        transformed.append(obj["metadata"]["name"])
        return {"name": obj["metadata"]["name"], "kind": obj["kind"]}

    items, rv = await kubeapi.list_all(
        fake_client(pages, seen), SECRETS, "ns", "app=x", page_size=1, transform=transform
    )
    assert items == [{"name": "a", "kind": "Secret"}, {"name": "b", "kind": "Secret"}]
    assert rv == "42"
    assert transformed == ["a", "b"]
    assert [r.url.params.get("continue") for r in seen] == [None, "c1"]
    assert all(r.url.params["labelSelector"] == "app=x" for r in seen)
    assert all(r.url.params["limit"] == "1" for r in seen)
