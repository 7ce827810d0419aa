"""Who wrote what, when — from the API server's audit log — to judge leader election.

Each operator replica authenticates with its own ServiceAccount token, and the API server
records every token's `jti` in the audit event (`user.extra["authentication.kubernetes.io/
credential-id"]`), so a write is attributed to the replica that sent it by the server itself,
not by anything the replica claims. Writes are ordered by the server's receive timestamp.

From that: the Lease holder at any instant (the last successful Lease write), writes sent by a
replica that did not hold the Lease at that instant (split brain), and duplicate writes (the same
request body sent twice in a row to one object).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from experiment_lab.audit import WRITE_VERBS

CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
LEASES = "leases.coordination.k8s.io"
EVENTS = ("events", "events.events.k8s.io")

AUDIT_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [
        # Bodies of Secrets hold credentials, those of Events nothing we judge: metadata only.
        {"level": "Metadata", "resources": [{"group": "", "resources": ["secrets", "events"]}]},
        # Writes by ServiceAccounts (the operator replicas; the lab's own clients are admins):
        # with the request body, to tell a repeated write from a new one.
        {
            "level": "Request",
            "verbs": sorted(WRITE_VERBS),
            "userGroups": ["system:serviceaccounts"],
        },
        {"level": "Metadata"},
    ],
}
"""What the reliability tests' control plane records."""


@dataclass(frozen=True)
class Write:
    """One completed mutating request."""

    received: float
    """The API server's receive time, seconds since the epoch."""
    credential: str
    """The token's `JTI=...` (empty for certificate users)."""
    user: str
    verb: str
    resource: str
    """`deployments.apps`, `trackingservers.experiment.aiscope/status`, `leases.coordination...`"""
    namespace: str
    name: str
    code: int
    body: str
    """Digest of the request body ("" when the policy did not log it)."""

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def object(self) -> tuple[str, str, str]:
        return (self.resource, self.namespace, self.name)


def _resource(ref: dict[str, Any]) -> str:
    name = str(ref.get("resource", ""))
    if ref.get("apiGroup"):
        name += f".{ref['apiGroup']}"
    if ref.get("subresource"):
        name += f"/{ref['subresource']}"
    return name


def parse_write(line: str, users: frozenset[str]) -> Write | None:
    """The write an audit line records, if it is a completed write by one of `users`."""
    if '"ResponseComplete"' not in line or not any(f'"{u}"' in line for u in users):
        return None
    event = json.loads(line)
    user = event.get("user") or {}
    if (
        event.get("stage") != "ResponseComplete"
        or user.get("username") not in users
        or event.get("verb") not in WRITE_VERBS
    ):
        return None
    ref = event.get("objectRef") or {}
    body = event.get("requestObject")
    digest = "" if body is None else hashlib.sha256(json.dumps(body, sort_keys=True).encode())
    return Write(
        received=datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp(),
        credential=",".join((user.get("extra") or {}).get(CREDENTIAL_ID) or []),
        user=str(user.get("username")),
        verb=str(event["verb"]),
        resource=_resource(ref),
        namespace=str(ref.get("namespace", "")),
        name=str(ref.get("name", "")),
        code=int((event.get("responseStatus") or {}).get("code", 0)),
        body="" if isinstance(digest, str) else digest.hexdigest(),
    )


def audit_files(audit_log: Path) -> list[Path]:
    """The log and its rotated predecessors (`audit-<time>.log`), oldest first."""
    rotated = sorted(audit_log.parent.glob(f"{audit_log.stem}-*{audit_log.suffix}"))
    return [*rotated, audit_log] if audit_log.exists() else rotated


def read_writes(audit_log: Path, users: Iterable[str]) -> list[Write]:
    """Every completed write of `users` in the audit log, in the order the server received them."""
    wanted = frozenset(users)
    writes: list[Write] = []
    for path in audit_files(audit_log):
        with path.open(encoding="utf-8", errors="replace") as lines:
            writes.extend(w for line in lines if (w := parse_write(line, wanted)) is not None)
    writes.sort(key=lambda w: w.received)
    return writes


def is_lease(write: Write, lease: tuple[str, str]) -> bool:
    return write.resource == LEASES and (write.namespace, write.name) == lease


