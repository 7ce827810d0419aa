"""Pure parts of the reconciler: status computation and finalizer patches."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.trackingserver.lifecycle import (
    LEGACY_FINALIZER,
    RETAIN_FINALIZER,
    finalizer_patch,
)
from experiment_operator.trackingserver.status import (
    ConditionValue,
    Findings,
    compute_status,
    deployment_readiness,
    only_rollout_progress,
)

Sample = Callable[..., TrackingServer]
NOW = datetime(2026, 1, 1, tzinfo=UTC)
TLS_OK = ConditionValue("True", "Valid", "certificate valid")
NO_VOLUME = ConditionValue("True", "NotRequested", "no volume requested")


def deployment(
    generation: int = 1,
    observed: int = 1,
    ready: int = 1,
    updated: int = 1,
    replicas: int | None = None,
) -> Any:
    return {
        "metadata": {"generation": generation},
        "status": {
            "observedGeneration": observed,
            "replicas": ready if replicas is None else replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "conditions": [{"type": "Available", "status": "True"}],
        },
    }


def with_status(ts: TrackingServer, status: dict[str, Any]) -> TrackingServer:
    data = ts.model_dump(by_alias=True)
    data["spec"] = {**data["spec"], "key": ts.spec.key.get_secret_value()}
    for field in ("aws_access_key", "aws_secret_key", "backend_uri"):
        data["spec"][field] = getattr(ts.spec, field).get_secret_value()
    data["metadata"]["generation"] = 1
    data["status"] = status
    return TrackingServer.from_api(data)


def test_readiness_needs_the_current_generation_and_enough_ready_updated_replicas(
    sample: Sample,
) -> None:
    ts = sample("blog")  # size 1
    assert deployment_readiness(ts, None).reason == "Progressing"
    assert deployment_readiness(ts, deployment(generation=2, observed=1)).status == "False"
    rolling = deployment_readiness(ts, deployment(ready=0))
    assert rolling.reason == "Progressing"
    # One message for every step of a rollout: its steps are no status writes.
    assert deployment_readiness(ts, deployment(generation=2, observed=1)) == rolling
    assert deployment_readiness(ts, deployment(updated=0)) == rolling
    # A rolling update to a spec whose Pod cannot start: the old Pod is the ready one.
    assert deployment_readiness(ts, deployment(ready=1, updated=1, replicas=2)) == rolling
    assert deployment_readiness(ts, deployment()) == ConditionValue(
        "True", "Available", "1/1 replicas ready"
    )


def test_problems_come_first_and_warnings_only_when_new(sample: Sample) -> None:
    ts = with_status(sample("blog"), {})
    foreign = ConditionValue("False", "ForeignObject", "Service trackingserver exists")
    findings = Findings(TLS_OK, NO_VOLUME, [foreign], deployment(), routed=True)
    status, warnings = compute_status(ts, findings, now=NOW)
    ready = status["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "ForeignObject")
    assert warnings == [foreign]
    assert status["url"] == ts.spec.url
    assert (status["replicas"], status["readyReplicas"], status["observedGeneration"]) == (1, 1, 1)

    # The same findings again, later: the identical status, no new warning (so no writes).
    again, warnings = compute_status(with_status(ts, status), findings, now=NOW + timedelta(1))
    assert again == status
    assert warnings == []


def test_transition_time_moves_only_with_the_status(sample: Sample) -> None:
    ts = with_status(sample("blog"), {})
    progressing = Findings(TLS_OK, NO_VOLUME, [], deployment(ready=0), routed=True)
    first, _ = compute_status(ts, progressing, now=NOW)
    later = NOW + timedelta(minutes=5)
    available = Findings(TLS_OK, NO_VOLUME, [], deployment(), routed=True)
    second, _ = compute_status(with_status(ts, first), available, now=later)
    assert second["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"
    assert second["conditions"][1] == first["conditions"][1]  # TLS unchanged


def test_no_url_until_routed(sample: Sample) -> None:
    ts = with_status(sample("blog"), {})
    status, _ = compute_status(ts, Findings(TLS_OK, NO_VOLUME), now=NOW)
    assert "url" not in status
    assert "replicas" not in status


def test_finalizer_patch() -> None:
    meta = {"resourceVersion": "7", "finalizers": ["other", LEGACY_FINALIZER]}
    obj: dict[str, Any] = {"metadata": meta}
    guard = {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    assert finalizer_patch(obj, [RETAIN_FINALIZER], [LEGACY_FINALIZER, RETAIN_FINALIZER]) == [
        guard,
        {"op": "add", "path": "/metadata/finalizers", "value": ["other", RETAIN_FINALIZER]},
    ]
    assert finalizer_patch({"metadata": {"resourceVersion": "7"}}, [RETAIN_FINALIZER], []) == [
        guard,
        {"op": "add", "path": "/metadata/finalizers", "value": [RETAIN_FINALIZER]},
    ]
    assert finalizer_patch(obj, [], [RETAIN_FINALIZER]) == []
    assert finalizer_patch(obj, ["other"], []) == []


def test_replica_counts_wait_for_the_end_of_a_rollout(sample: Sample) -> None:
    ts = sample("blog")
    findings = Findings(TLS_OK, NO_VOLUME, [], deployment(ready=0), routed=True)
    first, _ = compute_status(with_status(ts, {}), findings, now=NOW)
    assert (first["replicas"], first["readyReplicas"]) == (0, 0)
    step = Findings(TLS_OK, NO_VOLUME, [], deployment(ready=0, updated=1) | {"status": {
        **deployment(ready=0)["status"], "replicas": 2}}, routed=True)  # fmt: skip
    again, _ = compute_status(with_status(ts, first), step, now=NOW + timedelta(1))
    assert again == first, "a rollout step alone is no status change"
    done, _ = compute_status(with_status(ts, first), Findings(
        TLS_OK, NO_VOLUME, [], deployment(), routed=True), now=NOW + timedelta(2))  # fmt: skip
    assert (done["replicas"], done["readyReplicas"]) == (1, 1)


def test_only_rollout_progress_is_told_apart_from_news(sample: Sample) -> None:
    ts = sample("blog")
    done = Findings(TLS_OK, NO_VOLUME, [], deployment(), routed=True)
    ready, _ = compute_status(with_status(ts, {}), done, now=NOW)
    rolling = Findings(TLS_OK, NO_VOLUME, [], deployment(generation=2, observed=1), routed=True)
    progress, _ = compute_status(with_status(ts, ready), rolling, now=NOW)
    assert only_rollout_progress({}, {**progress, "observedGeneration": 1}), "a new one"
    assert not only_rollout_progress({}, {**progress, "observedGeneration": 2}), "changed early"
    assert only_rollout_progress(ready, progress)
    other_tls = ConditionValue("True", "NotRequested", "url is http")
    changed = Findings(other_tls, NO_VOLUME, [], deployment(generation=2, observed=1), routed=True)
    news, _ = compute_status(with_status(ts, ready), changed, now=NOW)
    assert not only_rollout_progress(ready, news)
    foreign = ConditionValue("False", "ForeignObject", "Service trackingserver exists")
    blocked, _ = compute_status(with_status(ts, {}), Findings(
        TLS_OK, NO_VOLUME, [foreign], deployment(), routed=True), now=NOW)  # fmt: skip
    assert not only_rollout_progress(blocked, progress), "a problem that goes away is news"
