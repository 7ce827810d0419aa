"""Why a server is not available, from Pod and Deployment status as kubelets and controllers
write it (shapes taken from kubelet 1.35 and kube-controller-manager)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from experiment_operator.trackingserver.mlflow import ServerCommand
from experiment_operator.trackingserver.podstatus import (
    PROBE_GRACE,
    diagnose,
    probe_grace_left,
    redact_credentials,
)

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
OP, IMAGE = ServerCommand.OPERATOR, ServerCommand.IMAGE
PG_PASSWORD = "s3cr3t"


def stamp(ago: timedelta) -> str:
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    containers: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    phase: str = "Pending",
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "ts-7f9c6d-x2k4q", "namespace": "team-a"}
    if deleting:
        meta["deletionTimestamp"] = stamp(timedelta(seconds=1))
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if containers is not None:
        status["containerStatuses"] = containers
    if init is not None:
        status["initContainerStatuses"] = init
    return {"metadata": meta, "status": status}


def waiting(name: str, reason: str, message: str = "", **extra: Any) -> dict[str, Any]:
    state: dict[str, Any] = {"reason": reason}
    if message:
        state["message"] = message
    return {
        "name": name,
        "ready": False,
        "started": False,
        "restartCount": extra.pop("restarts", 0),
        "state": {"waiting": state},
        "image": "ghcr.io/mlflow/mlflow:v3.17.2-full",
        **extra,
    }


def crashed(name: str, exit_code: int, reason: str, log: str) -> dict[str, Any]:
    last = {
        "terminated": {
            "exitCode": exit_code,
            "reason": reason,
            "message": log,
            "startedAt": stamp(timedelta(minutes=2)),
            "finishedAt": stamp(timedelta(minutes=1)),
        }
    }
    return waiting(
        name,
        "CrashLoopBackOff",
        f"back-off 40s restarting failed container={name} pod=ts-7f9c6d-x2k4q_team-a(uid)",
        restarts=3,
        lastState=last,
    )


def running(name: str = "mlflow", *, ready: bool, started: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "ready": ready,
        "started": started,
        "restartCount": 0,
        "state": {"running": {"startedAt": stamp(timedelta(minutes=5))}},
    }


def ready_condition(status: str, ago: timedelta) -> dict[str, Any]:
    return {"type": "Ready", "status": status, "lastTransitionTime": stamp(ago)}


DB_DOWN_LOG = (
    "Traceback (most recent call last):\n  ...\n"
    "sqlalchemy.exc.OperationalError: (psycopg.OperationalError) connection failed: "
    'connection to server at "10.96.12.4", port 5432 failed: Connection refused\n'
    "\tIs the server running on that host and accepting TCP/IP connections?\n"
    f"(Background on this error: postgresql://mlflow:{PG_PASSWORD}@db.team-a:5432/mlflow)\n"
)
MIGRATION_LOG = (
    "INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.\n"
    "alembic.util.exc.CommandError: Can't locate revision identified by '9e3a1c2b4f77'\n"
)
CASES: list[tuple[str, dict[str, Any] | None, list[dict[str, Any]], str, str]] = [
    (
        "image-pull",
        None,
        [
            pod(
                [
                    waiting(
                        "mlflow",
                        "ImagePullBackOff",
                        'Back-off pulling image "ghcr.io/mlflow/mlflow:v9.9.9": ErrImagePull: '
                        "failed to pull and unpack image: not found",
                    )
                ]
            )
        ],
        "ImagePullFailed",
        "container mlflow cannot pull image ghcr.io/mlflow/mlflow:v3.17.2-full: "
        "failed to pull and unpack image: not found",
    ),
    (
        "missing-secret-key",
        None,
        [
            pod(
                [
                    waiting(
                        "mlflow",
                        "CreateContainerConfigError",
                        "couldn't find key AWS_ACCESS_KEY_ID in Secret team-a/mlflow-s3",
                    )
                ]
            )
        ],
        "ContainerConfigError",
        "couldn't find key AWS_ACCESS_KEY_ID in Secret team-a/mlflow-s3",
    ),
    (
        "database-unreachable-in-migration",
        None,
        [
            pod(
                [waiting("mlflow", "PodInitializing")],
                init=[crashed("db-upgrade", 1, "Error", DB_DOWN_LOG)],
            )
        ],
        "DatabaseUnreachable",
        "container db-upgrade cannot reach the database: exit code 1 (Error)",
    ),
    (
        "migration-fails",
        None,
        [
            pod(
                [waiting("mlflow", "PodInitializing")],
                init=[crashed("db-upgrade", 1, "Error", MIGRATION_LOG)],
            )
        ],
        "DatabaseMigrationFailed",
        "Can't locate revision identified by '9e3a1c2b4f77'",
    ),
    (
        "oom",
        None,
        [pod([crashed("mlflow", 137, "OOMKilled", "")])],
        "OOMKilled",
        "container mlflow ran out of memory",
    ),
    (
        "crash-loop",
        None,
        [
            pod(
                [
                    crashed(
                        "mlflow",
                        2,
                        "Error",
                        "Usage: mlflow server [OPTIONS]\n"
                        "Error: Invalid value for '--workers': 'many' is not a valid integer.",
                    )
                ]
            )
        ],
        "CrashLoopBackOff",
        "container mlflow keeps crashing: exit code 2 (Error): Usage: mlflow server [OPTIONS] | "
        "Error: Invalid value for '--workers'",
    ),
    (
        "unschedulable",
        None,
        [
            pod(
                conditions=[
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/3 nodes are available: 3 node(s) didn't match Pod's "
                        "node affinity/selector.",
                    }
                ]
            )
        ],
        "Unschedulable",
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
    ),
    (
        "probe-failing",
        None,
        [
            pod(
                [running(ready=False)],
                conditions=[ready_condition("False", timedelta(minutes=3))],
                phase="Running",
            )
        ],
        "ProbeFailing",
        "container mlflow runs but its readiness probe fails",
    ),
    (
        "failed-create",
        {
            "status": {
                "conditions": [
                    {
                        "type": "ReplicaFailure",
                        "status": "True",
                        "reason": "FailedCreate",
                        "message": 'pods "ts-7f9c6d-x2k4q" is forbidden: violates '
                        'PodSecurity "restricted:latest": runAsNonRoot != true',
                    }
                ]
            }
        },
        [],
        "FailedCreate",
        'Pods cannot be created: pods "ts-7f9c6d-x2k4q" is forbidden: violates PodSecurity',
    ),
    (
        "progress-deadline",
        {
            "status": {
                "conditions": [
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": 'ReplicaSet "ts-7f9c6d" has timed out progressing.',
                    }
                ]
            }
        },
        [pod([running(ready=True)], phase="Running")],
        "ProgressDeadlineExceeded",
        'ReplicaSet "ts-7f9c6d" has timed out progressing.',
    ),
]


@pytest.mark.parametrize(
    ("deployment", "pods", "reason", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_reason(
    deployment: dict[str, Any] | None, pods: list[dict[str, Any]], reason: str, message: str
) -> None:
    found = diagnose(deployment, pods, command=OP, now=NOW, secrets=[PG_PASSWORD])
    assert found is not None
    assert found.reason == reason
    assert message in found.message
    assert PG_PASSWORD not in found.message


def test_credentials_never_reach_the_message() -> None:
    log = DB_DOWN_LOG + "password=hunter2 token: abc123 AWS_SECRET=x\n"
    found = diagnose(None, [pod([crashed("mlflow", 1, "Error", log)])], command=OP, now=NOW)
    assert found is not None
    for secret in (PG_PASSWORD, "hunter2", "abc123"):
        assert secret not in found.message
    assert redact_credentials("mysql://root:pw@db/m") == "mysql://root:[REDACTED]@db/m"
    assert redact_credentials("uses the key AKIA1", ["AKIA1"]) == "uses the key [REDACTED]"


def test_a_failing_pull_keeps_one_message_across_the_kubelets_retries() -> None:
    error = 'failed to pull and unpack image "x:1": connection refused'
    pulling = waiting("mlflow", "ErrImagePull", error)
    backing_off = waiting(
        "mlflow", "ImagePullBackOff", f'Back-off pulling image "x:1": ErrImagePull: {error}'
    )
    older_kubelet = waiting("mlflow", "ImagePullBackOff", 'Back-off pulling image "x:1"')
    messages = [
        found.message
        for status in (pulling, backing_off)
        if (found := diagnose(None, [pod([status])], command=OP, now=NOW)) is not None
    ]
    assert (
        messages
        == [f"container mlflow cannot pull image ghcr.io/mlflow/mlflow:v3.17.2-full: {error}"] * 2
    )
    found = diagnose(None, [pod([older_kubelet])], command=OP, now=NOW)
    assert found is not None
    assert found.message == "container mlflow cannot pull image ghcr.io/mlflow/mlflow:v3.17.2-full"
    invalid = diagnose(
        None, [pod([waiting("mlflow", "InvalidImageName", "bad ref")])], command=OP, now=NOW
    )
    assert invalid is not None
    assert invalid.message.endswith("ghcr.io/mlflow/mlflow:v3.17.2-full: InvalidImageName: bad ref")


def test_most_specific_reason_wins_across_pods() -> None:
    pods = [
        pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]),
        pod([waiting("mlflow", "ErrImagePull", "not found")]),
    ]
    found = diagnose(None, pods, command=OP, now=NOW)
    assert found is not None
    assert found.reason == "ImagePullFailed"


def test_terminating_and_healthy_pods_explain_nothing() -> None:
    dying = pod([waiting("mlflow", "ErrImagePull", "x")], deleting=True)
    healthy = pod([running(ready=True)], conditions=[ready_condition("True", timedelta(hours=1))])
    assert diagnose(None, [dying, healthy], command=OP, now=NOW) is None
    starting = pod([waiting("mlflow", "ContainerCreating")])
    assert diagnose(None, [starting], command=OP, now=NOW) is None


def test_unready_within_the_grace_period_is_just_starting() -> None:
    fresh = pod(
        [running(ready=False)], conditions=[ready_condition("False", timedelta(seconds=10))]
    )
    assert diagnose(None, [fresh], command=OP, now=NOW) is None
    left = probe_grace_left([fresh], NOW)
    assert left == (PROBE_GRACE - timedelta(seconds=10)).total_seconds()
    assert probe_grace_left([fresh], NOW + PROBE_GRACE) is None


def test_a_server_that_ends_with_exit_code_0_crashes_too() -> None:
    """MLflow 3.17 exits 0 when uvicorn refuses `--workers=two`; the kubelet restarts it."""
    ended = crashed("mlflow", 0, "Completed", "")
    found = diagnose(None, [pod([ended])], command=OP, now=NOW)
    assert found is not None
    assert found.reason == "CrashLoopBackOff"
    assert "exit code 0 (Completed)" in found.message
    assert "kubectl logs --previous" in found.message
    migrated = crashed("db-upgrade", 0, "Completed", "")
    migrated["state"] = {"terminated": migrated["lastState"]["terminated"]}
    assert (
        diagnose(None, [pod([running(ready=False)], init=[migrated])], command=OP, now=NOW) is None
    )


def test_the_images_own_command_gets_a_hint() -> None:
    exited = crashed("mlflow", 0, "Completed", "")
    exited["lastState"]["terminated"]["exitCode"] = 1
    found = diagnose(None, [pod([exited])], command=IMAGE, now=NOW)
    assert found is not None
    assert found.reason == "CrashLoopBackOff"
    assert "serverCommand: Operator" in found.message
