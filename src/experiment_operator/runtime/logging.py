"""Structured logging: JSON lines for log pipelines, key=value text for humans.

Context such as the object key travels in `extra` fields, so every line of one reconcile can be
found by `key` (namespace/name) and `controller`. Messages must never contain secret values.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

# Attributes every LogRecord has; anything else on a record came from `extra` and is a field.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


def _timestamp(record: logging.LogRecord) -> str:
    ts = datetime.fromtimestamp(record.created, tz=UTC)
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, extra fields, and exc when present."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in _fields(record).items():
            entry.setdefault(k, v)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger: msg key=value ...` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        extras = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        if extras:
            line = f"{line} {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure_logging(
    fmt: Literal["json", "text"] = "text", level: str = "INFO", stream: TextIO | None = None
) -> None:
    """Send all logs to stderr (or `stream`) in the chosen format, replacing earlier handlers."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx2 logs every request at INFO and httpcore2 ten lines per request at DEBUG;
    # rest_client_requests_total counts them instead.
    for chatty in ("httpx2", "httpcore2"):
        logging.getLogger(chatty).setLevel(max(root.level, logging.WARNING))


class BoundLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger carrying fixed fields (e.g. `key`, `controller`) into every record.

    Unlike the stdlib adapter, per-call `extra` is merged with the bound fields, not replaced.
    """

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        bound: Mapping[str, object] = self.extra or {}
        kwargs["extra"] = {**bound, **kwargs.get("extra", {})}
        return msg, kwargs


def bind(logger: logging.Logger | BoundLogger, **fields: object) -> BoundLogger:
    """Return `logger` with `fields` attached; binding a bound logger adds to its fields."""
    if isinstance(logger, BoundLogger):
        return BoundLogger(logger.logger, {**(logger.extra or {}), **fields})
    return BoundLogger(logger, fields)
