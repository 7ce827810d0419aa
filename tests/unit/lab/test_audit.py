"""Counting one user's requests from audit log lines (as kube-apiserver v1.35 writes them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from experiment_lab.audit import (
    AuditLogTail,
    count_requests,
    parse_line,
    parse_lines,
)

OPERATOR = "system:serviceaccount:op:experiment-operator"


def line(
    verb: str,
    *,
    user: str = OPERATOR,
    stage: str = "ResponseComplete",
    resource: str | None = "deployments",
    group: str = "",
    subresource: str = "",
    namespace: str = "team-a",
    code: int = 200,
    at: str = "2026-11-27T05:25:00.472475Z",
    uri: str = "/apis/apps/v1/namespaces/team-a/deployments",
) -> str:
    """An audit event in the API server's compact JSON encoding."""
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "stage": stage,
        "requestURI": uri,
        "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": at,
        "stageTimestamp": at,
    }
    if resource is not None:
        ref = {"resource": resource, "namespace": namespace, "apiVersion": "v1"}
        if group:
            ref["apiGroup"] = group
        if subresource:
            ref["subresource"] = subresource
        event["objectRef"] = ref
    return json.dumps(event, separators=(",", ":"))


def epoch(at: str) -> float:
    return datetime.fromisoformat(at).astimezone(UTC).timestamp()


def test_parses_a_completed_request_of_the_user() -> None:
    request = parse_line(line("patch", group="apps", code=201), OPERATOR)
    assert request is not None
    assert (request.verb, request.resource, request.namespace, request.code) == (
        "patch",
        "deployments.apps",
        "team-a",
        201,
    )
    assert request.write
    assert request.received == epoch("2026-11-27T05:25:00.472475+00:00")


def test_other_users_and_other_stages_are_skipped() -> None:
    assert parse_line(line("list", user="envtest-admin"), OPERATOR) is None
    assert parse_line(line("list", stage="ResponseStarted"), OPERATOR) is None
    assert parse_line(line("list", stage="RequestReceived"), OPERATOR) is None
    # Another account whose name starts like ours is a different user.
    assert parse_line(line("list", user=OPERATOR + "-2"), OPERATOR) is None


def test_a_message_quoting_the_user_does_not_make_it_theirs() -> None:
    event = json.loads(line("create", user="envtest-admin", code=403))
    event["responseStatus"]["message"] = f'User "{OPERATOR}" cannot create configmaps'
    event["annotations"] = {"note": f'"username":"{OPERATOR}"'}
    assert parse_line(json.dumps(event, separators=(",", ":")), OPERATOR) is None


def resource_of(audit_line: str) -> str:
    request = parse_line(audit_line, OPERATOR)
    assert request is not None
    return request.resource


def test_resource_names_carry_group_and_subresource() -> None:
    status = line(
        "patch", resource="trackingservers", group="experiment.aiscope", subresource="status"
    )
    assert resource_of(status) == "trackingservers.experiment.aiscope/status"
    assert resource_of(line("create", resource="events")) == "events"
    discovery = line("get", resource=None, uri="/apis/apps/v1?timeout=32s")
    assert resource_of(discovery) == "/apis/apps/v1"


def test_counts_per_verb_resource_writes_reads_and_conflicts() -> None:
    lines = [
        line("list", group="apps"),
        line("watch", group="apps"),
        line("patch", group="apps"),
        line("patch", group="apps", code=409),
        line("create", resource="events", code=201),
        line("get", resource="secrets", code=404),
        line("patch", group="apps", stage="ResponseStarted"),
        line("delete", group="apps", user="envtest-admin"),
    ]
    counts = count_requests(parse_lines(lines, OPERATOR))
    assert counts.total == 6
    assert counts.writes == 3
    assert counts.reads == 3
    assert counts.conflicts == 1
    assert counts.by_verb() == {"list": 1, "watch": 1, "patch": 2, "create": 1, "get": 1}
    summary = counts.to_dict()
    assert summary["by_verb_resource"]["patch deployments.apps"] == 2
    assert summary["codes"] == {"200": 3, "201": 1, "404": 1, "409": 1}


def test_window_is_by_request_received_time() -> None:
    times = ["2026-11-27T05:25:00Z", "2026-11-27T05:25:10Z", "2026-11-27T05:25:20Z"]
    requests = list(parse_lines([line("patch", at=t) for t in times], OPERATOR))
    assert count_requests(requests, since=epoch(times[1])).total == 2
    assert count_requests(requests, until=epoch(times[1])).total == 2
    assert count_requests(requests, since=epoch(times[1]), until=epoch(times[1])).total == 1


def test_tail_reads_appended_lines_and_waits_for_a_partial_one(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    tail = AuditLogTail(path, OPERATOR)
    assert tail.counts().total == 0  # no log yet
    first, second = line("patch"), line("create", resource="events")
    path.write_text(first + "\n" + second[:40])
    assert tail.counts().total == 1
    with path.open("a") as log:
        log.write(second[40:] + "\n")
    counts = tail.counts()
    tail.close()
    assert counts.total == 2
    assert counts.by_verb() == {"patch": 1, "create": 1}


def test_tail_follows_a_rotation_without_losing_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    tail = AuditLogTail(path, OPERATOR)
    path.write_text(line("patch") + "\n")
    assert tail.counts().total == 1
    with path.open("a") as log:  # written just before the API server rotates
        log.write(line("create", resource="events") + "\n")
    path.rename(tmp_path / "audit-2026-11-27T06-04-47.418.log")
    path.write_text(line("delete") + "\n")
    try:
        assert tail.counts().by_verb() == {"patch": 1, "create": 1, "delete": 1}
        with path.open("a") as log:
            log.write(line("get") + "\n")
        assert tail.counts().total == 4
    finally:
        tail.close()
