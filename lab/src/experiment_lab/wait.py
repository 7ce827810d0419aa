"""Polling helper for tests and demos: wait for a condition without asserting on timing."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], object | Awaitable[object]],
    what: str | None = None,
    *,
    within: float = 30.0,
    interval: float = 0.2,
) -> None:
    """Poll ``check`` until it returns something true; fail with AssertionError naming ``what``
    (default: the function's name) after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(
                f"condition {getattr(check, '__name__', check)} not met in {within}s"
            )
        await asyncio.sleep(interval)
