"""The leak check finds a registered credential in any form, wherever the operator wrote it."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

from experiment_lab.credentials import LogHandler, Scanner, needles
from experiment_lab.objects import tls_pair

SECRET = "s3-secret-Zq8wX2"


def test_forms_of_a_value() -> None:
    assert needles(SECRET) == [SECRET, base64.b64encode(SECRET.encode()).decode()]
    uri = "postgresql://mlflow:pa%24%24word-42@db:5432/mlflow"
    assert {"pa%24%24word-42", "pa$$word-42"} <= set(needles(uri))
    assert needles("mlflow") == [], "too short: it would match every line naming the product"


def test_every_line_of_a_private_key_is_looked_for() -> None:
    _, key = tls_pair()
    body = [line for line in key.splitlines() if not line.startswith("-----")]
    found = needles(key)
    assert all(line in found for line in body if len(line) >= 16)
    assert "".join(body) in found


def test_finds_credentials_in_texts_files_and_log_records(tmp_path: Path) -> None:
    scanner = Scanner()
    scanner.register(SECRET, "the S3 key")
    scanner.add("Event ns/x (FailedSync)", f"denied: {SECRET}")
    scanner.add("TrackingServer ns/x status", '{"conditions": []}')
    log_file = tmp_path / "operator.log"
    log_file.write_text('{"msg": "ok"}\n' + f'{{"msg": "quoted", "error": "{SECRET}"}}\n')
    scanner.scan_file(log_file)
    logger = logging.getLogger("leakcheck-test")
    logger.addHandler(LogHandler(scanner))
    logger.error("failed", extra={"detail": base64.b64encode(SECRET.encode()).decode()})
    leaks = {(leak.source, leak.what) for leak in scanner.check()}
    assert leaks == {
        ("Event ns/x (FailedSync)", "the S3 key"),
        ("operator.log line 2", "the S3 key"),
        ("log leakcheck-test", "the S3 key"),
    }
    assert scanner.check() == [], "each leak is reported once"


def test_a_credential_registered_later_is_found_in_earlier_output() -> None:
    scanner = Scanner()
    scanner.add("log x", f"token={SECRET}")
    assert scanner.check() == []
    scanner.register(SECRET, "a token")
    assert [str(leak) for leak in scanner.check()] == ["a token found in log x"]
