"""The seed's sample TrackingServer, unchanged, on a real node behind the real Traefik.

The checks build on each other (one MLflow Pod start is tens of seconds on this machine), so the
module keeps one server and its tests run in file order: it serves, its SQLite file on the PVC
keeps an experiment across the Pod's deletion, and drift (a deleted Pod, ``size`` 0 and 2) is
repaired on the real node.
"""

from __future__ import annotations

import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from experiment_lab import serving
from experiment_lab.browser import chromium, spki_hash
from experiment_lab.cluster import Cluster
from experiment_lab.mlflowclient import mlflow_client
from experiment_lab.node.slot import NODE_NAME
from experiment_lab.tier import NodeTier

NAME = "trackingserver"  # the sample's own name


@pytest.fixture(scope="module")
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"seed-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def seed_server(node_tier: NodeTier, operator: None, namespace: str) -> dict[str, Any]:
    """The sample as the seed wrote it, plus a 1 Gi volume for its SQLite file."""
    sample = serving.seed_sample(
        volumeSize="1Gi", storageClassName=node_tier.storage_class, image=node_tier.seed_image
    )
    serving.apply(node_tier.cluster, namespace, sample)
    return sample


def test_the_sample_runs_on_the_real_node_and_serves_through_traefik(
    node_tier: NodeTier, seed_server: dict[str, Any], namespace: str
) -> None:
    cluster = node_tier.cluster
    serving.until(
        "Ready=True",
        lambda: serving.ready_condition(cluster, namespace, NAME).get("status") == "True",
    )
    (pod,) = serving.ready_pods(cluster, namespace, NAME)
    if node_tier.lab is not None:
        assert pod["spec"]["nodeName"] == NODE_NAME
    url = f"{serving.SEED_PREFIX}/"
    serving.until(
        "MLflow's UI through Traefik",
        lambda: serving.serves_mlflow(node_tier.ingress, serving.SEED_HOST, url),
    )


def test_the_ui_renders_in_a_browser_through_traefik(
    node_tier: NodeTier, seed_server: dict[str, Any], namespace: str
) -> None:
    """Chromium opens the sample's URL (its expired certificate accepted by public key)."""
    cert = seed_server["spec"]["cert"].encode()
    rules = f"MAP {serving.SEED_HOST} {node_tier.ingress.address}"
    with chromium(rules, ignore_cert_spki=[spki_hash(cert)]) as browser:
        page = browser.new_page()
        page.goto(f"https://{serving.SEED_HOST}{serving.SEED_PREFIX}/", timeout=60_000)
        page.get_by_text("Experiments").first.wait_for(timeout=60_000)
        assert page.title().endswith("MLflow")
        page.close()


def test_pods_resolve_service_names(
    node_tier: NodeTier, seed_server: dict[str, Any], namespace: str
) -> None:
    """Cluster DNS: a Pod finds the server's Service by name (kubectl exec through the kubelet)."""
    cluster = node_tier.cluster
    (pod,) = serving.ready_pods(cluster, namespace, NAME)
    service_ip = cluster.kubectl(
        "get", "service", NAME, "-n", namespace, "-o", "jsonpath={.spec.clusterIP}"
    ).stdout
    lookup = f"import socket; print(socket.gethostbyname('{NAME}.{namespace}.svc.cluster.local'))"
    resolved = cluster.kubectl(
        "exec", "-n", namespace, pod["metadata"]["name"], "--", "python3", "-c", lookup
    ).stdout.strip()
    assert resolved == service_ip


def test_logs_and_port_forward_reach_the_pod_through_the_kubelet(
    node_tier: NodeTier, seed_server: dict[str, Any], namespace: str
) -> None:
    """The API server reaches the kubelet (its client certificate, the node's InternalIP)."""
    cluster = node_tier.cluster
    (pod,) = serving.ready_pods(cluster, namespace, NAME)
    name = pod["metadata"]["name"]
    logs = cluster.kubectl("logs", "-n", namespace, name, "--tail=50").stdout
    assert "/health" in logs or "Listening" in logs or "Uvicorn" in logs, logs
    forward = subprocess.Popen(
        [cluster.kubectl_path, "port-forward", "-n", namespace, f"pod/{name}", ":5000"],
        env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> 5000"
        port = int(line.split("127.0.0.1:")[1].split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as response:
            assert response.read() == b"OK"
    finally:
        forward.terminate()
        forward.wait(10)


def test_sqlite_on_the_volume_keeps_an_experiment_across_the_pods_deletion(
    node_tier: NodeTier, seed_server: dict[str, Any], namespace: str
) -> None:
    cluster = node_tier.cluster
    (pod,) = serving.ready_pods(cluster, namespace, NAME)
    experiment = f"kept-{uuid.uuid4().hex[:6]}"
    with mlflow_client(node_tier.ingress, serving.SEED_HOST, serving.SEED_PREFIX) as client:
        experiment_id = client.create_experiment(experiment)
    cluster.kubectl("delete", "pod", "-n", namespace, pod["metadata"]["name"], "--wait=true")
    (new_pod,) = serving.ready_pods(cluster, namespace, NAME)
    assert new_pod["metadata"]["uid"] != pod["metadata"]["uid"]
    with mlflow_client(node_tier.ingress, serving.SEED_HOST, serving.SEED_PREFIX) as client:
        found = serving.until(
            "the experiment after the restart",
            lambda: client.get_experiment_by_name(experiment),
        )
    assert found.experiment_id == experiment_id


def test_size_zero_leaves_no_mlflow_process_and_size_two_serves_from_two_pods(
    node_tier: NodeTier, seed_server: dict[str, Any], namespace: str
) -> None:
    cluster = node_tier.cluster
    cluster.kubectl("patch", "trackingserver", NAME, "-n", namespace, "--type=merge",
                    "-p", '{"spec":{"size":0}}')  # fmt: skip
    serving.until("no Pods", lambda: not serving.server_pods(cluster, namespace, NAME))
    if node_tier.lab is not None:
        node = node_tier.lab.node
        # `mlflow server` and its workers (`mlflow.server:app`), not any command line with
        # "mlflow" in it: the node's own init runs from the checkout's venv (wt-mlflow-a/...).
        serving.until("no MLflow server on the node", lambda: not node.processes("mlflow.server"))
    cluster.kubectl("patch", "trackingserver", NAME, "-n", namespace, "--type=merge",
                    "-p", '{"spec":{"size":2}}')  # fmt: skip
    pods = serving.ready_pods(cluster, namespace, NAME, count=2)
    if node_tier.lab is not None:
        assert {serving.pod_get(p, "/health") for p in pods} == {200}
    serving.until(
        "MLflow's UI through Traefik",
        lambda: serving.serves_mlflow(
            node_tier.ingress, serving.SEED_HOST, f"{serving.SEED_PREFIX}/"
        ),
    )
