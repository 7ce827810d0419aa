"""What the node-tier tests and the demo ask of a TrackingServer that really runs.

Every wait here is bounded in time and in requests (one every half second at most).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from experiment_lab.binaries import REPO_ROOT
from experiment_lab.cluster import Cluster
from experiment_lab.ingress import IngressEndpoint

SEED_SAMPLE = REPO_ROOT / "config" / "samples" / "experiment_v1alpha2_trackingserver.yaml"
SEED_HOST = "mlflow.platform.aiscope.io"
SEED_PREFIX = "/platform"
READY_WITHIN = 240.0
"""Seconds for a new MLflow Pod to be Ready on a loaded 2-core machine (measured ~15-60 s)."""
POLL = 0.5


def seed_sample(**spec: Any) -> dict[str, Any]:
    """The seed's sample TrackingServer, with ``spec`` fields overriding its own."""
    sample: dict[str, Any] = yaml.safe_load(SEED_SAMPLE.read_text())
    sample["spec"].update(spec)
    return sample


def apply(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> None:
    """``kubectl apply`` the manifest; a refusal (admission, schema, CEL) fails with its words."""
    result = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl apply refused: {result.stderr.strip()}")


def server_pods(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    """The TrackingServer's Pods (by the seed's labels), terminating ones excluded."""
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", f"ts_name={name}", "-o", "json")
    pods: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def ready_condition(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "trackingserver", name, "-n", namespace, "-o", "json")
    conditions = json.loads(out.stdout).get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == "Ready"), {})


def until(what: str, check: Callable[[], Any], timeout: float = READY_WITHIN) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(POLL)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def ready_pods(cluster: Cluster, namespace: str, name: str, count: int = 1) -> list[dict[str, Any]]:
    """Wait until exactly ``count`` Pods of the server exist and all are Ready."""

    def check() -> list[dict[str, Any]] | None:
        pods = server_pods(cluster, namespace, name)
        return pods if len(pods) == count and all(is_ready(p) for p in pods) else None

    found: list[dict[str, Any]] = until(f"{count} Ready Pod(s) of {name}", check)
    return found


def pod_get(pod: dict[str, Any], path: str, port: int = 5000, timeout: float = 5) -> int | None:
    """GET a path of a Pod directly (the host routes the Pod network); None if unreachable."""
    url = f"http://{pod['status']['podIP']}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


def serves_mlflow(
    endpoint: IngressEndpoint,
    host: str,
    path: str,
    *,
    tls: bool = True,
    ca_file: Path | None = None,
) -> bool:
    """MLflow's own UI answers at ``path`` through the proxy (not a proxy 404/502)."""
    try:
        status, _, body = endpoint.get(host, path, tls=tls, ca_file=ca_file)
    except OSError:
        return False
    return status == 200 and b"<title>MLflow</title>" in body
