"""Why a TrackingServer's Deployment is not available, read from its Deployment and Pods.

A pure function of the objects (and the clock), so every case is unit-tested with the Pod status
a kubelet writes. Messages are stable while the problem lasts (no restart counts or times), so
the status and its Warning Event change only when the problem does, and they never carry a
credential: termination messages (the end of the log, `FallbackToLogsOnError`) are redacted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from experiment_operator.runtime.events import redact
from experiment_operator.trackingserver.mlflow import ServerCommand

FAILED_CREATE = "FailedCreate"
IMAGE_PULL_FAILED = "ImagePullFailed"
CONTAINER_CONFIG_ERROR = "ContainerConfigError"
DATABASE_UNREACHABLE = "DatabaseUnreachable"
DATABASE_MIGRATION_FAILED = "DatabaseMigrationFailed"
OOM_KILLED = "OOMKilled"
CRASH_LOOP = "CrashLoopBackOff"
UNSCHEDULABLE = "Unschedulable"
PROBE_FAILING = "ProbeFailing"
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"

REASONS = (
    FAILED_CREATE,
    IMAGE_PULL_FAILED,
    CONTAINER_CONFIG_ERROR,
    DATABASE_UNREACHABLE,
    DATABASE_MIGRATION_FAILED,
    OOM_KILLED,
    CRASH_LOOP,
    UNSCHEDULABLE,
    PROBE_FAILING,
    PROGRESS_DEADLINE_EXCEEDED,
)
"""Most specific first: when Pods show several problems, the first reason is reported."""

PROBE_GRACE = timedelta(seconds=30)
"""A started container may be unready this long (the first readiness probes) before it counts."""
MESSAGE_MAX = 600
_IMAGE_PULL = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "RegistryUnavailable",
        "SignatureValidationFailed",
    }
)
_CONFIG = frozenset({"CreateContainerConfigError", "CreateContainerError"})
_PULL_BACK_OFF = re.compile(r'^Back-off pulling image "[^"]*":?\s*')
_PULL_REASON = re.compile(r"^(ErrImagePull|ImagePullBackOff):\s*")
_DATABASE_DOWN = re.compile(
    r"could not connect to server|connection refused|connection to server at .* failed|"
    r"can't connect to mysql|could not translate host name|name or service not known|"
    r"timeout expired|unable to open database file|no route to host|"
    r"operationalerror.*(connect|timeout|host)",
    re.IGNORECASE,
)
_USERINFO = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")
_KEY_VALUE_SECRET = re.compile(
    r"((?:password|passwd|secret|token|access_key|secret_key)[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&]+",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Diagnosis:
    """Why the server is not available (a condition reason and message)."""

    reason: str
    message: str


def redact_credentials(text: str, secrets: Iterable[str] = ()) -> str:
    """Known secret values, URL passwords and `password=...` values replaced by [REDACTED]."""
    text = redact(text, [s for s in secrets if s])
    text = _USERINFO.sub(r"\1[REDACTED]@", text)
    return _KEY_VALUE_SECRET.sub(r"\1[REDACTED]", text)


def _tail(message: str) -> str:
    """The last lines of a log tail, which name the error of a Python traceback."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    text = " | ".join(lines[-3:])
    return text if len(text) <= MESSAGE_MAX else "…" + text[-MESSAGE_MAX:]


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == type_), None)


