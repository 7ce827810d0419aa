"""Judging leader election from audit events: who held the Lease, who wrote, what repeated."""

from __future__ import annotations

import json
from typing import Any

from experiment_lab.attribution import (
    LEASES,
    Request,
    Write,
    duplicates,
    parse_write,
    retry_gaps,
    split_brain,
    takeovers,
)

OPERATOR = "system:serviceaccount:ops:experiment-operator"
LEASE = ("ops", "lock")


def write(at: float, who: str, resource: str = "deployments.apps", name: str = "ts",
          code: int = 200, body: str = "b1") -> Write:  # fmt: skip
    namespace = "ops" if resource == LEASES else "team"
    return Write(at, who, OPERATOR, "patch", resource, namespace, name, code, body)


def lease(at: float, who: str, code: int = 200) -> Write:
    return write(at, who, LEASES, "lock", code)


def test_only_the_lease_holder_writes() -> None:
    writes = [
        lease(1, "A"), write(2, "A"), lease(3, "A", code=409), lease(5, "B"), write(6, "B"),
        write(7, "A", name="late"),
    ]  # fmt: skip
    [violation] = split_brain(writes, LEASE)
    assert (violation.write.name, violation.holder) == ("late", "B")
    assert takeovers(writes, LEASE) == [(1, "", "A"), (5, "A", "B")]


def test_a_failed_lease_write_does_not_make_a_holder() -> None:
    assert split_brain([lease(1, "A", code=409), write(2, "A")], LEASE) != []


def test_duplicates_are_byte_for_byte_repeats_of_the_last_write() -> None:
    writes = [
        write(1, "A"), write(2, "B"),  # same body again: a repeat
        write(3, "B", body="b2"), write(4, "B", body="b1"),  # back and forth: real changes
        write(5, "A", name="other"), write(6, "A", code=409), lease(7, "A"), lease(8, "A"),
    ]  # fmt: skip
    assert [w.received for w in duplicates(writes)] == [2]


def test_retry_gaps_pair_a_rejection_with_the_same_request_again() -> None:
    requests = [
        Request(1.0, "A", "get", "/api/v1/x", 429),
        Request(1.2, "A", "create", "/api/v1/events", 429),
        Request(1.3, "A", "create", "/api/v1/events", 201),  # another Event: not a retry
        Request(2.1, "A", "get", "/api/v1/x", 200),
    ]
    assert [round(g, 2) for g in retry_gaps(requests)] == [1.1]


def event(**overrides: Any) -> str:
    base: dict[str, Any] = {
        "stage": "ResponseComplete",
        "verb": "patch",
        "user": {
            "username": OPERATOR,
            "extra": {"authentication.kubernetes.io/credential-id": ["JTI=abc"]},
        },
        "objectRef": {"resource": "trackingservers", "apiGroup": "experiment.aiscope",
                      "subresource": "status", "namespace": "team", "name": "ts"},
        "responseStatus": {"code": 200},
        "requestObject": {"status": {"observedGeneration": 2}},
        "requestReceivedTimestamp": "2026-12-02T10:00:00.250000Z",
    }  # fmt: skip
    base.update(overrides)
    return json.dumps(base)


def test_parse_write() -> None:
    parsed = parse_write(event(), frozenset({OPERATOR}))
    assert parsed is not None
    assert (parsed.credential, parsed.resource, parsed.name, parsed.ok) == (
        "JTI=abc",
        "trackingservers.experiment.aiscope/status",
        "ts",
        True,
    )
    assert parsed.body
    assert parse_write(event(verb="get"), frozenset({OPERATOR})) is None
    assert parse_write(event(stage="RequestReceived"), frozenset({OPERATOR})) is None
    assert parse_write(event(), frozenset({"someone-else"})) is None
    no_body = parse_write(event(requestObject=None), frozenset({OPERATOR}))
    assert no_body is not None
    assert no_body.body == ""
