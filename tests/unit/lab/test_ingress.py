"""IngressEndpoint sends lab host names as Host and SNI to one address, and makes them resolve
there for unmodified clients."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from experiment_lab.ingress import IngressEndpoint

HOST = "team.lab.test"


class Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{self.headers['Host']} {self.path}".encode()
        self.send_response(302 if self.path == "/redirect" else 200)
        self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def write_cert(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[IngressEndpoint, Path, list[str]]]:
    """Plain and TLS servers on 127.0.0.1; the list collects the SNI names the TLS one saw."""
    cert, key = write_cert(tmp_path)
    seen: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def remember(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen.append(name or "")

    context.sni_callback = remember
    plain = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    secure = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    for server in (plain, secure):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield IngressEndpoint("127.0.0.1", plain.server_port, secure.server_port), cert, seen
    finally:
        for server in (plain, secure):
            server.shutdown()
            server.server_close()


def test_get_sends_the_host_name(servers: tuple[IngressEndpoint, Path, list[str]]) -> None:
    endpoint, _, _ = servers
    status, _, body = endpoint.get(HOST, "/a?b=1")
    assert status == 200
    assert body == f"{HOST}:{endpoint.web_port} /a?b=1".encode()
    status, headers, _ = endpoint.get(HOST, "/redirect")
    assert (status, headers["location"]) == (302, "/elsewhere")


def test_tls_sends_sni_and_verifies_against_the_ca_file(
    servers: tuple[IngressEndpoint, Path, list[str]],
) -> None:
    endpoint, cert, seen = servers
    status, _, body = endpoint.get(HOST, tls=True, ca_file=cert)
    assert status == 200
    assert body.startswith(f"{HOST}:".encode())
    assert seen == [HOST]
    with pytest.raises(ssl.SSLCertVerificationError):
        endpoint.get("other.lab.test", tls=True, ca_file=cert)
    assert endpoint.get("other.lab.test", tls=True)[0] == 200  # no ca_file: not verified


def test_resolving_to_sends_unmodified_clients_to_the_address(
    servers: tuple[IngressEndpoint, Path, list[str]],
) -> None:
    endpoint, _, _ = servers
    url = f"http://{HOST.upper()}:{endpoint.web_port}/r"
    with endpoint.resolving_to(HOST), urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.read() == f"{HOST.upper()}:{endpoint.web_port} /r".encode()
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo(HOST, 80)
