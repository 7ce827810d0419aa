"""Each reason a TrackingServer's MLflow is broken appears on real Pods as `Ready=False` with its
precise reason and a Warning Event, then clears by itself once fixed (`Ready=True`).

One TrackingServer goes through every reason in file order (the tests build on each other, so
few Pods start): its image cannot be pulled (then the lab's image); a ``nodeSelector`` no node
matches; an ``env`` entry that makes MLflow exit at start; a PostgreSQL ``backend_uri`` on a
closed port (then the lab's database); a server that hangs, so its probes fail. While the new
template is broken the previous Pod keeps serving (a rolling update), so reverting the mistake
clears the reason without a new Pod. The time each reason took to appear and to clear is printed
(measured, never asserted).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from experiment_lab import serving
from experiment_lab.cluster import Cluster
from experiment_lab.tier import NodeTier
from experiment_operator.trackingserver import podstatus

NAME = "broken"
MISSING_IMAGE = "localhost/does-not-exist:1"
APPEAR_WITHIN = 180.0
"""Seconds for a reason to show (a crash needs MLflow to start and exit once)."""
TIMES: dict[str, tuple[float, float]] = {}
STOP_SERVER = """\
import os, signal, sys
action = signal.SIGSTOP if sys.argv[1] == "stop" else signal.SIGCONT
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) not in (1, os.getpid()):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"uvicorn" in cmdline:
            os.kill(int(pid), action)
            print(pid)
"""
"""Stop (or continue) the server's uvicorn process: MLflow hangs as a deadlocked server does."""


@pytest.fixture(scope="module")
def namespace(node_tier: NodeTier) -> Iterator[str]:
    name = f"broken-{uuid.uuid4().hex[:8]}"
    node_tier.cluster.kubectl("create", "namespace", name)
    yield name
    for reason, (appeared, cleared) in TIMES.items():
        print(f"{reason}: appeared after {appeared:.1f} s, cleared {cleared:.1f} s after the fix")
    node_tier.cluster.kubectl("delete", "namespace", name, "--wait=false")


def patch(cluster: Cluster, namespace: str, spec: dict[str, Any]) -> None:
    body = json.dumps({"spec": spec})
    cluster.kubectl("patch", "trackingserver", NAME, "-n", namespace, "--type=merge", "-p", body)


def warning_events(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get", "events", "-n", namespace, "-o", "json",
        "--field-selector", f"involvedObject.kind=TrackingServer,involvedObject.name={NAME},"
        "type=Warning",
    ).stdout  # fmt: skip
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def broken_then_fixed(
    cluster: Cluster,
    namespace: str,
    reason: str,
    fix: Callable[[], None],
    *,
    clear_within: float = serving.READY_WITHIN,
) -> dict[str, Any]:
    """Wait for Ready=False with `reason` and its Warning Event, apply `fix`, wait for Ready=True;
    returns the condition while broken and records how long each step took."""
    started = time.monotonic()

    def broken() -> dict[str, Any] | None:
        ready = serving.ready_condition(cluster, namespace, NAME)
        return ready if (ready.get("status"), ready.get("reason")) == ("False", reason) else None

    condition: dict[str, Any] = serving.until(f"Ready=False {reason}", broken, APPEAR_WITHIN)
    appeared = time.monotonic() - started
    event = serving.until(
        f"a Warning Event {reason}",
        lambda: [e for e in warning_events(cluster, namespace) if e["reason"] == reason],
        timeout=30,
    )[0]
    assert event["message"] == condition["message"]
    print(f"\n{reason}: {condition['message']}")
    events = [e for e in warning_events(cluster, namespace) if e["reason"] == reason]
    print(f"{reason}: {len(events)} Warning Event message(s) so far")
    fixed_at = time.monotonic()
    fix()
    serving.until(
        f"Ready=True after fixing {reason}",
        lambda: serving.ready_condition(cluster, namespace, NAME).get("status") == "True",
        clear_within,
    )
    TIMES[reason] = (appeared, time.monotonic() - fixed_at)
    return condition


