"""The metav1.Condition shape and a pure helper to update a condition list.

Kept separate from the TrackingServer models so that every future kind can share it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
"""The reason format metav1.Condition requires (CamelCase, machine readable)."""

TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
"""The type format metav1.Condition requires (an optionally prefixed qualified name)."""

READY = "Ready"
"""Condition type: the tracking server is fully reconciled and its Deployment is available."""

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(BaseModel):
    """One aspect of the resource's current state (the metav1.Condition shape)."""

    model_config = ConfigDict(use_attribute_docstrings=True, populate_by_name=True)

    type: str = Field(max_length=316, pattern=TYPE_PATTERN)
    """Type of the condition in CamelCase, e.g. `Ready`."""

    status: ConditionStatus
    """Status of the condition: `True`, `False` or `Unknown`."""

    observed_generation: int | None = Field(
        default=None, alias="observedGeneration", ge=0, json_schema_extra={"format": "int64"}
    )
    """The `.metadata.generation` the condition was computed from."""

    last_transition_time: datetime = Field(alias="lastTransitionTime")
    """Last time the condition changed from one status to another."""

    reason: str = Field(max_length=1024, min_length=1, pattern=REASON_PATTERN)
    """Machine-readable CamelCase reason for the last transition."""

    message: str = Field(default="", max_length=32768)
    """Human-readable detail about the transition; never contains secret values."""

    def to_api(self) -> dict[str, Any]:
        """Serialize the way the API server stores it (camelCase, RFC 3339 seconds, UTC)."""
        data = self.model_dump(by_alias=True, exclude_none=True)
        data["lastTransitionTime"] = format_time(self.last_transition_time)
        return data


def format_time(value: datetime) -> str:
    """RFC 3339 with second precision in UTC, as metav1.Time serializes."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    observed_generation: int | None,
    now: datetime,
) -> list[Condition]:
    """Return the list with one condition set, keeping lastTransitionTime unless status changes.

    Keeping the transition time stable is what lets an unchanged status compare equal, so that
    the status writer makes no write on an idle reconcile.
    """
    previous = next((c for c in conditions if c.type == type_), None)
    transition = (
        previous.last_transition_time
        if previous is not None and previous.status == status
        else now.replace(microsecond=0)
    )
    updated = Condition(
        type=type_,
        status=status,
        observed_generation=observed_generation,
        last_transition_time=transition,
        reason=reason,
        message=message,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if c.type == type_ else c for c in conditions]


def find_condition(conditions: list[Condition], type_: str) -> Condition | None:
    """The condition of the given type, if present."""
    return next((c for c in conditions if c.type == type_), None)
