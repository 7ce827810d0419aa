"""`spec.url`, parsed and checked once into the value every builder shares.

The command line (static prefix, allowed hosts, CORS origin), the probes and every routing
builder read the host and prefix from a `ServerURL`; none parses the URL itself. The checks are
the CRD's (`api.urls`), repeated here because objects stored under an older CRD never passed
them: such a URL is reported (`InvalidURL`) instead of reaching a routing rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from experiment_operator.api import urls

_SHAPE = re.compile(urls.URL_SHAPE)
_USERINFO = re.compile(urls.USERINFO)
_DOT_SEGMENT = re.compile(urls.DOT_SEGMENT)
_NUMERIC_HOST = re.compile(urls.NUMERIC_HOST)
_AUTHORITY = re.compile(r"^(?P<scheme>https?)://(?P<host>[^:/]+)(:(?P<port>[0-9]+))?(?P<path>.*)$")


class InvalidURLError(ValueError):
    """`spec.url` cannot be served; the message says why and never repeats the URL."""


@dataclass(frozen=True)
class ServerURL:
    """The parts of `spec.url` the children are built from."""

    scheme: str
    """`http` or `https`."""
    host: str
    """Lower-case DNS name without the port (Traefik's Host() and Ingress hosts take none)."""
    port: int | None
    """The explicit port, if any."""
    prefix: str
    """The path without trailing slash (`/team-a`); empty when served at the host root."""

    @property
    def origin(self) -> str:
        """`scheme://host[:port]`, what browsers send as `Origin` (MLflow's CORS check)."""
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{self.host}{port}"

    @property
    def tracking_uri(self) -> str:
        """The URI MLflow clients use: the origin and the prefix."""
        return self.origin + self.prefix

    @classmethod
    def parse(cls, url: str) -> ServerURL:
        """Check `url` against the admission rules and split it; raises InvalidURLError."""
        if _USERINFO.match(url):
            raise InvalidURLError(urls.USERINFO_MESSAGE)
        if not _SHAPE.fullmatch(url):
            raise InvalidURLError(urls.URL_SHAPE_MESSAGE)
        if _DOT_SEGMENT.search(url):
            raise InvalidURLError(urls.DOT_SEGMENT_MESSAGE)
        match = _AUTHORITY.fullmatch(url)
        if match is None or _NUMERIC_HOST.fullmatch(url):
            raise InvalidURLError(urls.HOST_MESSAGE)
        host, port = match["host"].lower(), match["port"]
        if len(host) > urls.HOST_MAX_LENGTH or (port is not None and int(port) > urls.PORT_MAX):
            raise InvalidURLError(urls.HOST_MESSAGE)
        return cls(
            scheme=match["scheme"],
            host=host,
            port=int(port) if port is not None else None,
            prefix=match["path"].rstrip("/"),
        )