@dataclass(frozen=True)
class Violation:
    """A write sent by a replica that did not hold the Lease when the server received it."""

    write: Write
    holder: str
    """Credential of the Lease holder at that instant ("" before anyone held it)."""


def holders(writes: Iterable[Write], lease: tuple[str, str]) -> Iterator[tuple[float, str]]:
    """(time, credential) of every successful write of the Lease: who held it from then on.

    A release (a successful write clearing the holder) is indistinguishable here from a renewal;
    callers judge writes *after* someone else's acquisition, which a release never follows with
    writes of its own."""
    for write in writes:
        if is_lease(write, lease) and write.ok:
            yield write.received, write.credential


def split_brain(writes: list[Write], lease: tuple[str, str]) -> list[Violation]:
    """Writes (other than of the Lease itself) whose sender was not the Lease's last writer."""
    violations: list[Violation] = []
    holder = ""
    for write in writes:
        if is_lease(write, lease):
            if write.ok:
                holder = write.credential
            continue
        if write.credential != holder:
            violations.append(Violation(write, holder))
    return violations


def takeovers(writes: list[Write], lease: tuple[str, str]) -> list[tuple[float, str, str]]:
    """(time, from, to) whenever a different credential wrote the Lease successfully."""
    changes: list[tuple[float, str, str]] = []
    last = ""
    for at, credential in holders(writes, lease):
        if credential != last:
            changes.append((at, last, credential))
            last = credential
    return changes


def object_writes(writes: Iterable[Write]) -> list[Write]:
    """Successful writes of objects (children, status, finalizers): not Leases, not Events."""
    return [w for w in writes if w.ok and w.resource != LEASES and w.resource not in EVENTS]


def duplicates(writes: Iterable[Write]) -> list[Write]:
    """Successful writes that repeat the previous write of the same object byte for byte.

    Bodies of Secrets are not logged (credentials), so every repeated write of a Secret counts:
    use this where the specs do not change."""
    last: dict[tuple[str, str, str], str] = {}
    repeated: list[Write] = []
    for write in object_writes(writes):
        if write.verb == "delete":
            last.pop(write.object, None)
            continue
        if last.get(write.object) == write.body:
            repeated.append(write)
        last[write.object] = write.body
    return repeated


def writes_by_resource(writes: Iterable[Write]) -> dict[str, int]:
    """Successful object writes counted per "verb resource" (for the docs' figures)."""
    counts = Counter(f"{w.verb} {w.resource}" for w in object_writes(writes))
    return dict(sorted(counts.items()))


@dataclass(frozen=True)
class Request:
    """Any completed request (reads too), for judging retries."""

    received: float
    credential: str
    verb: str
    uri: str
    code: int


def read_requests(audit_log: Path, users: Iterable[str]) -> list[Request]:
    """Every completed request of `users`, in the order the server received them."""
    wanted = frozenset(users)
    found: list[Request] = []
    for path in audit_files(audit_log):
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if '"ResponseComplete"' not in line or not any(f'"{u}"' in line for u in wanted):
                    continue
                event = json.loads(line)
                user = event.get("user") or {}
                if user.get("username") not in wanted:
                    continue
                found.append(
                    Request(
                        received=datetime.fromisoformat(
                            event["requestReceivedTimestamp"]
                        ).timestamp(),
                        credential=",".join((user.get("extra") or {}).get(CREDENTIAL_ID) or []),
                        verb=str(event.get("verb", "")),
                        uri=str(event.get("requestURI", "")),
                        code=int((event.get("responseStatus") or {}).get("code", 0)),
                    )
                )
    found.sort(key=lambda r: r.received)
    return found


def retry_gaps(requests: list[Request], code: int = 429) -> list[float]:
    """Seconds between each request answered with `code` and the next identical request
    (same sender, verb and URI): how long the sender waited before retrying. Creates are left
    out: every Event of a namespace is POSTed to the same URI by concurrent workers."""
    gaps: list[float] = []
    for index, rejected in enumerate(requests):
        if rejected.code != code or rejected.verb == "create":
            continue
        again = next(
            (
                r
                for r in requests[index + 1 :]
                if (r.credential, r.verb, r.uri)
                == (rejected.credential, rejected.verb, rejected.uri)
            ),
            None,
        )
        if again is not None:
            gaps.append(again.received - rejected.received)
    return gaps
