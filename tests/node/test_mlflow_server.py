"""The server the operator starts, as a platform team would run it, on the real node through the
real Traefik, in a namespace that enforces Pod Security ``restricted``.

Two TrackingServers, no image in either (the operator's MLflow image and command line):

- **tenant**: ``https://tenant.lab.test/team-a`` with the CR's own certificate, PostgreSQL as the
  backend store, artifacts proxied by MLflow (``serveArtifacts``) to a bucket of the lab's S3
  with credentials from a Secret (``s3CredentialsSecretRef``).
- **plain**: the smallest CR: ``http://plain.lab.test`` at the host root, SQLite on a volume,
  artifacts not served (clients write to the bucket themselves).

One MLflow Pod start is tens of seconds on this machine, so the tenant's checks build on each
other and run in file order: MLflow's client logs a run through Traefik (its artifact lands in
the bucket; the client has no S3 credentials), the container's memory is read from the node's
cgroup, the run survives the Pod's deletion, and an image change migrates an outdated schema.
Pod start times and memory are printed (``-s``), never asserted.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from experiment_lab import serving
from experiment_lab.cluster import Cluster
from experiment_lab.images import MLFLOW_IMAGE
from experiment_lab.lab import Lab
from experiment_lab.mlflowclient import mlflow_client
from experiment_lab.objects import tls_pair
from experiment_lab.provisioner import STORAGE_CLASS
from experiment_lab.tier import NodeTier
from experiment_operator.trackingserver.workload import CONTAINER_NAME, MIGRATION_CONTAINER_NAME

TENANT, TENANT_HOST, PREFIX = "tenant", "tenant.lab.test", "/team-a"
PLAIN, PLAIN_HOST = "plain", "plain.lab.test"
NEXT_IMAGE = f"{MLFLOW_IMAGE}-next"
"""The same MLflow under a second tag of the operator's repository: a new image reference (what
a version bump changes) that the operator still starts with its own command line."""
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
# Run inside the MLflow container: undo the newest migration with MLflow's own Alembic scripts
# (as an older MLflow would have left the database), print the revisions before and after.
DOWNGRADE = """\
import os, sqlalchemy
from alembic import command
from mlflow.store.db.utils import _get_alembic_config, _get_schema_version
engine = sqlalchemy.create_engine(os.environ["BACKEND_URI"])
head = _get_schema_version(engine)
with engine.begin() as connection:
    config = _get_alembic_config(os.environ["BACKEND_URI"])
    config.attributes["connection"] = connection
    command.downgrade(config, "-1")
print(head, _get_schema_version(engine))
"""
# The check `mlflow server` makes of an existing database before it serves.
VERIFY = """\
import os, sqlalchemy
from mlflow.store.db.utils import _verify_schema
_verify_schema(sqlalchemy.create_engine(os.environ["BACKEND_URI"]))
"""


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def start_figures(pod: dict[str, Any]) -> str:
    """Seconds from the Pod's creation to Ready, and how long its init containers ran."""
    created = _time(pod["metadata"]["creationTimestamp"])
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    took = _time(ready["lastTransitionTime"]) - created
    parts = [f"Ready {took.total_seconds():.0f} s after creation"]
    for status in pod["status"].get("initContainerStatuses", []):
        done = status["state"]["terminated"]
        took = _time(done["finishedAt"]) - _time(done["startedAt"])
        parts.append(f"{status['name']} ran {took.total_seconds():.0f} s")
    return f"{pod['metadata']['name']}: " + ", ".join(parts)


def init_status(pod: dict[str, Any]) -> dict[str, Any]:
    """The migration init container's status (it must exist)."""
    statuses = pod["status"].get("initContainerStatuses", [])
    return next(s for s in statuses if s["name"] == MIGRATION_CONTAINER_NAME)


def schema_version(backend_uri: str) -> str:
    with psycopg.connect(backend_uri) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert row is not None
    return str(row[0])


