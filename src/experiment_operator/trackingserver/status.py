"""The TrackingServer's status, computed purely from what one reconcile found.

Conditions: `Ready` (the summary, with the most important reason first), `TLS` and `Volume`
(what the seed left implicit). Timestamps only move when a condition's status changes, so an
unchanged world yields an identical status and the status writer makes no request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from experiment_operator.api.conditions import READY, Condition, ConditionStatus, set_condition
from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver import podstatus
from experiment_operator.trackingserver.podstatus import Diagnosis
from experiment_operator.trackingserver.secrets import CredentialsSource

TLS = "TLS"
VOLUME = "Volume"

AVAILABLE = "Available"
PROGRESSING = "Progressing"
FOREIGN_OBJECT = "ForeignObject"
API_NOT_SERVED = "APINotServed"
CREDENTIALS_SECRET_NOT_FOUND = "CredentialsSecretNotFound"
CREDENTIALS_SECRET_KEY_MISSING = "CredentialsSecretKeyMissing"
DEPLOYMENT_REJECTED = "DeploymentRejected"
VOLUME_UPDATE_FORBIDDEN = "VolumeUpdateForbidden"
INCOMPLETE_VOLUME_SPEC = "IncompleteVolumeSpec"
TLS_SECRET_NOT_FOUND = "SecretNotFound"
INVALID_URL = "InvalidURL"
NO_ROUTING_API = "NoRoutingAPIServed"
GATEWAY_NOT_SET = "GatewayNotSet"
TLS_NOT_USED = "TLSNotUsedByGateway"
GATEWAY_REASONS = frozenset(
    {
        "NotAllowedByListeners",
        "NoMatchingListenerHostname",
        "NoMatchingParent",
        "UnsupportedValue",
        "RefNotPermitted",
        "InvalidKind",
        "BackendNotFound",
        "UnsupportedProtocol",
        "NotAllowed",
        "ParentNotAccepted",
        "ListenersNotValid",
        "Invalid",
    }
)
"""Gateway API's standard reasons for an HTTPRoute or ListenerSet a Gateway refused."""

WARNING_REASONS = frozenset(
    {
        FOREIGN_OBJECT,
        API_NOT_SERVED,
        CREDENTIALS_SECRET_NOT_FOUND,
        CREDENTIALS_SECRET_KEY_MISSING,
        DEPLOYMENT_REJECTED,
        *podstatus.REASONS,
        VOLUME_UPDATE_FORBIDDEN,
        INCOMPLETE_VOLUME_SPEC,
        TLS_SECRET_NOT_FOUND,
        INVALID_URL,
        NO_ROUTING_API,
        GATEWAY_NOT_SET,
        TLS_NOT_USED,
        *GATEWAY_REASONS,
        "InvalidCertificate",
        "InvalidPrivateKey",
        "CertificateKeyMismatch",
        "CertificateExpired",
    }
)
"""Condition reasons that also deserve a Warning Event (once, when they appear or change)."""


@dataclass(frozen=True)
class ConditionValue:
    status: ConditionStatus
    reason: str
    message: str


@dataclass
class Findings:
    """What a reconcile observed; problems are listed in the order they should be reported."""

    tls: ConditionValue
    volume: ConditionValue
    problems: list[ConditionValue] = field(default_factory=list)
    """Reasons the server cannot be Ready regardless of the Deployment (Ready=False)."""
    deployment: dict[str, Any] | None = None
    routed: bool = False
    """Whether every routing object (or none, by option) is in place."""
    workload: Diagnosis | None = None
    """Why the Deployment's Pods are not available (from `podstatus.diagnose`), if known."""


def incomplete_volume(ts: TrackingServer) -> ConditionValue | None:
    """The seed silently ignored one volume field without the other; we say so."""
    spec = ts.spec
    if (spec.volume_size == "") == (spec.storage_class_name == ""):
        return None
    given, missing = (
        ("volumeSize", "storageClassName")
        if spec.volume_size
        else ("storageClassName", "volumeSize")
    )
    return ConditionValue(
        "False",
        INCOMPLETE_VOLUME_SPEC,
        f"{given} is set but {missing} is empty: no volume is made (set both)",
    )


def volume_condition(ts: TrackingServer) -> ConditionValue:
    """The Volume condition when every volume write went through."""
    spec = ts.spec
    if spec.volume_enabled:
        name = ts.metadata.name
        message = f"PersistentVolumeClaim {name}: {spec.volume_size} of {spec.storage_class_name}"
        return ConditionValue("True", "Applied", message)
    return ConditionValue("True", "NotRequested", "no volume requested")


def missing_credentials_keys(
    source: CredentialsSource, secret: dict[str, Any]
) -> ConditionValue | None:
    """The keys s3CredentialsSecretRef names that its Secret lacks (names only, never values):
    without them the Pods would fail with CreateContainerConfigError."""
    keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
    missing = [
        f"{key} (s3CredentialsSecretRef.{field})"
        for field, key in (
            ("accessKeyIDKey", source.access_key_id_key),
            ("secretAccessKeyKey", source.secret_access_key_key),
        )
        if key not in keys
    ]
    if not missing:
        return None
    message = f"the Secret {source.secret_name} has no key {' and no key '.join(missing)}"
    return ConditionValue("False", CREDENTIALS_SECRET_KEY_MISSING, message)


