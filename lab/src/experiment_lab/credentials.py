"""Credential values the tests use, and a scanner that finds them where they must never be:
operator log lines, Events, TrackingServer status.

Values come in two ways. Lab helpers that make credentials register them (`objects.sample`,
`objects.tls_pair`, ServiceAccount tokens), and so can any test (`register`). And `ClusterWatch`
harvests every Secret the cluster ever holds during the session — whoever created it, a test or
the operator — so a test that forgets to register still has its credentials checked.

What is looked for: each value, its base64 form, the password of a URL, and every line of a PEM
body (so a fragment of a private key is found too). Values shorter than `MIN_LENGTH` are ignored:
"mlflow" would match every line that names the product. Nothing here ever prints a value.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

MIN_LENGTH = 8
PUBLIC_KEYS = frozenset({"tls.crt", "ca.crt"})
"""Secret keys whose values are not secret (certificates)."""


def needles(value: str) -> list[str]:
    """The strings whose presence would reveal `value`."""
    value = value.strip()
    found: list[str] = []
    if "-----BEGIN" in value:
        body = [
            line.strip()
            for line in value.splitlines()
            if line.strip() and not line.startswith("-----")
        ]
        found += [line for line in body if len(line) >= 16]
        found.append("".join(body))
    elif len(value) >= MIN_LENGTH:  # a short value's base64 form would be as common
        found += [value, base64.b64encode(value.encode()).decode()]
        if "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password:
                found += [password, unquote(password)]
    return [n for n in dict.fromkeys(found) if len(n) >= MIN_LENGTH]


@dataclass(frozen=True)
class Leak:
    source: str
    """Where: a log file and line number, an Event, a TrackingServer's status."""
    what: str
    """Which credential (its description, never its value)."""

    def __str__(self) -> str:
        return f"{self.what} found in {self.source}"


@dataclass
class Scanner:
    """Texts the operator produced, checked against every registered credential."""

    secrets: dict[str, str] = field(default_factory=dict)
    """needle → what it reveals."""
    texts: list[tuple[str, str]] = field(default_factory=list)
    """(source, text)."""
    files: dict[Path, tuple[int, int]] = field(default_factory=dict)
    """Log files of operator processes → (bytes, lines) already read."""
    registered: int = 0
    """Distinct credentials (that are long enough to look for)."""
    _checked_texts: int = 0
    _checked_secrets: set[str] = field(default_factory=set)
    _reported: set[tuple[str, str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, value: str, what: str) -> None:
        with self._lock:
            forms = needles(value)
            if forms:
                self.registered += 1 if forms[0] not in self.secrets else 0
            for needle in forms:
                self.secrets.setdefault(needle, what)

    def add(self, source: str, text: str) -> None:
        with self._lock:
            self.texts.append((source, text))

    def scan_file(self, path: Path) -> None:
        with self._lock:
            self.files.setdefault(path, (0, 0))

    def check(self) -> list[Leak]:
        """Leaks not reported before: new texts against every credential, earlier texts
        against credentials registered since the last check."""
        self._read_files()
        with self._lock:
            texts, secrets = list(self.texts), dict(self.secrets)
        new_texts, old_texts = texts[self._checked_texts :], texts[: self._checked_texts]
        new_secrets = {n: w for n, w in secrets.items() if n not in self._checked_secrets}
        leaks = _search(new_texts, secrets) + _search(old_texts, new_secrets)
        self._checked_texts = len(texts)
        self._checked_secrets.update(new_secrets)
        fresh = [leak for leak in leaks if (leak.source, leak.what) not in self._reported]
        self._reported.update((leak.source, leak.what) for leak in fresh)
        return fresh

    def _read_files(self) -> None:
        with self._lock:
            files = dict(self.files)
        for path, (offset, seen) in files.items():
            try:
                with path.open("rb") as file:
                    file.seek(offset)
                    data = file.read()
            except FileNotFoundError:
                continue
            complete = data.rfind(b"\n") + 1
            lines = data[:complete].decode(errors="replace").splitlines()
            with self._lock:
                self.files[path] = (offset + complete, seen + len(lines))
                for number, text in enumerate(lines, start=seen + 1):
                    self.texts.append((f"{path.name} line {number}", text))


def _search(texts: list[tuple[str, str]], secrets: dict[str, str]) -> list[Leak]:
    """One pass over all texts per credential (fast C substring search), then pin down where."""
    if not texts or not secrets:
        return []
    blob = "\n".join(text for _, text in texts)
    leaks: list[Leak] = []
    for needle, what in secrets.items():
        if needle in blob:
            leaks += [Leak(source, what) for source, text in texts if needle in text]
    return leaks


SCANNER = Scanner()
"""The process-wide scanner the pytest plugin (`leakcheck`) checks."""


def register(value: str | None, what: str = "a credential") -> None:
    """Remember a credential value a test uses (None and short values are ignored)."""
    if value:
        SCANNER.register(value, what)


def register_all(values: Iterable[tuple[str | None, str]]) -> None:
    for value, what in values:
        register(value, what)


def scan_file(path: Path) -> None:
    """Check the lines an operator process writes to `path` (e.g. its log)."""
    SCANNER.scan_file(path)


class LogHandler(logging.Handler):
    """Feeds the records of in-process operators to the scanner, fields and tracebacks too."""

    def __init__(self, scanner: Scanner = SCANNER) -> None:
        super().__init__(logging.DEBUG)
        from experiment_operator.runtime.logging import JsonFormatter

        self.setFormatter(JsonFormatter())
        self._scanner = scanner

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._scanner.add(f"log {record.name}", self.format(record))
        except Exception:
            self.handleError(record)
