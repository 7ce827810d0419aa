"""Retry-After handling: what is retried, how long it waits, when it gives up, what it counts."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx2 as httpx
import pytest
from prometheus_client import REGISTRY

from experiment_operator.runtime.throttle import MAX_WAIT, RetryAfterTransport, retry_after

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def response(code: int, retry: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry} if retry is not None else {}
    return httpx.Response(code, headers=headers)


@pytest.mark.parametrize(
    ("code", "header", "expected"),
    [
        (429, "2", 2.0),
        (429, " 1 ", 1.0),
        (503, "3", 3.0),
        (500, "1", 1.0),
        (429, "Wed, 01 Jan 2025 12:00:05 GMT", 5.0),
        (429, "Wed, 01 Jan 2025 11:00:00 GMT", 0.0),
        (429, "3600", MAX_WAIT),
        (429, None, None),
        (429, "soon", None),
        (409, "1", None),
        (200, "1", None),
    ],
)
def test_retry_after(code: int, header: str | None, expected: float | None) -> None:
    assert retry_after(response(code, header), now=NOW) == expected


def retries(verb: str, code: str) -> float:
    value = REGISTRY.get_sample_value(
        "rest_client_request_retries_total", {"verb": verb, "code": code}
    )
    return value or 0.0


class Script:
    """A transport answering from a list, recording each request body and the waits."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.bodies: list[bytes] = []
        self.waits: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.read())
        return self.answers.pop(0)

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


async def send(script: Script, max_retries: int = 10, method: str = "PATCH") -> httpx.Response:
    transport = RetryAfterTransport(
        httpx.MockTransport(script.handle), max_retries=max_retries, sleep=script.sleep
    )
    async with httpx.AsyncClient(transport=transport, base_url="https://api") as client:
        return await client.request(method, "/api/v1/namespaces/ns/secrets/s", content=b"{}")


async def test_throttled_request_is_sent_again_after_the_wait() -> None:
    before = retries("patch", "429")
    script = Script(response(429, "2"), response(429, "1"), response(200))
    answer = await send(script)
    assert answer.status_code == 200
    assert script.waits == [2.0, 1.0]
    assert script.bodies == [b"{}"] * 3, "the same body each time"
    assert retries("patch", "429") == before + 2


async def test_gives_up_after_max_retries_and_returns_the_last_answer() -> None:
    script = Script(*[response(429, "1") for _ in range(4)])
    answer = await send(script, max_retries=3)
    assert answer.status_code == 429
    assert script.waits == [1.0] * 3


async def test_errors_without_retry_after_are_returned_at_once() -> None:
    for code in (429, 500, 409, 404):
        script = Script(response(code))
        assert (await send(script)).status_code == code
        assert script.waits == []


async def test_server_errors_with_retry_after_are_retried_for_reads_too() -> None:
    before = retries("get", "503")
    script = Script(response(503, "1"), response(200))
    assert (await send(script, method="GET")).status_code == 200
    assert retries("get", "503") == before + 1
