"""MLflow's own Python client, pointed at a TrackingServer through the lab's Traefik."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.tracking import MlflowClient

from experiment_lab.ingress import IngressEndpoint

CLIENT_ENV = ("MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH",
              "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")  # fmt: skip


@contextmanager
def mlflow_client(
    endpoint: IngressEndpoint,
    host: str,
    prefix: str = "",
    *,
    ca_file: Path | None = None,
    tls: bool = True,
) -> Iterator[MlflowClient]:
    """A client for ``https://host/prefix`` whose connections go to the lab's Traefik (on the
    endpoint's port: ``https://host:8443/prefix`` for a Traefik on 8443).

    The server certificate is verified against ``ca_file``; without one it is not verified
    (the seed's sample carries an expired self-signed certificate). Retries are bounded.
    """
    saved = {name: os.environ.get(name) for name in CLIENT_ENV}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "2"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "30"
    if ca_file is not None:
        os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = str(ca_file)
    elif tls:
        os.environ["MLFLOW_TRACKING_INSECURE_TLS"] = "true"
    scheme, port, standard = (
        ("https", endpoint.websecure_port, 443) if tls else ("http", endpoint.web_port, 80)
    )
    netloc = host if port == standard else f"{host}:{port}"
    try:
        with endpoint.resolving_to(host):
            yield MlflowClient(tracking_uri=f"{scheme}://{netloc}{prefix}")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