def test_an_image_that_cannot_be_pulled(
    node_tier: NodeTier, operator: None, namespace: str
) -> None:
    cluster = node_tier.cluster
    manifest = {
        "apiVersion": "experiment.aiscope/v1alpha2",
        "kind": "TrackingServer",
        "metadata": {"name": NAME},
        "spec": {
            "size": 1,
            "image": MISSING_IMAGE,
            "serverCommand": "Operator",
            "url": "http://broken.lab.test/broken",
            "backend_uri": "sqlite:////mlflow/mlflow.db",
            "artifact_root": "s3://broken/",
        },
    }
    serving.apply(cluster, namespace, manifest)
    condition = broken_then_fixed(
        cluster,
        namespace,
        podstatus.IMAGE_PULL_FAILED,
        lambda: patch(cluster, namespace, {"image": node_tier.mlflow_image}),
    )
    assert MISSING_IMAGE in condition["message"]


def test_a_node_selector_no_node_matches(node_tier: NodeTier, namespace: str) -> None:
    cluster = node_tier.cluster
    patch(cluster, namespace, {"nodeSelector": {"example.com/no-such-node": "true"}})
    condition = broken_then_fixed(
        cluster,
        namespace,
        podstatus.UNSCHEDULABLE,
        lambda: patch(cluster, namespace, {"nodeSelector": None}),
    )
    assert "node" in condition["message"]


def test_a_server_that_exits_at_start(node_tier: NodeTier, namespace: str) -> None:
    """`MLFLOW_WORKERS` is the operator's variable, replaced by the user's `env` entry. MLflow
    3.17 then exits with code 0 (its uvicorn refuses the value), which is a crash all the same."""
    cluster = node_tier.cluster
    patch(cluster, namespace, {"env": [{"name": "MLFLOW_WORKERS", "value": "two"}]})
    condition = broken_then_fixed(
        cluster, namespace, podstatus.CRASH_LOOP, lambda: patch(cluster, namespace, {"env": None})
    )
    assert "container mlflow keeps crashing: exit code" in condition["message"]


def test_a_database_on_a_closed_port(node_tier: NodeTier, namespace: str) -> None:
    """The same URI and password with the wrong port; the password is never shown."""
    lab = node_tier.need_lab()
    cluster = node_tier.cluster
    good = lab.postgres.create_database(f"broken_{uuid.uuid4().hex[:6]}")
    password = good.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    closed = good.replace(f":{lab.postgres.port}/", ":1/")
    assert closed != good
    patch(cluster, namespace, {"backend_uri": closed})
    condition = broken_then_fixed(
        cluster,
        namespace,
        podstatus.DATABASE_UNREACHABLE,
        lambda: patch(cluster, namespace, {"backend_uri": good}),
    )
    assert "refused" in condition["message"].lower()
    for event in warning_events(cluster, namespace):
        assert password not in event["message"]
    assert password not in json.dumps(serving.ready_condition(cluster, namespace, NAME))
    assert password not in condition["message"]


def test_a_server_whose_probes_fail(node_tier: NodeTier, namespace: str) -> None:
    """The server hangs (its process stopped): the readiness probe fails until it continues."""
    cluster = node_tier.cluster
    (pod,) = serving.ready_pods(cluster, namespace, NAME)

    def signal_server(action: str) -> None:
        cluster.kubectl(
            "exec", "-n", namespace, pod["metadata"]["name"], "-c", "mlflow", "--",
            "python", "-c", STOP_SERVER, action,
        )  # fmt: skip

    signal_server("stop")
    condition = broken_then_fixed(
        cluster, namespace, podstatus.PROBE_FAILING, lambda: signal_server("continue")
    )
    assert "readiness probe" in condition["message"]
