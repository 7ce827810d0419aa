"""Data safety on the real node (issue 13, item 5), judged with MLflow's own client through
Traefik and by the bytes on the volumes.

1. A retained volume: a TrackingServer with SQLite on a ``lab-local`` PVC and
   ``volumeRetentionPolicy: Retain`` gets runs; deleting it keeps the claim and the SQLite file
   (read on the node's disk); a new TrackingServer of the same name adopts the claim and serves
   the same runs and metrics.
2. PostgreSQL under a killed server: a client thread logs runs and metrics continuously while
   the MLflow container is killed with SIGKILL (a container restart) and then its Pod is
   force-deleted (a new Pod); every run and metric the client was told was stored is there.
3. A foreign claim: a PVC with data in it, made by someone else under a TrackingServer's name,
   is never written, deleted or mounted (the server gets no replicas while the claim holds
   the name), through the TrackingServer's creation, the volume fields' removal and its
   deletion.

One operator serves the module; each test has its own namespace and server (three MLflow Pods
plus the restarts, the dominant cost).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from experiment_lab import serving
from experiment_lab.cluster import Cluster
from experiment_lab.mlflowclient import mlflow_client
from experiment_lab.tier import NodeTier
from experiment_operator.runtime.fieldset import FIELD_MANAGER
from experiment_operator.trackingserver.lifecycle import RETAINED_ANNOTATION

PREFIX = "/mlflow"
RUNS = 5
WRITES_PER_PHASE = 20
"""Acknowledged writes wanted before the first fault and after each recovery."""
MAX_WRITES = 2000


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"safety-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


def server(name: str, host: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "experiment.aiscope/v1alpha2",
        "kind": "TrackingServer",
        "metadata": {"name": name},
        "spec": {"size": 1, "url": f"http://{host}{PREFIX}", "artifact_root": "s3://mlflow/"}
        | spec,
    }


def get_json(cluster: Cluster, *args: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    found: dict[str, Any] | None = json.loads(result.stdout) if result.returncode == 0 else None
    return found


def serve(tier: NodeTier, namespace: str, manifest: dict[str, Any]) -> None:
    """Apply the TrackingServer and wait until MLflow answers through Traefik."""
    cluster, name = tier.cluster, manifest["metadata"]["name"]
    host = manifest["spec"]["url"].split("/")[2]
    serving.apply(cluster, namespace, manifest)
    serving.ready_pods(cluster, namespace, name)
    serving.until(
        "MLflow through Traefik",
        lambda: serving.serves_mlflow(tier.ingress, host, f"{PREFIX}/", tls=False),
    )


def volume_dir(cluster: Cluster, namespace: str, claim: str) -> Path:
    """The directory on the node's disk behind a bound ``lab-local`` claim."""
    pvc = get_json(cluster, "pvc", claim, "-n", namespace)
    assert pvc is not None
    pv = get_json(cluster, "pv", pvc["spec"]["volumeName"])
    assert pv is not None
    return Path(pv["spec"]["local"]["path"])


def figures(test: str, **values: object) -> None:
    print(f"FIGURES {json.dumps({'test': test, **values})}")


# --- 1. a retained volume --------------------------------------------------------------------