def exec_python(
    cluster: Cluster, namespace: str, pod: dict[str, Any], script: str
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "exec", "-n", namespace, pod["metadata"]["name"], "-c", CONTAINER_NAME, "--",
        "python", "-c", script, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def lab(node_tier: NodeTier) -> Lab:
    return node_tier.need_lab()  # S3, PostgreSQL and the node's containerd


@pytest.fixture(scope="module")
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"restricted-{uuid.uuid4().hex[:8]}"
    labels = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": RESTRICTED},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(labels))
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def tenant(
    lab: Lab, operator: None, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The tenant's CR applied; yields what the checks need (CA file, database, bucket)."""
    suffix = uuid.uuid4().hex[:8]
    backend_uri = lab.postgres.create_database(f"tenant_{suffix}")
    bucket = f"tenant-{suffix}"
    lab.s3.create_bucket(bucket)
    cert, key = tls_pair(TENANT_HOST)
    ca_file = tmp_path_factory.mktemp("tenant") / "tenant.crt"
    ca_file.write_text(cert)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tenant-s3"},
        "stringData": {
            "AWS_ACCESS_KEY_ID": lab.s3.access_key,
            "AWS_SECRET_ACCESS_KEY": lab.s3.secret_key,
        },
    }
    serving.apply(lab.cluster, namespace, secret)
    serving.apply(lab.cluster, namespace, {
        "apiVersion": "experiment.aiscope/v1alpha2",
        "kind": "TrackingServer",
        "metadata": {"name": TENANT},
        "spec": {
            "size": 1,
            "url": f"https://{TENANT_HOST}{PREFIX}",
            "backend_uri": backend_uri,
            "artifact_root": f"s3://{bucket}/mlflow",
            "serveArtifacts": True,
            "s3_endpoint_url": lab.s3.endpoint_url,
            "s3CredentialsSecretRef": {"name": "tenant-s3"},
            "cert": cert,
            "key": key,
        },
    })  # fmt: skip
    yield {"ca_file": ca_file, "backend_uri": backend_uri, "bucket": bucket, "runs": {}}
    subprocess.run([*lab.node.ctr(), "images", "rm", NEXT_IMAGE], capture_output=True, check=False)


def ready_tenant(cluster: Cluster, namespace: str, image: str = MLFLOW_IMAGE) -> dict[str, Any]:
    """The tenant's single Ready Pod running ``image``, once its TrackingServer is Ready."""

    def check() -> dict[str, Any] | None:
        pods = serving.server_pods(cluster, namespace, TENANT)
        if len(pods) != 1 or not serving.is_ready(pods[0]):
            return None
        if pods[0]["spec"]["containers"][0]["image"] != image:
            return None
        ready = serving.ready_condition(cluster, namespace, TENANT).get("status") == "True"
        return pods[0] if ready else None

    pod: dict[str, Any] = serving.until(f"one Ready Pod of {TENANT} running {image}", check)
    print(start_figures(pod))
    return pod


def test_pod_security_restricted_is_enforced_in_the_namespace(
    cluster: Cluster, namespace: str
) -> None:
    """The servers below pass a namespace that really refuses what `restricted` forbids."""
    result = cluster.kubectl(
        "run", "privileged", "-n", namespace, f"--image={MLFLOW_IMAGE}", "--dry-run=server",
        "--overrides", '{"spec":{"containers":[{"name":"privileged","image":"x",'
        '"securityContext":{"privileged":true}}]}}',
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr


def test_the_client_logs_through_traefik_and_the_artifact_lands_in_the_bucket(
    lab: Lab,
    namespace: str,
    tenant: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MLflow's client at https://host/prefix, trusting only the CR's certificate, with no S3
    credentials of its own: MLflow proxies the artifact to the bucket."""
    ready_tenant(lab.cluster, namespace)
    ca_file = tenant["ca_file"]
    serving.until(
        "MLflow's UI through Traefik with the CR's certificate",
        lambda: serving.serves_mlflow(lab.ingress, TENANT_HOST, f"{PREFIX}/", ca_file=ca_file),
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    notes = tmp_path / "notes.txt"
    notes.write_text("logged through Traefik\n")
    with mlflow_client(lab.ingress, TENANT_HOST, PREFIX, ca_file=ca_file) as client:
        experiment_id = client.create_experiment(f"tenant-{uuid.uuid4().hex[:6]}")
        run = client.create_run(experiment_id)
        run_id = run.info.run_id
        client.log_param(run_id, "learning_rate", "0.01")
        for step, loss in enumerate((0.9, 0.5, 0.3)):
            client.log_metric(run_id, "loss", loss, step=step)
        client.log_artifact(run_id, str(notes))
        client.set_terminated(run_id)

        stored = client.get_run(run_id)
        assert stored.data.params == {"learning_rate": "0.01"}
        history = client.get_metric_history(run_id, "loss")
        assert [(m.step, m.value) for m in history] == [(0, 0.9), (1, 0.5), (2, 0.3)]
        assert stored.info.artifact_uri.startswith("mlflow-artifacts:")
        assert [a.path for a in client.list_artifacts(run_id)] == ["notes.txt"]
        downloaded = client.download_artifacts(run_id, "notes.txt", str(tmp_path / "back"))
        assert Path(downloaded).read_text() == notes.read_text()
    keys = lab.s3.object_keys(tenant["bucket"])
    assert f"mlflow/{experiment_id}/{run_id}/artifacts/notes.txt" in keys, keys
    tenant["runs"][run_id] = experiment_id


def test_the_running_servers_memory_on_the_node(
    lab: Lab, namespace: str, tenant: dict[str, Any]
) -> None:
    """What the MLflow container uses after serving the client (read from the node's memory
    cgroup; printed as a figure), below its limit and never restarted."""
    (pod,) = serving.ready_pods(lab.cluster, namespace, TENANT)
    (status,) = pod["status"]["containerStatuses"]
    assert status["restartCount"] == 0
    container_id = status["containerID"].split("://", 1)[1]
    root = Path("/sys/fs/cgroup/memory") / lab.slot.cgroup_root.lstrip("/")
    if not root.is_dir():
        pytest.skip(f"no cgroup v1 memory hierarchy at {root}")
    (cgroup,) = root.glob(f"kubepods*/**/pod{pod['metadata']['uid']}/{container_id}")
    stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines())
    usage = int((cgroup / "memory.usage_in_bytes").read_text())
    limit = int((cgroup / "memory.limit_in_bytes").read_text())
    working_set = usage - int(stat["total_inactive_file"])
    mib = 1 << 20
    figures = {"rss": int(stat["total_rss"]), "working set": working_set}
    figures |= {"usage": usage, "limit": limit}
    print("MLflow container: " + ", ".join(f"{k} {v // mib} MiB" for k, v in figures.items()))
    assert working_set < limit


def test_the_database_password_is_in_no_command_line_on_the_node(
    lab: Lab, tenant: dict[str, Any]
) -> None:
    """`ps` on the node shows every argument: the backend store URI reaches MLflow through
    its environment, in the server and in the migration alike."""
    password = urlsplit(tenant["backend_uri"]).password
    assert password
    assert lab.node.processes("mlflow.server")
    assert not lab.node.processes(re.escape(password))


def test_runs_survive_deleting_the_pod(lab: Lab, namespace: str, tenant: dict[str, Any]) -> None:
    """PostgreSQL keeps the run; the new Pod's migration init container finds the schema current."""
    cluster = lab.cluster
    (pod,) = serving.ready_pods(cluster, namespace, TENANT)
    cluster.kubectl("delete", "pod", "-n", namespace, pod["metadata"]["name"], "--wait=true")
    new_pod = ready_tenant(cluster, namespace)
    assert new_pod["metadata"]["uid"] != pod["metadata"]["uid"]
    assert init_status(new_pod)["state"]["terminated"]["exitCode"] == 0
    ((run_id, experiment_id),) = tenant["runs"].items()
    with mlflow_client(lab.ingress, TENANT_HOST, PREFIX, ca_file=tenant["ca_file"]) as client:
        run = serving.until("the run after the restart", lambda: client.get_run(run_id))
        assert run.info.experiment_id == experiment_id
        assert run.data.params == {"learning_rate": "0.01"}


def test_an_image_change_migrates_an_outdated_schema_before_the_server_starts(
    lab: Lab, namespace: str, tenant: dict[str, Any]
) -> None:
    """Only MLflow 3.17.2 exists here, so "an older version's database" is made: its newest
    migration undone with MLflow's own scripts, which MLflow's start-up check then refuses.
    The same MLflow under a new tag stands for the version bump: the new Pod's init container
    runs `mlflow db upgrade`, the server starts on the current schema and the run is there."""
    cluster = lab.cluster
    (pod,) = serving.ready_pods(cluster, namespace, TENANT)
    downgrade = exec_python(cluster, namespace, pod, DOWNGRADE)
    assert downgrade.returncode == 0, downgrade.stderr
    head, previous = downgrade.stdout.split()
    assert previous != head
    assert schema_version(tenant["backend_uri"]) == previous
    refused = exec_python(cluster, namespace, pod, VERIFY)
    assert refused.returncode != 0
    assert "out-of-date database schema" in refused.stderr
    subprocess.run(
        [*lab.node.ctr(), "images", "tag", "--force", MLFLOW_IMAGE, NEXT_IMAGE],
        check=True, capture_output=True,
    )  # fmt: skip
    cluster.kubectl("patch", "trackingserver", TENANT, "-n", namespace, "--type=merge",
                    "-p", json.dumps({"spec": {"image": NEXT_IMAGE}}))  # fmt: skip
    new_pod = ready_tenant(cluster, namespace, NEXT_IMAGE)
    assert new_pod["spec"]["containers"][0]["command"][:2] == ["mlflow", "server"]
    assert init_status(new_pod)["state"]["terminated"]["exitCode"] == 0
    upgrade_log = cluster.kubectl(
        "logs", "-n", namespace, new_pod["metadata"]["name"], "-c", MIGRATION_CONTAINER_NAME
    )
    print(f"{MIGRATION_CONTAINER_NAME}: {upgrade_log.stdout}{upgrade_log.stderr}".strip())
    assert schema_version(tenant["backend_uri"]) == head
    ((run_id, _),) = tenant["runs"].items()
    with mlflow_client(lab.ingress, TENANT_HOST, PREFIX, ca_file=tenant["ca_file"]) as client:
        assert client.get_run(run_id).data.params == {"learning_rate": "0.01"}


def test_the_smallest_cr_serves_at_the_host_root_with_sqlite_on_a_volume(
    lab: Lab,
    operator: None,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No image, no prefix, no TLS: the default server runs as non-root under `restricted` and
    writes its SQLite file on the volume (fsGroup). Artifacts are not served (the seed's
    behaviour): the client writes them to the bucket itself, with its own S3 credentials."""
    cluster = lab.cluster
    bucket = f"plain-{uuid.uuid4().hex[:8]}"
    lab.s3.create_bucket(bucket)
    serving.apply(cluster, namespace, {
        "apiVersion": "experiment.aiscope/v1alpha2",
        "kind": "TrackingServer",
        "metadata": {"name": PLAIN},
        "spec": {
            "size": 1,
            "url": f"http://{PLAIN_HOST}",
            "backend_uri": "sqlite:////mlflow/mlflow.db",
            "artifact_root": f"s3://{bucket}/mlflow",
            "volumeSize": "1Gi",
            "storageClassName": STORAGE_CLASS,
        },
    })  # fmt: skip
    serving.until(
        "Ready=True",
        lambda: serving.ready_condition(cluster, namespace, PLAIN).get("status") == "True",
    )
    (pod,) = serving.ready_pods(cluster, namespace, PLAIN)
    print(start_figures(pod))
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    serving.until(
        "MLflow's UI at the host root",
        lambda: serving.serves_mlflow(lab.ingress, PLAIN_HOST, "/", tls=False),
    )
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", lab.s3.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", lab.s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", lab.s3.secret_key)
    notes = tmp_path / "notes.txt"
    notes.write_text("written by the client\n")
    with mlflow_client(lab.ingress, PLAIN_HOST, tls=False) as client:
        experiment_id = client.create_experiment(f"plain-{uuid.uuid4().hex[:6]}")
        run_id = client.create_run(experiment_id).info.run_id
        client.log_artifact(run_id, str(notes))
        assert client.get_run(run_id).info.artifact_uri.startswith(f"s3://{bucket}/mlflow/")
    keys = lab.s3.object_keys(bucket)
    assert f"mlflow/{experiment_id}/{run_id}/artifacts/notes.txt" in keys, keys
