"""Server-side apply field sets (`managedFields[].fieldsV1`): what we applied, as a digest.

The API server records, per field manager, the set of fields its last apply contained. The
projection of the live object onto our set is exactly "what the server now holds of what we
applied": if it equals the body we are about to apply, the apply would change nothing. A drift
(someone else changed or removed one of our fields: the field leaves our set) and a field we
stopped sending both make the two differ. Comparing 16-byte digests of both sides lets caches
drop every body they do not otherwise need (see `runtime.cache`). An object we created with a
POST has our `Update` entry instead, whose set is the body's when the server added no defaults.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

FIELD_MANAGER = "experiment-operator"

SERVER_SET_METADATA = ("name", "namespace", "uid", "resourceVersion")
"""Metadata that identifies the object or guards a write; never part of a field set."""


def _tokens(fields: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(prefix, raw, sub) per token, without the "." that names the node itself."""
    return [(*token.partition(":")[::2], sub) for token, sub in fields.items() if token != "."]


def _has_children(fields: Mapping[str, Any]) -> bool:
    return any(token != "." for token in fields)


@functools.lru_cache(maxsize=4096)
def _parsed(raw: str) -> Any:
    """A key or value token of a field set; the same few recur in every object of a kind."""
    return orjson.loads(raw)


def _matches(item: Any, prefix: str, raw: str, index: int) -> bool:
    if prefix == "k":
        key = _parsed(raw)
        return isinstance(item, Mapping) and all(item.get(k) == v for k, v in key.items())
    if prefix == "v":
        return bool(item == _parsed(raw))
    if prefix == "i":
        return index == int(raw)
    return False


def project(value: Any, fields: Mapping[str, Any]) -> Any:
    """The part of `value` the field set names; a node without children is taken whole.
    List elements keep their live order."""
    if not _has_children(fields):
        return value
    tokens = _tokens(fields)
    if isinstance(value, Mapping):
        return {
            raw: project(value[raw], sub)
            for prefix, raw, sub in tokens
            if prefix == "f" and raw in value
        }
    if isinstance(value, list):
        kept = []
        for index, item in enumerate(value):
            for prefix, raw, sub in tokens:
                if _matches(item, prefix, raw, index):
                    kept.append(project(item, sub))
                    break
        return kept
    return value


def digest(value: Any) -> bytes:
    """A stable 16-byte digest of a JSON value (key order does not matter)."""
    return hashlib.blake2b(
        orjson.dumps(value, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).digest()


def written_entry(obj: Mapping[str, Any], manager: str = FIELD_MANAGER) -> Mapping[str, Any] | None:
    """`manager`'s entry of the main resource (not a subresource): its Apply entry, else its
    Update entry (an object it created with a POST and has not applied since), else None."""
    update = None
    for entry in obj.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") != manager or entry.get("subresource"):
            continue
        if entry.get("operation") == "Apply":
            return entry  # type: ignore[no-any-return]
        if entry.get("operation") == "Update":
            update = entry
    return update


def is_update(entry: Mapping[str, Any]) -> bool:
    return entry.get("operation") == "Update"


def written_state(
    obj: Mapping[str, Any], manager: str = FIELD_MANAGER
) -> tuple[bytes | None, bool]:
    """Digest of the live object's fields that `manager` wrote (`written_entry`; None if it
    never wrote it), and whether an `Update` (a POST) wrote them rather than an apply."""
    entry = written_entry(obj, manager)
    if entry is None:
        return None, False
    return digest(project(obj, entry.get("fieldsV1") or {})), is_update(entry)


def applied_digest(obj: Mapping[str, Any], manager: str = FIELD_MANAGER) -> bytes | None:
    """The digest of `written_state`."""
    return written_state(obj, manager)[0]


def projection_inputs(obj: Mapping[str, Any], fields: Mapping[str, Any]) -> bytes:
    """Digest of everything `project(obj, fields)` reads: the field set, the top-level fields
    it names and, of metadata, the fields it names there. Equal inputs give equal projections,
    so a status update (which changes none of them) needs no new projection; this digest is
    computed by orjson, the projection in Python (10 vs 150 µs for a Deployment)."""
    inputs: dict[str, Any] = {}
    for token, sub in fields.items():
        prefix, _, name = token.partition(":")
        if prefix != "f" or name not in obj:
            continue
        if name == "metadata":
            meta = obj["metadata"]
            named = (t.partition(":")[2] for t in sub if t.startswith("f:"))
            inputs[name] = {n: meta[n] for n in named if n in meta}
        else:
            inputs[name] = obj[name]
    return digest([fields, inputs])


def desired_digest(body: Mapping[str, Any]) -> bytes:
    """Digest of an apply body, comparable with `applied_digest` of the object it produced."""
    trimmed = {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k not in SERVER_SET_METADATA}
    if meta:
        trimmed["metadata"] = meta
    else:
        trimmed.pop("metadata", None)
    return digest(trimmed)


def union_fields(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """The union of two fieldsV1 sets (nested dicts; leaves are empty dicts)."""
    merged: dict[str, Any] = copy.deepcopy(dict(a))
    for key, sub in b.items():
        merged[key] = union_fields(merged[key], sub) if key in merged else copy.deepcopy(sub)
    return merged