def test_a_retained_volume_keeps_the_runs_through_delete_and_recreate(
    node_tier: NodeTier, operator: None, namespace: str
) -> None:
    node_tier.need_lab()  # the SQLite file is read on the node's disk
    cluster, name, host = node_tier.cluster, "retained", "retained.safety.lab.test"
    manifest = server(
        name,
        host,
        backend_uri="sqlite:////mlflow/mlflow.db",
        volumeSize="1Gi",
        storageClassName=node_tier.storage_class,
        volumeRetentionPolicy="Retain",
    )
    serve(node_tier, namespace, manifest)
    logged: dict[str, dict[str, float]] = {}
    with mlflow_client(node_tier.ingress, host, PREFIX, tls=False) as client:
        experiment_id = client.create_experiment("kept")
        for index in range(RUNS):
            run_id = client.create_run(experiment_id).info.run_id
            client.log_metric(run_id, "loss", 1.0 / (index + 1))
            client.log_param(run_id, "index", str(index))
            logged[run_id] = {"loss": 1.0 / (index + 1)}
    claim = get_json(cluster, "pvc", name, "-n", namespace)
    assert claim is not None

    cluster.kubectl("delete", "trackingserver", name, "-n", namespace, "--wait=true")
    serving.until("no Pods", lambda: not serving.server_pods(cluster, namespace, name))
    kept = get_json(cluster, "pvc", name, "-n", namespace)
    assert kept is not None, "the retained claim was deleted"
    assert kept["metadata"]["uid"] == claim["metadata"]["uid"]
    assert not kept["metadata"].get("ownerReferences")
    assert kept["metadata"]["annotations"][RETAINED_ANNOTATION] == name
    assert kept["status"]["phase"] == "Bound"
    database = volume_dir(cluster, namespace, name) / "mlflow.db"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        on_disk = {row[0] for row in db.execute("SELECT run_uuid FROM runs")}
    assert on_disk == set(logged), "the SQLite file on the kept volume lost runs"

    serve(node_tier, namespace, manifest)
    adopted = get_json(cluster, "pvc", name, "-n", namespace)
    assert adopted is not None
    assert adopted["metadata"]["uid"] == claim["metadata"]["uid"]
    with mlflow_client(node_tier.ingress, host, PREFIX, tls=False) as client:
        experiment = client.get_experiment_by_name("kept")
        assert experiment is not None
        assert experiment.experiment_id == experiment_id
        runs = client.search_runs([experiment_id], max_results=100)
        found = {run.info.run_id: dict(run.data.metrics) for run in runs}
    assert found == logged
    figures("retained-volume", runs_logged=len(logged), runs_after_recreate=len(found))


# --- 2. PostgreSQL under a killed server ----------------------------------------------------


@dataclass
class Writer:
    """Logs runs and metrics until stopped; remembers what the server acknowledged."""

    client: MlflowClient
    experiment_id: str
    runs: list[str] = field(default_factory=list)
    metrics: list[tuple[str, int]] = field(default_factory=list)  # (run, step)
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def acknowledged(self) -> int:
        return len(self.runs) + len(self.metrics)

    def loop(self) -> None:
        step = 0
        while not self.stop.is_set() and self.acknowledged < MAX_WRITES:
            try:
                if not self.runs or step % 10 == 0:
                    self.runs.append(self.client.create_run(self.experiment_id).info.run_id)
                run_id = self.runs[-1]
                self.client.log_metric(run_id, "m", float(step), step=step)
                self.metrics.append((run_id, step))
            except Exception:  # the server is down: what failed was not acknowledged
                self.failures += 1
                time.sleep(0.2)
            step += 1


def container_pids(pod_uid: str) -> list[int]:
    """Host pids of the Pod's container processes (their cgroups carry the Pod's uid; the
    sandbox's pause process is left alone)."""
    marker, pids = f"pod{pod_uid}", []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes()
            if marker in (proc / "cgroup").read_text() and b"pause" not in cmdline:
                pids.append(int(proc.name))
    return pids


@contextmanager
def writing(writer: Writer) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=writer.loop, name="mlflow-writer", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        writer.stop.set()
        thread.join(120)


def test_a_killed_server_loses_no_acknowledged_write_with_postgresql(
    node_tier: NodeTier, operator: None, namespace: str
) -> None:
    lab = node_tier.need_lab()  # PostgreSQL and the node's processes are the lab's
    cluster, name, host = node_tier.cluster, "pg", "pg.safety.lab.test"
    database = f"safety_{uuid.uuid4().hex[:8]}"
    backend_uri = lab.postgres.create_database(database)
    serve(node_tier, namespace, server(name, host, backend_uri=backend_uri))

    def acknowledged_more(writer: Writer, than: int) -> bool:
        return writer.acknowledged >= than + WRITES_PER_PHASE

    injected: list[str] = []
    with mlflow_client(node_tier.ingress, host, PREFIX, tls=False) as client:
        writer = Writer(client, client.create_experiment("under-kill"))
        with writing(writer):
            serving.until("first writes", lambda: acknowledged_more(writer, 0))
            (pod,) = serving.ready_pods(cluster, namespace, name)
            pids = container_pids(pod["metadata"]["uid"])
            assert pids, "no MLflow process of the Pod found on the node"
            before = writer.acknowledged
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            injected.append(f"SIGKILL to {len(pids)} MLflow processes after {before} writes")
            serving.until("writes after the restart", lambda: acknowledged_more(writer, before))
            (pod,) = serving.ready_pods(cluster, namespace, name)
            restarts = pod["status"]["containerStatuses"][0]["restartCount"]
            before = writer.acknowledged
            cluster.kubectl("delete", "pod", pod["metadata"]["name"], "-n", namespace,
                            "--grace-period=0", "--force")  # fmt: skip
            injected.append(f"Pod force-deleted after {before} writes")
            serving.until("writes from the new Pod", lambda: acknowledged_more(writer, before))
        (pod,) = serving.ready_pods(cluster, namespace, name)

        def read_back() -> dict[str, set[int]] | None:
            """Every run's metric steps, or None while the proxy has no ready endpoint yet
            (a 503 right after the force-deleted Pod's replacement turned Ready)."""
            try:
                found: dict[str, set[int]] = {}
                for run_id in writer.runs:
                    assert client.get_run(run_id).info.run_id == run_id
                    steps = client.get_metric_history(run_id, "m")
                    found[run_id] = {int(m.step) for m in steps}
                return found
            except MlflowException:
                return None

        history: dict[str, set[int]] = serving.until("the runs read back", read_back, timeout=120)
    missing = [(run, step) for run, step in writer.metrics if step not in history[run]]
    figures(
        "postgresql-kill",
        injected=injected,
        container_restarts=restarts,
        runs_acknowledged=len(writer.runs),
        metrics_acknowledged=len(writer.metrics),
        failed_requests=writer.failures,
        metrics_missing=len(missing),
    )
    assert restarts >= 1, "the SIGKILL did not restart the container"
    assert missing == [], f"acknowledged metrics lost: {missing[:10]}"