def _termination(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    state = status.get("state") or {}
    last = status.get("lastState") or {}
    return state.get("terminated") or last.get("terminated")


def _crash(
    status: Mapping[str, Any], init: bool, command: ServerCommand, secrets: Iterable[str]
) -> Diagnosis | None:
    """A container that exits with an error (in back-off, or an init container that failed).
    The server's container must never end, so it crashes even when it exits with code 0 (MLflow
    3.17 does when its uvicorn refuses the arguments)."""
    state = status.get("state") or {}
    waiting = state.get("waiting") or {}
    terminated = _termination(status)
    if terminated is None:
        return None
    server_ended = not init and "running" not in state
    failed = (
        terminated.get("exitCode", 0) != 0
        or terminated.get("reason") == "OOMKilled"
        or server_ended
    )
    if not failed or not (waiting.get("reason") == CRASH_LOOP or status.get("restartCount")):
        return None
    name = status.get("name", "")
    log = redact_credentials(terminated.get("message") or "", secrets)
    exit_reason = terminated.get("reason") or "Error"
    detail = f"exit code {terminated.get('exitCode')} ({exit_reason})"
    if log:
        detail += f": {_tail(log)}"
    elif terminated.get("exitCode", 0) == 0:
        detail += ", so no log in its termination message: see `kubectl logs --previous`"
    if exit_reason == "OOMKilled":
        return Diagnosis(OOM_KILLED, f"container {name} ran out of memory: raise resources")
    if _DATABASE_DOWN.search(log):
        message = f"container {name} cannot reach the database: {detail}"
        return Diagnosis(DATABASE_UNREACHABLE, message)
    if init:
        message = f"container {name} (the schema migration) fails: {detail}"
        return Diagnosis(DATABASE_MIGRATION_FAILED, message)
    message = f"container {name} keeps crashing: {detail}"
    if command is ServerCommand.IMAGE:
        message += (
            "; the image's own command runs (an image without one, e.g. built FROM "
            "ghcr.io/mlflow/mlflow, needs serverCommand: Operator)"
        )
    return Diagnosis(CRASH_LOOP, message)


def _pull_message(status: Mapping[str, Any], reason: str, text: str) -> str:
    """One message while a pull keeps failing: the kubelet alternates ErrImagePull (the error)
    and ImagePullBackOff ("Back-off pulling image "x": ErrImagePull: the error"), which would
    otherwise be a new status and Warning Event at every retry."""
    if reason in ("ErrImagePull", "ImagePullBackOff"):
        text = _PULL_REASON.sub("", _PULL_BACK_OFF.sub("", text)) if text != reason else ""
    else:
        text = f"{reason}: {text}" if text != reason else reason
    message = f"container {status.get('name', '')} cannot pull image {status.get('image', '')}"
    return f"{message}: {text}" if text else message


def _container_problems(
    pod: Mapping[str, Any], command: ServerCommand, secrets: Iterable[str]
) -> list[Diagnosis]:
    status = pod.get("status") or {}
    found: list[Diagnosis] = []
    for init, key in ((True, "initContainerStatuses"), (False, "containerStatuses")):
        for cs in status.get(key) or []:
            name = cs.get("name", "")
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason", "")
            text = redact_credentials(waiting.get("message") or reason, secrets)
            if reason in _IMAGE_PULL:
                found.append(Diagnosis(IMAGE_PULL_FAILED, _pull_message(cs, reason, text)))
            elif reason in _CONFIG:
                found.append(Diagnosis(CONTAINER_CONFIG_ERROR, f"container {name}: {text}"))
            else:
                crash = _crash(cs, init, command, secrets)
                if crash is not None:
                    found.append(crash)
    return found


def _unready_since(pod: Mapping[str, Any]) -> tuple[str, datetime | None] | None:
    """A started container that is not ready, and since when the Pod is not Ready."""
    ready = _condition(pod, "Ready")
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    unready = [
        cs for cs in statuses
        if "running" in (cs.get("state") or {}) and cs.get("started") and not cs.get("ready")
    ]  # fmt: skip
    if not unready or ready is None or ready.get("status") == "True":
        return None
    return unready[0].get("name", ""), _parse_time(ready.get("lastTransitionTime"))


def _live(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def probe_grace_left(pods: Iterable[Mapping[str, Any]], now: datetime) -> float | None:
    """Seconds until an unready started container counts as ProbeFailing (look again then)."""
    left = []
    for pod in _live(pods):
        unready = _unready_since(pod)
        if unready is not None:
            since = unready[1] or now
            seconds = (since + PROBE_GRACE - now).total_seconds()
            if seconds > 0:
                left.append(seconds)
    return min(left, default=None)


def diagnose(
    deployment: Mapping[str, Any] | None,
    pods: Iterable[Mapping[str, Any]],
    *,
    command: ServerCommand,
    now: datetime,
    secrets: Iterable[str] = (),
) -> Diagnosis | None:
    """The most specific reason the Deployment has fewer available replicas than wanted, or None
    (then it is just progressing). `secrets`: values to redact from messages."""
    secrets = list(secrets)
    found: list[Diagnosis] = []
    if deployment is not None:
        failure = _condition(deployment, "ReplicaFailure")
        if failure is not None and failure.get("status") == "True":
            message = redact_credentials(failure.get("message") or "", secrets)
            found.append(Diagnosis(FAILED_CREATE, f"Pods cannot be created: {message}"))
        progressing = _condition(deployment, "Progressing")
        if progressing is not None and progressing.get("reason") == PROGRESS_DEADLINE_EXCEEDED:
            message = progressing.get("message") or ""
            found.append(Diagnosis(PROGRESS_DEADLINE_EXCEEDED, message))
    for pod in _live(pods):
        found += _container_problems(pod, command, secrets)
        scheduled = _condition(pod, "PodScheduled")
        if scheduled is not None and scheduled.get("reason") == UNSCHEDULABLE:
            found.append(Diagnosis(UNSCHEDULABLE, scheduled.get("message") or "no node fits"))
        unready = _unready_since(pod)
        if unready is not None and (unready[1] or now) + PROBE_GRACE <= now:
            message = f"container {unready[0]} runs but its readiness probe fails"
            found.append(Diagnosis(PROBE_FAILING, message))
    if not found:
        return None
    return min(found, key=lambda d: REASONS.index(d.reason))
