"""Headless Chromium (Debian's) through Playwright, for checks that need a real browser.

Playwright's own browser download is not used: the lab drives /usr/bin/chromium. Lab hosts
(`*.lab.test`) resolve through Chromium's host rules, not DNS, and the lab's self-signed
certificates are trusted by their public keys' hashes, so no CA is installed anywhere. The
sync API refuses to run inside an event loop: call it from a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")


def spki_hash(cert_pem: bytes) -> str:
    """base64(sha256(SubjectPublicKeyInfo)), the form `--ignore-certificate-errors-spki-list`
    takes."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def chromium_args(host_rules: str | None, ignore_cert_spki: Sequence[str]) -> list[str]:
    """Command-line switches: no sandbox (root), host rules (e.g. "MAP *.lab.test
    10.87.0.1"), certificates accepted by public key."""
    args = ["--no-sandbox"]
    if host_rules:
        args.append(f"--host-resolver-rules={host_rules}")
    if ignore_cert_spki:
        args.append(f"--ignore-certificate-errors-spki-list={','.join(ignore_cert_spki)}")
    return args


@contextmanager
def chromium(
    host_rules: str | None = None, *, ignore_cert_spki: Sequence[str] = ()
) -> Iterator[Browser]:
    """A headless Chromium, closed (with its processes) on exit."""
    if not CHROMIUM.is_file():
        raise FileNotFoundError(f"{CHROMIUM} not found: run `make lab-packages`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=chromium_args(host_rules, ignore_cert_spki),
        )
        try:
            yield browser
        finally:
            browser.close()
