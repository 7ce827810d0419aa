"""Value types of the operator's options: each converts a flag or environment value, or raises
`argparse.ArgumentTypeError` with a message that says what was expected."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """Seconds: a number (`3600`) or a Go-style duration (`10h`, `1h30m`, `45s`), > 0."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a duration (e.g. 36000, 10h, 1h30m, 45s)"
            ) from None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be positive")
    return seconds


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (1-65535)")
    return value


def namespace_name(text: str) -> str:
    value = text.strip()
    if not DNS1123_LABEL.match(value) or len(value) > 63:
        raise argparse.ArgumentTypeError(f"{text!r} is not a namespace name")
    return value


def bind_address(text: str) -> tuple[str, int] | None:
    """`:8080` (all interfaces), `127.0.0.1:8080`, or `0` to disable (controller-runtime's)."""
    if text.strip() == "0":
        return None
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not [HOST]:PORT (e.g. :8080) or 0")
    return (host.strip("[]") or "0.0.0.0", int(port))


def namespaces(text: str) -> list[str]:
    """One or more comma-separated namespace names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if not DNS1123_LABEL.match(n) or len(n) > 63]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated namespace list")
    return names


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true or false)")


def choice(*allowed: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(allowed)}")
        return value

    return convert


def name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()


def image(text: str) -> str:
    value = text.strip()
    if not value or any(c.isspace() for c in value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a container image reference")
    return value
