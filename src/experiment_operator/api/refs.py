"""References from a TrackingServer's spec to other objects: an S3 credentials Secret, a Gateway."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from experiment_operator.api.cel import cel_regex as _cel_regex
from experiment_operator.api.cel import rules as _rules

DEFAULT_ACCESS_KEY_ID_KEY = "AWS_ACCESS_KEY_ID"
DEFAULT_SECRET_ACCESS_KEY_KEY = "AWS_SECRET_ACCESS_KEY"

DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SECRET_KEY_NAME = r"^[-._a-zA-Z0-9]+$"


class S3CredentialsSecretRef(BaseModel):
    """Reference to an existing Secret in the TrackingServer's namespace holding S3 credentials."""

    model_config = ConfigDict(use_attribute_docstrings=True, populate_by_name=True)

    name: str = Field(
        min_length=1,
        max_length=253,
        json_schema_extra=_rules(
            (
                f"self.matches({_cel_regex(DNS1123_SUBDOMAIN)})",
                "s3CredentialsSecretRef.name must be a valid Secret name (DNS-1123 subdomain)",
            )
        ),
    )
    """Name of the Secret. The operator only reads it; it is never modified or deleted."""

    access_key_id_key: str = Field(
        default=DEFAULT_ACCESS_KEY_ID_KEY,
        alias="accessKeyIDKey",
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY_NAME,
    )
    """Key in the Secret holding the access key ID. Defaults to `AWS_ACCESS_KEY_ID`."""

    secret_access_key_key: str = Field(
        default=DEFAULT_SECRET_ACCESS_KEY_KEY,
        alias="secretAccessKeyKey",
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY_NAME,
    )
    """Key in the Secret holding the secret access key. Defaults to `AWS_SECRET_ACCESS_KEY`."""


class GatewayRef(BaseModel):
    """A parent Gateway, in the shape of Gateway API's ParentReference (kind Gateway only)."""

    model_config = ConfigDict(use_attribute_docstrings=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=253)
    """Name of the Gateway."""

    namespace: str = Field(default="", max_length=63, pattern=rf"^$|{DNS1123_LABEL}")
    """Namespace of the Gateway; empty: the TrackingServer's namespace. The Gateway's listeners
    must allow routes from the TrackingServer's namespace (`allowedRoutes`)."""

    section_name: str = Field(
        default="", alias="sectionName", max_length=253, pattern=rf"^$|{DNS1123_SUBDOMAIN}"
    )
    """Name of one listener of the Gateway to attach to; empty: every listener that accepts
    the route."""
