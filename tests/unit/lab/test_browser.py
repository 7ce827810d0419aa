"""Chromium's switches and the SPKI hash its certificate allow-list takes."""

from __future__ import annotations

from experiment_lab.browser import chromium_args, spki_hash

# Self-signed P-256 certificate; its hash as `openssl x509 -pubkey | openssl pkey -pubin
# -outform der | openssl dgst -sha256 -binary | base64` prints it.
CERT = b"""-----BEGIN CERTIFICATE-----
MIIBijCCATGgAwIBAgIUa/XsRoKld90xphLr9JAzo4QDJhAwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPZ29sZGVuLmxhYi50ZXN0MCAXDTI2MTIwMjEzMTAzN1oYDzIx
MjYxMTA4MTMxMDM3WjAaMRgwFgYDVQQDDA9nb2xkZW4ubGFiLnRlc3QwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAASPi+PBMFT6Ye4tmMZgNaRCtrW8YFnz0sXME9b1
+nednsDggxe/03ULoqK3tghNqVqPDy8QGdtNutwNKv22RT/Fo1MwUTAdBgNVHQ4E
FgQU6aqmS182N9u7s0KV3Bht5Js/MFMwHwYDVR0jBBgwFoAU6aqmS182N9u7s0KV
3Bht5Js/MFMwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiBhUfTy
5bWuICIbGlr7NdlcGBW5M0qQCvRaYEPGgeOf/gIgIXXliPs/8Gf+iBnfgCpNTc6Y
vhYSeMSMVL4JCUoDpyA=
-----END CERTIFICATE-----
"""
CERT_SPKI = "QBTXtewtxFzNKYnOP0lSQ/8hAo9ytTfNWIdgBsExhrA="


def test_spki_hash_matches_openssl() -> None:
    assert spki_hash(CERT) == CERT_SPKI


def test_args_map_hosts_and_allow_certificates_by_key() -> None:
    assert chromium_args("MAP *.lab.test 10.87.0.1", ["a=", "b="]) == [
        "--no-sandbox",
        "--host-resolver-rules=MAP *.lab.test 10.87.0.1",
        "--ignore-certificate-errors-spki-list=a=,b=",
    ]
    assert chromium_args(None, ()) == ["--no-sandbox"]
