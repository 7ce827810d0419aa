"""The state one reconcile pass of a TrackingServer accumulates: what it found and wrote."""

from __future__ import annotations

from dataclasses import dataclass, field

from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.runtime.kubeapi import Key, Obj
from experiment_operator.trackingserver.status import FOREIGN_OBJECT, ConditionValue


@dataclass
class Pass:
    """Mutable state of one reconcile pass."""

    obj: Obj
    ts: TrackingServer
    wrote: bool = False
    applied: list[str] = field(default_factory=list)
    """`Kind/name` of each child this pass changed, for its one log line."""
    foreign: list[str] = field(default_factory=list)
    not_served: list[str] = field(default_factory=list)
    problems: list[ConditionValue] = field(default_factory=list)
    volume: ConditionValue | None = None
    deployment: Obj | None = None
    routing_failed: bool = False
    requeue_after: list[float] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.ts.metadata.namespace or ""

    @property
    def name(self) -> str:
        return self.ts.metadata.name

    @property
    def uid(self) -> str:
        return self.ts.metadata.uid or ""

    @property
    def volume_foreign(self) -> bool:
        """The PVC's name is taken by a claim we do not control."""
        return self.volume is not None and self.volume.reason == FOREIGN_OBJECT

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


def version(obj: Obj | None) -> str | None:
    """The resourceVersion of an object, if there is one."""
    return None if obj is None else obj["metadata"].get("resourceVersion")