def ready_problems(foreign: list[str], not_served: list[str]) -> list[ConditionValue]:
    """Ready=False reasons from children that could not be written at all."""
    problems: list[ConditionValue] = []
    if foreign:
        problems.append(
            ConditionValue(
                "False",
                FOREIGN_OBJECT,
                f"{', '.join(foreign)} already exist(s) and is not controlled by this "
                "TrackingServer; left untouched: delete or rename it",
            )
        )
    if not_served:
        problems.append(
            ConditionValue(
                "False",
                API_NOT_SERVED,
                f"{', '.join(not_served)} not served by the cluster: install the CRDs or "
                "choose another --ingress-controller",
            )
        )
    return problems


def deployment_readiness(ts: TrackingServer, deployment: dict[str, Any] | None) -> ConditionValue:
    """Available when the Deployment controller has seen the current spec, every replica runs
    it and at least `size` are ready; otherwise Progressing with what is missing.

    `updatedReplicas` counts the new template's Pods whether ready or not, and `readyReplicas`
    counts the old ones too: while an old Pod still serves beside a new one that cannot start
    (a rolling update to a broken spec), only `replicas > updatedReplicas` tells."""
    if deployment is None:
        return ConditionValue("False", PROGRESSING, "the Deployment does not exist yet")
    meta, status = deployment["metadata"], deployment.get("status") or {}
    size = ts.spec.size
    observed = status.get("observedGeneration", 0) >= meta.get("generation", 0)
    ready = status.get("readyReplicas", 0)
    updated = status.get("updatedReplicas", 0)
    old = status.get("replicas", 0) > updated
    available = any(
        c.get("type") == "Available" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    if observed and not old and ready >= size and updated >= size and (available or size == 0):
        return ConditionValue("True", AVAILABLE, f"{ready}/{size} replicas ready")
    # One message for the whole rollout: its steps are not status writes (replica counts are
    # in status.replicas/readyReplicas).
    return ConditionValue("False", PROGRESSING, f"rolling out: {size} updated replica(s) wanted")


def ready_condition(ts: TrackingServer, findings: Findings) -> ConditionValue:
    if findings.problems:
        first = findings.problems[0]
        message = "; ".join(p.message for p in findings.problems)
        return ConditionValue("False", first.reason, message)
    readiness = deployment_readiness(ts, findings.deployment)
    if readiness.status != "True" and findings.workload is not None:
        return ConditionValue("False", findings.workload.reason, findings.workload.message)
    return readiness


def compute_status(
    ts: TrackingServer, findings: Findings, *, now: datetime
) -> tuple[dict[str, Any], list[ConditionValue]]:
    """The new status as the API stores it, and the warnings that are new since the last one."""
    generation = ts.metadata.generation
    previous = ts.status.conditions
    conditions: list[Condition] = list(previous)
    values = {
        READY: ready_condition(ts, findings),
        TLS: findings.tls,
        VOLUME: findings.volume,
    }
    warnings: list[ConditionValue] = []
    for type_, value in values.items():
        before = next((c for c in previous if c.type == type_), None)
        changed = before is None or (before.reason, before.message) != (
            value.reason,
            value.message,
        )
        if changed and value.reason in WARNING_REASONS and value not in warnings:
            warnings.append(value)
        conditions = set_condition(
            conditions,
            type_,
            value.status,
            value.reason,
            value.message,
            observed_generation=generation,
            now=now,
        )
    status: dict[str, Any] = {"conditions": [c.to_api() for c in conditions]}
    if generation is not None:
        status["observedGeneration"] = generation
    if findings.routed:
        status["url"] = ts.spec.url
    dep_status = (findings.deployment or {}).get("status") or {}
    if findings.deployment is not None:
        status["replicas"] = dep_status.get("replicas", 0)
        status["readyReplicas"] = dep_status.get("readyReplicas", 0)
        last = ts.status
        rolling = values[READY].reason == PROGRESSING
        if rolling and last.replicas is not None and last.ready_replicas is not None:
            # During a rollout the counts change at every step; they are refreshed with the
            # next condition change (at the latest when it is Available again).
            status["replicas"], status["readyReplicas"] = last.replicas, last.ready_replicas
    return status, warnings


ROLLOUT_FIELDS = frozenset({"observedGeneration", "replicas", "readyReplicas"})


def _reported(status: dict[str, Any]) -> tuple[Any, ...]:
    """What a status tells besides the progress of a rollout: every field but the generation
    and replica counts, every condition but Ready (without generation and timestamps)."""
    rest = {k: v for k, v in status.items() if k not in ROLLOUT_FIELDS and k != "conditions"}
    conditions = sorted(
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
        for c in status.get("conditions") or []
        if c.get("type") != READY
    )
    return (sorted(rest.items()), conditions)


def only_rollout_progress(current: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether writing `new` over `current` would only report how a rollout progresses (or,
    for a new TrackingServer, still at its first generation and without any status yet,
    report it for the first time). A current problem that goes away is news."""
    if not current:
        return bool(new.get("observedGeneration") == 1)
    reasons = [c.get("reason") for c in current.get("conditions") or [] if c.get("type") == READY]
    if not reasons or reasons[0] not in (AVAILABLE, PROGRESSING):
        return False
    return _reported(current) == _reported(new)