# --- 3. a foreign claim -----------------------------------------------------------------------


def test_a_foreign_claim_with_data_is_never_written_deleted_or_mounted(
    node_tier: NodeTier, operator: None, namespace: str
) -> None:
    node_tier.need_lab()  # the data is written and read on the node's disk
    cluster, name, host = node_tier.cluster, "foreign", "foreign.safety.lab.test"
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": {"team": "someone-else"}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": node_tier.storage_class,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    serving.apply(cluster, namespace, claim)

    def phase() -> str | None:
        pvc = get_json(cluster, "pvc", name, "-n", namespace) or {}
        found: str | None = pvc.get("status", {}).get("phase")
        return found

    serving.until("the foreign claim bound", lambda: phase() == "Bound")
    data = volume_dir(cluster, namespace, name)
    payload = f"someone else's data {uuid.uuid4().hex}\n"
    (data / "precious.txt").write_text(payload)
    original = get_json(cluster, "pvc", name, "-n", namespace)
    assert original is not None

    manifest = server(
        name,
        host,
        backend_uri="sqlite:////mlflow/mlflow.db",
        volumeSize="1Gi",
        storageClassName=node_tier.storage_class,
    )
    serving.apply(cluster, namespace, manifest)

    def volume_reason() -> str | None:
        ts = get_json(cluster, "trackingserver", name, "-n", namespace) or {}
        conditions = ts.get("status", {}).get("conditions", [])
        return next((c["reason"] for c in conditions if c["type"] == "Volume"), None)

    serving.until("Volume=ForeignObject", lambda: volume_reason() == "ForeignObject")
    deployment = serving.until(
        "the Deployment", lambda: get_json(cluster, "deployment", name, "-n", namespace)
    )
    replicas_while_foreign = deployment["spec"]["replicas"]
    # Volume fields cleared (size 0: no Pod is needed from here on), then the server deleted.
    cluster.kubectl("patch", "trackingserver", name, "-n", namespace, "--type=merge",
                    "-p", '{"spec":{"volumeSize":"","storageClassName":"","size":0}}')  # fmt: skip
    serving.until("Volume=NotRequested", lambda: volume_reason() == "NotRequested")
    cluster.kubectl("delete", "trackingserver", name, "-n", namespace, "--wait=true")
    serving.until("no Pods", lambda: not serving.server_pods(cluster, namespace, name))

    after = get_json(cluster, "pvc", name, "-n", namespace)
    assert after is not None, "the foreign claim was deleted"
    assert after["metadata"]["uid"] == original["metadata"]["uid"]
    assert after["metadata"]["resourceVersion"] == original["metadata"]["resourceVersion"]
    managers = {entry["manager"] for entry in after["metadata"].get("managedFields", [])}
    assert FIELD_MANAGER not in managers
    files = sorted(p.name for p in data.iterdir())
    figures("foreign-claim", replicas_while_foreign=replicas_while_foreign, files_in_it=files)
    assert (data / "precious.txt").read_text() == payload
    assert files == ["precious.txt"], f"something wrote into the foreign volume: {files}"
    assert replicas_while_foreign == 0, "the server's Pods would mount the foreign claim"
