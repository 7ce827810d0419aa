"""Headless Chromium reaches lab hosts through host rules and trusts lab certificates by key."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError

from experiment_lab.browser import CHROMIUM, chromium, spki_hash
from experiment_lab.objects import tls_pair


class Page(BaseHTTPRequestHandler):
    """Echoes the Host header in the page's title."""

    def do_GET(self) -> None:
        body = f"<title>{self.headers['Host']}</title><p>lab</p>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(context: ssl.SSLContext | None = None) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    if context:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def needs_chromium(require: Callable[[bool, str], None]) -> None:
    require(CHROMIUM.is_file(), str(CHROMIUM))


def test_host_rules_send_lab_hosts_to_the_mapped_address() -> None:
    with serve() as port, chromium("MAP *.lab.test 127.0.0.1") as browser:
        page = browser.new_page()
        response = page.goto(f"http://team.lab.test:{port}/")
        assert response is not None
        assert response.status == 200
        assert page.title() == f"team.lab.test:{port}"


def test_self_signed_certificate_is_trusted_by_its_key_only(tmp_path: Path) -> None:
    cert, key = tls_pair("team.lab.test")
    (tmp_path / "tls.crt").write_text(cert)
    (tmp_path / "tls.key").write_text(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    rules = "MAP *.lab.test 127.0.0.1"
    with serve(context) as port:
        url = f"https://team.lab.test:{port}/"
        with chromium(rules, ignore_cert_spki=[spki_hash(cert.encode())]) as browser:
            page = browser.new_page()
            response = page.goto(url)
            assert response is not None
            assert response.status == 200
        with chromium(rules) as browser, pytest.raises(PlaywrightError, match="ERR_CERT"):
            browser.new_page().goto(url)
