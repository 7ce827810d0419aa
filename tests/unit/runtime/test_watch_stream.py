"""`kubeapi.watch` decodes one event per line, however the stream is cut into chunks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import httpx2
import pytest
from lightkube import AsyncClient

from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.kubeapi import KindInfo

SECRETS = KindInfo("", "v1", "Secret", "secrets", namespaced=True)

EVENTS = [
    {"type": "ADDED", "object": {"metadata": {"name": "a", "labels": {"x": "ü"}}}},
    {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}},
    {"type": "DELETED", "object": {"metadata": {"name": "b"}}},
]


def streaming_client(chunks: list[bytes]) -> AsyncClient:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body())

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler), base_url="https://k8s")
    return cast(AsyncClient, SimpleNamespace(_client=SimpleNamespace(_client=http)))


def cut(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 3, 17, 10_000])
@pytest.mark.parametrize("final_newline", [True, False])
async def test_events_survive_any_chunking(size: int, final_newline: bool) -> None:
    data = b"\n".join(json.dumps(e, ensure_ascii=False).encode() for e in EVENTS) + b"\n\n"
    if not final_newline:
        data = data.rstrip(b"\n")
    client = streaming_client(cut(data, size))
    received: list[Any] = [
        event async for event in kubeapi.watch(client, SECRETS, "ns", None, "1", 60)
    ]
    assert received == EVENTS
