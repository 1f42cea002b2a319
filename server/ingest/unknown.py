"""Bounds on the unknown fields of a telemetry batch (docs/telemetry.md, "Rules").

Unknown fields are stored with their values and returned by the API, so
whatever they hold must be something every reader can write back: nesting
at most ``MAX_UNKNOWN_DEPTH`` levels below the field (orjson writes no more
than 254, and the API and reports walk stored JSON recursively), integers
within 64 bits (orjson's limit, and what PostgreSQL's and most clients'
JSON readers hold exactly) and finite numbers (JSON has no NaN or Infinity;
1e400 parses as infinity). Declared fields have their own ranges in
schema.py; only the fields a schema object does not declare are walked, so
the usual sample costs a few set differences.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from server.ingest.schema import Batch, ClientEvent, ConnectionFacts, Sample, StreamFigures

MAX_UNKNOWN_DEPTH = 16
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _declared(cls: Any) -> frozenset[str]:
    return frozenset(cls.__required_keys__ | cls.__optional_keys__)


_BATCH = _declared(Batch)
_SAMPLE = _declared(Sample)
_STREAM = _declared(StreamFigures)
_CONNECTION = _declared(ConnectionFacts)
_EVENT = _declared(ClientEvent)


def _value_problem(value: Any, path: str, depth: int) -> str | None:
    """Why an unknown value cannot be stored, or None. ``depth`` counts the
    containers entered below the unknown field."""
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return None
        return f"{path}: integer outside the 64-bit range (-2^63 to 2^63-1)"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path}: number out of range (beyond a 64-bit float)"
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:  # parsed JSON holds nothing else
        return f"{path}: not a JSON value"
    if depth >= MAX_UNKNOWN_DEPTH:
        return f"{path}: unknown content nests more than {MAX_UNKNOWN_DEPTH} levels"
    for key, item in items:
        problem = _value_problem(item, f"{path}.{key}", depth + 1)
        if problem:
            return problem
    return None


def _extras_problem(obj: Mapping[str, Any], declared: frozenset[str], path: str) -> str | None:
    extra = obj.keys() - declared
    if not extra:
        return None
    prefix = f"{path}." if path else ""
    for key in sorted(extra):
        problem = _value_problem(obj[key], prefix + key, 0)
        if problem:
            return problem
    return None


def unknown_content_problem(batch: Batch) -> str | None:
    """Why a validated batch's unknown content cannot be stored, or None;
    the reason names the field's path, as validation errors do. This runs
    on every batch: the usual object has no unknown field, and
    ``issuperset`` tells so without building anything."""
    if not _BATCH.issuperset(batch):
        problem = _extras_problem(batch, _BATCH, "")
        if problem:
            return problem
    for i, smp in enumerate(batch.get("samples", ())):
        if not _SAMPLE.issuperset(smp):
            problem = _extras_problem(smp, _SAMPLE, f"samples.{i}")
            if problem:
                return problem
        for j, stream in enumerate(smp.get("streams", ())):
            if not _STREAM.issuperset(stream):
                problem = _extras_problem(stream, _STREAM, f"samples.{i}.streams.{j}")
                if problem:
                    return problem
        connection = smp.get("connection")
        if connection and not _CONNECTION.issuperset(connection):
            problem = _extras_problem(connection, _CONNECTION, f"samples.{i}.connection")
            if problem:
                return problem
    for i, event in enumerate(batch.get("events", ())):
        if not _EVENT.issuperset(event):
            problem = _extras_problem(event, _EVENT, f"events.{i}")
            if problem:
                return problem
    return None
