"""Echoes: an event that only delivers what the reconciler saw is dropped, nothing else."""

from __future__ import annotations

import copy
from typing import Any

from experiment_operator.runtime.cache import LAST_APPLIED_ANNOTATION, cache_transform
from experiment_operator.runtime.echoes import Echoes, only_status_changed
from experiment_operator.runtime.store import Change


def obj(rv: str, kind: str = "Secret", api_version: str = "v1", **extra: Any) -> dict[str, Any]:
    meta = {"name": "a", "namespace": "team-a", "uid": "u1", "resourceVersion": rv}
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **extra}


def test_the_event_of_a_seen_write_is_an_echo_once() -> None:
    echoes = Echoes()
    echoes.seen(obj("5"), cached=obj("4"))
    assert echoes.is_echo(Change("MODIFIED", obj("5"), obj("4")))
    assert len(echoes) == 0
    assert not echoes.is_echo(Change("MODIFIED", obj("5"), obj("5"))), "a relist repeats it"


def test_a_version_the_reconciler_did_not_see_is_delivered_and_ends_the_record() -> None:
    echoes = Echoes()
    echoes.seen(obj("5"), cached=None)
    assert not echoes.is_echo(Change("MODIFIED", obj("6"), obj("4")))  # someone wrote after us
    assert not echoes.is_echo(Change("MODIFIED", obj("5"), obj("6"))), "record ended"


def test_a_deletion_is_never_an_echo() -> None:
    echoes = Echoes()
    echoes.seen(obj("5"), cached=None)
    assert not echoes.is_echo(Change("DELETED", obj("5")))
    assert len(echoes) == 0


def test_kinds_and_groups_are_told_apart() -> None:
    echoes = Echoes()
    echoes.seen(obj("5", "IngressRoute", "traefik.io/v1alpha1"), cached=None)
    legacy = obj("5", "IngressRoute", "traefik.containo.us/v1alpha1")
    assert not echoes.is_echo(Change("ADDED", obj("5")))
    assert not echoes.is_echo(Change("ADDED", legacy))
    assert echoes.is_echo(Change("ADDED", obj("5", "IngressRoute", "traefik.io/v1alpha1")))


def test_nothing_is_recorded_when_the_event_came_before_the_response() -> None:
    echoes = Echoes()
    echoes.seen(obj("5"), cached=obj("5"))
    assert len(echoes) == 0


def test_a_status_write_that_landed_on_a_spec_change_is_no_echo() -> None:
    read = cache_transform()(obj("4", spec={"image": "a"}, status={}))
    written = obj("5", spec={"image": "a"}, status={"ready": True})
    written["metadata"]["managedFields"] = [{"manager": "experiment-operator"}]
    written["metadata"]["annotations"] = {LAST_APPLIED_ANNOTATION: "{...}"}
    assert only_status_changed(read, written), "managedFields and kubectl's copy do not count"
    changed = copy.deepcopy(written)
    changed["spec"]["image"] = "b"
    assert not only_status_changed(read, changed)
    relabelled = copy.deepcopy(written)
    relabelled["metadata"]["labels"] = {"team": "b"}
    assert not only_status_changed(read, relabelled)


def test_a_write_is_the_newest_state_until_any_event_of_the_object_comes() -> None:
    echoes = Echoes()
    written = obj("5", data={"k": "new"})
    echoes.seen(written, cached=obj("4"))
    assert echoes.unseen_write("v1", "Secret", "team-a", "a") is written
    assert echoes.unseen_write("v1", "Secret", "team-b", "a") is None
    assert echoes.unseen_write("traefik.io/v1alpha1", "Secret", "team-a", "a") is None
    echoes.is_echo(Change("MODIFIED", obj("4"), obj("3")))  # an older event: the record ends
    assert echoes.unseen_write("v1", "Secret", "team-a", "a") is None


def test_no_unseen_write_once_the_cache_holds_it() -> None:
    echoes = Echoes()
    echoes.seen(obj("5"), cached=obj("5"))
    assert echoes.unseen_write("v1", "Secret", "team-a", "a") is None
    echoes.seen(obj("6"), cached=obj("5"))
    assert echoes.is_echo(Change("MODIFIED", obj("6"), obj("5")))
    assert echoes.unseen_write("v1", "Secret", "team-a", "a") is None
