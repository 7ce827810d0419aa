"""The owned Secrets: TLS from cert/key, S3 credentials and a password-bearing backend URI."""

from __future__ import annotations

import base64
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from experiment_operator.api.refs import DEFAULT_ACCESS_KEY_ID_KEY, DEFAULT_SECRET_ACCESS_KEY_KEY
from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver.labels import (
    backend_store_secret_name,
    child_metadata,
    credentials_secret_name,
)

BACKEND_URI_KEY = "BACKEND_URI"


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def tls_secret(ts: TrackingServer) -> dict[str, Any] | None:
    """The `kubernetes.io/tls` Secret named after the CR, or None unless cert and key are set.

    The bytes are the spec's as written (as the seed); whether they parse is checked separately
    (`experiment_operator.trackingserver.tls`) so the reconciler can report a precise reason.
    """
    if not ts.spec.tls_enabled:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": child_metadata(ts),
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": _b64(ts.spec.cert),
            "tls.key": _b64(ts.spec.key.get_secret_value()),
        },
    }


def credentials_secret(ts: TrackingServer) -> dict[str, Any] | None:
    """The owned Opaque Secret `<name>-s3-credentials` when the plaintext spec fields are used.

    The seed put the credentials straight into the Pod's env; moving them into a Secret keeps
    them out of the Deployment (readable by anyone who may read Deployments).
    """
    if not ts.spec.plaintext_credentials:
        return None
    return _opaque_secret(
        ts,
        credentials_secret_name(ts.metadata.name),
        {
            DEFAULT_ACCESS_KEY_ID_KEY: ts.spec.aws_access_key.get_secret_value(),
            DEFAULT_SECRET_ACCESS_KEY_KEY: ts.spec.aws_secret_key.get_secret_value(),
        },
    )


def _opaque_secret(ts: TrackingServer, name: str, values: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": child_metadata(ts, name),
        "type": "Opaque",
        "data": {key: _b64(value) for key, value in values.items()},
    }


def backend_uri_has_password(ts: TrackingServer) -> bool:
    """Whether `backend_uri` embeds a password (e.g. `postgresql://user:PASSWORD@db/mlflow`).

    A URI that does not even parse is treated as one: better a needless Secret than a leak.
    """
    try:
        return bool(urlsplit(ts.spec.backend_uri.get_secret_value()).password)
    except ValueError:
        return True


def backend_store_secret(ts: TrackingServer) -> dict[str, Any] | None:
    """The owned Opaque Secret `<name>-backend-store` when `backend_uri` embeds a password.

    The Pod reads the URI through `secretKeyRef`, so the database password is not visible to
    whoever may read Deployments. A password-less URI stays a plain env value (as the seed).
    """
    if not backend_uri_has_password(ts):
        return None
    return _opaque_secret(
        ts,
        backend_store_secret_name(ts.metadata.name),
        {BACKEND_URI_KEY: ts.spec.backend_uri.get_secret_value()},
    )


class CredentialsSource(NamedTuple):
    """Where the Pod reads its S3 credentials from."""

    secret_name: str
    access_key_id_key: str
    secret_access_key_key: str
    owned: bool
    """True for the operator's own Secret, False for the user's referenced one."""


def credentials_source(ts: TrackingServer) -> CredentialsSource | None:
    """The Secret and keys the S3 credentials come from, or None when the spec names none."""
    ref = ts.spec.s3_credentials_secret_ref
    if ref is not None:
        return CredentialsSource(
            ref.name, ref.access_key_id_key, ref.secret_access_key_key, owned=False
        )
    if ts.spec.plaintext_credentials:
        return CredentialsSource(
            credentials_secret_name(ts.metadata.name),
            DEFAULT_ACCESS_KEY_ID_KEY,
            DEFAULT_SECRET_ACCESS_KEY_KEY,
            owned=True,
        )
    return None
