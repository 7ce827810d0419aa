"""Structured log output: JSON lines with bound fields, and the text variant."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from experiment_operator.runtime.logging import bind, configure_logging


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logger")
def test_json_lines_carry_bound_and_extra_fields() -> None:
    out = io.StringIO()
    configure_logging("json", "debug", stream=out)
    log = bind(logging.getLogger("test.ctrl"), controller="trackingserver")
    keyed = bind(log, key="ns/ts")
    keyed.info("reconciled %s", "ok", extra={"result": "success"})
    log.debug("plain")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    first = lines[0]
    assert first["msg"] == "reconciled ok"
    assert first["level"] == "info"
    assert first["logger"] == "test.ctrl"
    assert first["ts"].endswith("Z")
    assert (first["controller"], first["key"], first["result"]) == (
        "trackingserver",
        "ns/ts",
        "success",
    )
    assert lines[1]["msg"] == "plain"
    assert "key" not in lines[1]


@pytest.mark.usefixtures("restore_root_logger")
def test_json_includes_exception_and_survives_odd_values() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("t").exception("failed", extra={"obj": object()})
    entry = json.loads(out.getvalue())
    assert entry["level"] == "error"
    assert "ValueError: bad" in entry["exc"]
    assert entry["obj"].startswith("<object")


@pytest.mark.usefixtures("restore_root_logger")
def test_text_format_and_level() -> None:
    out = io.StringIO()
    configure_logging("text", "warning", stream=out)
    log = bind(logging.getLogger("t"), key="ns/a")
    log.info("hidden")
    log.warning("shown")
    text = out.getvalue()
    assert "hidden" not in text
    assert "WARNING" in text
    assert "t: shown key=ns/a" in text


@pytest.mark.usefixtures("restore_root_logger")
def test_http_client_libraries_stay_quiet_at_debug() -> None:
    """Per-request lines would drown the operator's own at --log-level=debug."""
    configure_logging("json", "DEBUG", io.StringIO())
    for chatty in ("httpx2", "httpcore2"):
        assert not logging.getLogger(chatty).isEnabledFor(logging.INFO)
