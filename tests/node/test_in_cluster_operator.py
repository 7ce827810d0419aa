"""The operator's own image as a Pod on the real node, installed with the Helm chart and running
as its ServiceAccount, makes a TrackingServer that serves through Traefik.

No image is named in the TrackingServer: the operator starts MLflow from its ``--mlflow-image``
(the chart's ``mlflowImage``) with its own ``mlflow server`` command line, under the prefix.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from experiment_lab import serving
from experiment_lab.binaries import REPO_ROOT, find_binaries
from experiment_lab.images import OPERATOR_IMAGE
from experiment_lab.mlflowclient import mlflow_client
from experiment_lab.tier import NodeTier

CHART = REPO_ROOT / "charts" / "experiment-operator"
HOST = "in-cluster.lab.test"
PREFIX = "/team-a"


@pytest.fixture(scope="module")
def installed(
    node_tier: NodeTier, trackingserver_crd: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The chart installed with the lab's operator image; yields the operator's namespace."""
    lab = node_tier.need_lab()  # the image exists only in the lab's containerd
    namespace = f"op-{uuid.uuid4().hex[:6]}"
    home = tmp_path_factory.mktemp("helm")
    env = {
        **lab.cluster.env,
        **{f"HELM_{d}_HOME": str(home / d) for d in ("CACHE", "CONFIG", "DATA")},
    }
    repository, tag = OPERATOR_IMAGE.rsplit(":", 1)

    def helm(*args: str) -> None:
        result = subprocess.run(
            [str(find_binaries() / "helm"), *args], env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr

    helm(
        "install", "eo", str(CHART), "--namespace", namespace, "--create-namespace", "--wait",
        "--timeout", "5m", "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", "replicaCount=1", "--set", f"mlflowImage={node_tier.mlflow_image}",
        "--set", "logFormat=text",
    )  # fmt: skip
    yield namespace
    helm("uninstall", "eo", "--namespace", namespace, "--wait", "--timeout", "2m")
    lab.cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def test_the_operator_pod_runs_on_the_node_as_its_service_account(
    node_tier: NodeTier, installed: str
) -> None:
    pods = json.loads(
        node_tier.cluster.kubectl("get", "pods", "-n", installed, "-o", "json").stdout
    )["items"]
    (pod,) = pods
    assert pod["spec"]["nodeName"] == "lab-node"
    assert pod["spec"]["serviceAccountName"].startswith("eo")
    assert serving.is_ready(pod)


def test_a_trackingserver_made_by_the_in_cluster_operator_serves(
    node_tier: NodeTier, installed: str
) -> None:
    cluster = node_tier.cluster
    namespace = f"team-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    try:
        manifest = {
            "apiVersion": "experiment.aiscope/v1alpha2",
            "kind": "TrackingServer",
            "metadata": {"name": "mlflow"},
            "spec": {
                "size": 1,
                "url": f"http://{HOST}{PREFIX}",
                "backend_uri": "sqlite:////tmp/mlflow.db",
                "artifact_root": "s3://mlflow/",
            },
        }
        serving.apply(cluster, namespace, manifest)
        serving.until(
            "Ready=True",
            lambda: serving.ready_condition(cluster, namespace, "mlflow").get("status") == "True",
        )
        serving.until(  # Traefik picks the new route up from its watch within seconds
            "MLflow's UI through Traefik",
            lambda: serving.serves_mlflow(node_tier.ingress, HOST, f"{PREFIX}/", tls=False),
            timeout=60,
        )
        with mlflow_client(node_tier.ingress, HOST, PREFIX, tls=False) as client:
            experiment_id = client.create_experiment("in-cluster")
            run = client.create_run(experiment_id)
            client.log_metric(run.info.run_id, "loss", 0.5)
            assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.5}
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")
