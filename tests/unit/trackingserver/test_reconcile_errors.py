"""A failing reconcile reports the cause without the credentials it may quote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from experiment_operator.runtime.controller import Request
from experiment_operator.runtime.events import EventRecorder
from experiment_operator.runtime.manager import Manager
from experiment_operator.runtime.store import Change
from experiment_operator.trackingserver.children import ChildOptions
from experiment_operator.trackingserver.passes import Pass
from experiment_operator.trackingserver.reconciler import SyncError, TrackingServerReconciler
from experiment_operator.trackingserver.resources import TrackingServerResource

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


class Recorder(EventRecorder):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def post(self, obj: Any, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


class Failing(TrackingServerReconciler):
    async def _reconcile(self, p: Pass) -> Any:
        spec = p.ts.spec
        raise RuntimeError(
            f"denied: {spec.aws_secret_key.get_secret_value()} {spec.key.get_secret_value()}"
        )


async def test_failed_sync_event_and_error_are_redacted() -> None:
    obj = yaml.safe_load((FIXTURES / "seed-blog-sample.yaml").read_text())
    obj["metadata"].update(uid="u-1", resourceVersion="1")
    manager = Manager(client=None)  # type: ignore[arg-type]  # never talks to a server here
    manager.watch(TrackingServerResource).apply(Change("ADDED", obj))
    recorder = Recorder()
    reconciler = Failing(manager, ChildOptions(), recorder)
    with pytest.raises(SyncError) as raised:
        await reconciler.reconcile(Request("aiscope-devops-platform", "trackingserver"))
    [(type_, reason, message)] = recorder.events
    assert (type_, reason) == ("Warning", "FailedSync")
    assert message == "Failed to sync: denied: [REDACTED] [REDACTED]"
    assert str(raised.value) == "denied: [REDACTED] [REDACTED]"
    assert raised.value.__suppress_context__


async def test_url_stored_under_an_older_crd_is_reported_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A url that today's CRD would refuse (stored before its rules): Ready=False InvalidURL,
    a Warning Event, and no child is applied or deleted."""
    from lightkube.resources.apps_v1 import Deployment
    from lightkube.resources.core_v1 import Pod

    from experiment_operator.trackingserver import reconciler as module

    obj = yaml.safe_load((FIXTURES / "seed-blog-sample.yaml").read_text())
    obj["metadata"].update(uid="u-1", resourceVersion="1", generation=3)
    obj["spec"]["url"] = "https://mlflow.example/a%2F..%2Fb"
    manager = Manager(client=None)  # type: ignore[arg-type]  # never talks to a server here
    manager.watch(TrackingServerResource).apply(Change("ADDED", obj))
    manager.watch(Deployment)
    manager.watch(Pod)
    written: list[dict[str, Any]] = []

    async def update_status(
        client: Any, res: Any, owner: Any, status: dict[str, Any], memory: Any = None
    ) -> None:
        written.append(status)

    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("no child may be written")

    monkeypatch.setattr(module, "update_status", update_status)
    monkeypatch.setattr(module, "apply_owned", refuse)
    monkeypatch.setattr(module, "delete_if_owned", refuse)
    recorder = Recorder()
    reconciler = TrackingServerReconciler(manager, ChildOptions(), recorder)
    await reconciler.reconcile(Request("aiscope-devops-platform", "trackingserver"))
    [status] = written
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidURL")
    assert "no percent-encoding" in ready["message"]
    assert "%2F" not in ready["message"]
    assert "url" not in status
    assert ("Warning", "InvalidURL", ready["message"]) in recorder.events
