"""Honouring the API server's Retry-After, like client-go's REST client.

An API server under load (API Priority and Fairness, max-in-flight limits) rejects requests
with 429 Too Many Requests and a `Retry-After` header; a server that is shutting down or cannot
reach etcd answers 5xx, sometimes with one too. client-go waits as told and sends the same
request again, at most 10 times, before the caller sees the error. Without that a throttled
operator would turn every rejection into a failed reconcile, retried by the work queue after a
few milliseconds: more load on a server that asked for less.

`honour_retry_after(client)` wraps the transport of lightkube's httpx client, so every request
(reads, writes, watches, Lease renewals) gets this behaviour; each retry is counted in
`rest_client_request_retries_total{verb,code}`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx2 as httpx
from lightkube import AsyncClient

from . import kubeapi, metrics

log = logging.getLogger(__name__)

MAX_RETRIES = 10
"""client-go's default (`rest.Request.maxRetries`)."""
MAX_WAIT = 60.0
"""A longer Retry-After is shortened to this, so a bogus header cannot stall a worker for long."""


def retry_after(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """Seconds the server asks us to wait before retrying, if it asks (429 or 5xx with a valid
    Retry-After: delay-seconds or an HTTP date); None when the response is not retryable."""
    if response.status_code != 429 and response.status_code < 500:
        return None
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), MAX_WAIT)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_WAIT)


class RetryAfterTransport(httpx.AsyncBaseTransport):
    """Sends a request again after the server's Retry-After, up to `max_retries` times."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        max_retries: int = MAX_RETRIES,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.inner = inner
        self._max_retries = max_retries
        self._sleep = sleep

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        retries = 0
        while True:
            response = await self.inner.handle_async_request(request)
            delay = retry_after(response)
            if delay is None or retries >= self._max_retries or not _replayable(request):
                return response
            await response.aclose()
            retries += 1
            verb = metrics.classify_verb(
                request.method, request.url.path, request.url.query.decode()
            )
            metrics.API_RETRIES.labels(verb=verb, code=str(response.status_code)).inc()
            log.debug(
                "API server asked to retry later",
                extra={"verb": verb, "code": response.status_code, "retryAfter": delay},
            )
            await self._sleep(delay)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _replayable(request: httpx.Request) -> bool:
    """Whether the body can be sent again (bytes, not a consumed stream)."""
    return isinstance(request.stream, httpx.ByteStream)


_MARK = "_experiment_operator_retry_after"


def honour_retry_after(client: AsyncClient, *, max_retries: int = MAX_RETRIES) -> None:
    """Make every request of `client` wait and retry on Retry-After; harmless if called twice."""
    http = kubeapi.http(client)
    if getattr(http, _MARK, False):
        return
    http._transport = RetryAfterTransport(http._transport, max_retries=max_retries)
    http._mounts = {
        pattern: None if mounted is None else RetryAfterTransport(mounted, max_retries=max_retries)
        for pattern, mounted in http._mounts.items()
    }
    setattr(http, _MARK, True)
