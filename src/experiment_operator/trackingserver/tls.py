"""Checks of the spec's PEM certificate and key, with the precise reason the status reports.

Pure (the clock is a parameter) and careful: messages describe the problem, never the PEM text.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

VALID = "Valid"
INVALID_CERTIFICATE = "InvalidCertificate"
INVALID_PRIVATE_KEY = "InvalidPrivateKey"
CERTIFICATE_KEY_MISMATCH = "CertificateKeyMismatch"
CERTIFICATE_EXPIRED = "CertificateExpired"
"""A warning only: the seed served expired certificates, and so do we (with an Event)."""


@dataclass(frozen=True)
class TLSCheck:
    """Outcome of checking a certificate/key pair."""

    reason: str
    message: str
    not_after: datetime | None = None

    @property
    def usable(self) -> bool:
        """Whether the pair can be served (valid, or merely expired)."""
        return self.reason in (VALID, CERTIFICATE_EXPIRED)

    @property
    def expired(self) -> bool:
        return self.reason == CERTIFICATE_EXPIRED


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


PAIR_CACHE_SIZE = 4096
_pairs: OrderedDict[bytes, TLSCheck] = OrderedDict()


def check_tls_pair(cert_pem: str, key_pem: str, *, now: datetime) -> TLSCheck:
    """Check that `cert_pem` parses, `key_pem` parses, the key matches the (first) certificate,
    and whether the certificate has expired at `now` (timezone-aware).

    Parsing a private key costs milliseconds (RSA keys are verified) and every reconcile checks
    the pair: the time-independent outcome is remembered per pair (by digest, not the PEM)."""
    pair = hashlib.blake2b(f"{cert_pem}\0{key_pem}".encode(), digest_size=16).digest()
    check = _pairs.get(pair)
    if check is None:
        check = _check_pair(cert_pem, key_pem)
        _pairs[pair] = check
        if len(_pairs) > PAIR_CACHE_SIZE:
            _pairs.popitem(last=False)
    else:
        _pairs.move_to_end(pair)
    if check.not_after is None:
        return check
    stamp = check.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    if now >= check.not_after:
        return TLSCheck(CERTIFICATE_EXPIRED, f"certificate expired at {stamp}", check.not_after)
    return TLSCheck(VALID, f"certificate valid until {stamp}", check.not_after)


def _check_pair(cert_pem: str, key_pem: str) -> TLSCheck:
    """The checks that do not depend on the time; `not_after` is set when the pair is usable."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError:
        return TLSCheck(INVALID_CERTIFICATE, "cert is not a PEM-encoded X.509 certificate (chain)")
    leaf = chain[0]
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except TypeError:
        return TLSCheck(INVALID_PRIVATE_KEY, "key is encrypted; an unencrypted key is required")
    except (ValueError, UnsupportedAlgorithm):
        return TLSCheck(INVALID_PRIVATE_KEY, "key is not a PEM-encoded private key")
    try:
        leaf_public = leaf.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return TLSCheck(INVALID_CERTIFICATE, "cert has a public key of an unsupported type")
    if _spki(key.public_key()) != _spki(leaf_public):
        return TLSCheck(
            CERTIFICATE_KEY_MISMATCH, "key does not match the public key of the certificate"
        )
    return TLSCheck(VALID, "", leaf.not_valid_after_utc)
