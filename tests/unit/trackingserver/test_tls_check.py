"""PEM checks with certificates generated here (no private key is committed but the seed's)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver.tls import (
    CERTIFICATE_EXPIRED,
    CERTIFICATE_KEY_MISMATCH,
    INVALID_CERTIFICATE,
    INVALID_PRIVATE_KEY,
    VALID,
    check_tls_pair,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def key_pem(key: CertificateIssuerPrivateKeyTypes, password: bytes | None = None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


def cert_pem(
    key: CertificateIssuerPrivateKeyTypes, not_after: datetime, host: str = "mlflow.example.com"
) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=365))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_valid_rsa_pair(rsa_key: rsa.RSAPrivateKey) -> None:
    result = check_tls_pair(cert_pem(rsa_key, NOW + timedelta(days=30)), key_pem(rsa_key), now=NOW)
    assert result.reason == VALID
    assert result.usable
    assert not result.expired


def test_valid_ec_chain_uses_the_first_certificate(
    ec_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    chain = cert_pem(ec_key, NOW + timedelta(days=1)) + cert_pem(rsa_key, NOW + timedelta(days=9))
    assert check_tls_pair(chain, key_pem(ec_key), now=NOW).reason == VALID


def test_expired_is_a_usable_warning(rsa_key: rsa.RSAPrivateKey) -> None:
    result = check_tls_pair(cert_pem(rsa_key, NOW - timedelta(days=1)), key_pem(rsa_key), now=NOW)
    assert result.reason == CERTIFICATE_EXPIRED
    assert result.usable
    assert result.message == "certificate expired at 2026-05-31T00:00:00Z"


def test_mismatch(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> None:
    result = check_tls_pair(cert_pem(rsa_key, NOW + timedelta(days=1)), key_pem(ec_key), now=NOW)
    assert result.reason == CERTIFICATE_KEY_MISMATCH
    assert not result.usable


@pytest.mark.parametrize("cert", ["", "not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_invalid_certificate(rsa_key: rsa.RSAPrivateKey, cert: str) -> None:
    result = check_tls_pair(cert, key_pem(rsa_key), now=NOW)
    assert result.reason == INVALID_CERTIFICATE
    assert not result.usable


def test_invalid_key_never_echoes_it(rsa_key: rsa.RSAPrivateKey) -> None:
    garbage = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXN0dWZm\n-----END PRIVATE KEY-----\n"
    result = check_tls_pair(cert_pem(rsa_key, NOW + timedelta(days=1)), garbage, now=NOW)
    assert result.reason == INVALID_PRIVATE_KEY
    assert "c2VjcmV0" not in result.message


def test_encrypted_key(rsa_key: rsa.RSAPrivateKey) -> None:
    cert = cert_pem(rsa_key, NOW + timedelta(days=1))
    result = check_tls_pair(cert, key_pem(rsa_key, password=b"pw"), now=NOW)
    assert result.reason == INVALID_PRIVATE_KEY
    assert "encrypted" in result.message


def test_seed_pair_matches_and_expired_in_2023(sample: Callable[..., TrackingServer]) -> None:
    spec = sample("blog").spec
    result = check_tls_pair(spec.cert, spec.key.get_secret_value(), now=NOW)
    assert result.reason == CERTIFICATE_EXPIRED
    assert result.not_after == datetime(2023, 1, 20, 12, 0, 48, tzinfo=UTC)
