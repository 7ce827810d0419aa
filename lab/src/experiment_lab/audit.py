"""Count API requests per user from a kube-apiserver audit log (JSON lines).

The benchmarks judge the operator by what the API server saw, not by what the operator reports
about itself: every request appears once in the log with stage `ResponseComplete` (the other
stages of the same request are skipped, so nothing is counted twice). A watch is counted when
it ends.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
COMPLETE = "ResponseComplete"


@dataclass(frozen=True)
class AuditedRequest:
    """One completed request: verb, resource (`deployments.apps`, `trackingservers.x/status`,
    or the path of a non-resource request), namespace, HTTP code and when it was received."""

    verb: str
    resource: str
    namespace: str
    code: int
    received: float
    """Seconds since the epoch (the API server's `requestReceivedTimestamp`)."""

    @property
    def write(self) -> bool:
        return self.verb in WRITE_VERBS


def _resource(event: dict[str, Any]) -> str:
    ref = event.get("objectRef")
    if not ref or not ref.get("resource"):
        return str(event.get("requestURI", "")).split("?", 1)[0]
    name = str(ref["resource"])
    if ref.get("apiGroup"):
        name += f".{ref['apiGroup']}"
    if ref.get("subresource"):
        name += f"/{ref['subresource']}"
    return name


def parse_line(line: str, user: str) -> AuditedRequest | None:
    """The request an audit line records, if it is a completed request made by `user`."""
    # Most lines belong to other users (controllers, kwok): skip them before decoding JSON.
    if f'"username":"{user}"' not in line:
        return None
    event = json.loads(line)
    if event.get("stage") != COMPLETE or event.get("user", {}).get("username") != user:
        return None
    received = datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
    return AuditedRequest(
        verb=str(event.get("verb", "")),
        resource=_resource(event),
        namespace=str((event.get("objectRef") or {}).get("namespace", "")),
        code=int((event.get("responseStatus") or {}).get("code", 0)),
        received=received,
    )


@dataclass
class RequestCounts:
    """Requests tallied by (verb, resource) and by HTTP code."""

    by_verb_resource: Counter[tuple[str, str]] = field(default_factory=Counter)
    codes: Counter[int] = field(default_factory=Counter)

    def add(self, request: AuditedRequest) -> None:
        self.by_verb_resource[request.verb, request.resource] += 1
        self.codes[request.code] += 1

    @property
    def total(self) -> int:
        return sum(self.by_verb_resource.values())

    @property
    def writes(self) -> int:
        return sum(n for (verb, _), n in self.by_verb_resource.items() if verb in WRITE_VERBS)

    @property
    def reads(self) -> int:
        return self.total - self.writes

    @property
    def conflicts(self) -> int:
        return self.codes[409]

    def by_verb(self) -> Counter[str]:
        verbs: Counter[str] = Counter()
        for (verb, _), n in self.by_verb_resource.items():
            verbs[verb] += n
        return verbs

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form: totals, per verb, and per "verb resource"."""
        return {
            "total": self.total,
            "writes": self.writes,
            "reads": self.reads,
            "conflicts": self.conflicts,
            "by_verb": dict(sorted(self.by_verb().items())),
            "by_verb_resource": {
                f"{verb} {resource}": n
                for (verb, resource), n in sorted(self.by_verb_resource.items())
            },
            "codes": {str(code): n for code, n in sorted(self.codes.items())},
        }


def count_requests(
    requests: Iterable[AuditedRequest], since: float | None = None, until: float | None = None
) -> RequestCounts:
    """Tally the requests received in [since, until] (epoch seconds; open ends allowed)."""
    counts = RequestCounts()
    for request in requests:
        if since is not None and request.received < since:
            continue
        if until is not None and request.received > until:
            continue
        counts.add(request)
    return counts


def parse_lines(lines: Iterable[str], user: str) -> Iterator[AuditedRequest]:
    for line in lines:
        request = parse_line(line, user)
        if request is not None:
            yield request


class AuditLogTail:
    """Follows a growing audit log and keeps one user's completed requests (in memory).

    kube-apiserver rotates the log at `--audit-log-maxsize` (100 MB by default): the file is
    renamed and a new one started. Like `tail -F`, the open file is read to its end before
    switching to the new file, so no request is lost across a rotation."""

    def __init__(self, path: Path, user: str) -> None:
        self.path = path
        self.user = user
        self.requests: list[AuditedRequest] = []
        self._file: BinaryIO | None = None
        self._partial = b""

    def poll(self) -> None:
        """Read the lines appended since the last call (a partial last line waits)."""
        if self._file is None:
            if not self.path.exists():
                return
            self._file = self.path.open("rb")
        self._read()
        while self._rotated():
            self._read()  # what was written before the rename
            self._file.close()
            self._file, self._partial = self.path.open("rb"), b""
            self._read()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def counts(self, since: float | None = None, until: float | None = None) -> RequestCounts:
        self.poll()
        return count_requests(self.requests, since, until)

    def _read(self) -> None:
        assert self._file is not None
        data = self._partial + self._file.read()
        complete = data.rfind(b"\n") + 1
        self._partial = data[complete:]
        self.requests.extend(parse_lines(data[:complete].decode().splitlines(), self.user))

    def _rotated(self) -> bool:
        assert self._file is not None
        try:
            return os.stat(self.path).st_ino != os.fstat(self._file.fileno()).st_ino
        except FileNotFoundError:  # between the rename and the new file
            return False
