"""The custom resource APIs: pydantic models that are also the source of the generated CRDs."""

from experiment_operator.api.conditions import READY, Condition, find_condition, set_condition
from experiment_operator.api.refs import GatewayRef, S3CredentialsSecretRef
from experiment_operator.api.trackingserver import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    TrackingServer,
    TrackingServerSpec,
    TrackingServerStatus,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "READY",
    "VERSION",
    "Condition",
    "GatewayRef",
    "S3CredentialsSecretRef",
    "TrackingServer",
    "TrackingServerSpec",
    "TrackingServerStatus",
    "find_condition",
    "set_condition",
]
