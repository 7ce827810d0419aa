"""Helpers to attach CEL validation rules to pydantic fields (the CRD generator copies them)."""

from __future__ import annotations

from typing import Any


def rules(*pairs: tuple[str, str]) -> dict[str, Any]:
    """JSON-schema extra holding CEL rules (rule, message) for the CRD generator."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in pairs]}


def cel_regex(pattern: str) -> str:
    """A regex as a single-quoted CEL string literal (CEL needs its backslashes escaped)."""
    return "'" + pattern.replace("\\", "\\\\") + "'"


def non_empty(field: str) -> str:
    """CEL: the optional string field is present and not empty (the seed's 'unset' is '')."""
    return f"(has(self.{field}) && self.{field} != '')"
