"""Reach a host-process ingress controller as a client on the network would: by name.

Lab host names (`team.lab.test`) are in no DNS. `IngressEndpoint.get` connects to the
controller's address and sends the name as the Host header and TLS SNI; `resolving_to` makes
the names resolve to that address inside this Python process, so unmodified clients (MLflow's,
requests, urllib) send the same.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from socket import _GetAddrInfoResult


def _normal(name: str | bytes) -> str:
    text = name.decode() if isinstance(name, bytes) else name
    return text.lower().rstrip(".")


@dataclass(frozen=True)
class IngressEndpoint:
    """Where an ingress controller listens: plain HTTP on `web_port`, HTTPS on
    `websecure_port`, both on `address`."""

    address: str
    web_port: int = 80
    websecure_port: int = 443

    def get(
        self,
        host: str,
        path: str = "/",
        *,
        tls: bool = False,
        ca_file: Path | None = None,
        timeout: float = 10,
    ) -> tuple[int, dict[str, str], bytes]:
        """GET `path` on `host`: status, headers (lower-case names; a repeated header keeps
        its last value) and body. Redirects are returned, not followed. With `tls`, the
        certificate is checked against `ca_file` and `host` when given, else not at all."""
        port = self.websecure_port if tls else self.web_port
        sock = socket.create_connection((self.address, port), timeout)
        if tls:
            sock = _tls_context(ca_file).wrap_socket(sock, server_hostname=host)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.sock = sock
        standard = 443 if tls else 80
        try:
            conn.request(
                "GET", path, headers={"Host": host if port == standard else f"{host}:{port}"}
            )
            response = conn.getresponse()
            headers = {name.lower(): value for name, value in response.getheaders()}
            return response.status, headers, response.read()
        finally:
            conn.close()

    @contextmanager
    def resolving_to(self, *hosts: str) -> Iterator[None]:
        """Resolve `hosts` to `address` in this process (every thread) while inside."""
        names = {_normal(host) for host in hosts}
        original = socket.getaddrinfo
        address = self.address

        def getaddrinfo(
            host: bytes | str | None,
            port: bytes | str | int | None,
            family: int = 0,
            type: int = 0,
            proto: int = 0,
            flags: int = 0,
        ) -> _GetAddrInfoResult:
            if host is not None and _normal(host) in names:
                host = address
            return original(host, port, family, type, proto, flags)

        socket.getaddrinfo = getaddrinfo
        try:
            yield
        finally:
            socket.getaddrinfo = original


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
