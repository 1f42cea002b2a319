"""Turning an ingest message into rows, or into a precise refusal.

Shared by the WebSocket and the HTTP fallback so both refuse the same input
with the same reason. Validation is all-or-nothing: a batch with one bad
sample is refused whole and nothing of it is written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from server.config import Settings
from server.ingest.headline import headline_row
from server.ingest.schema import SCHEMA_ID, Batch, batch_adapter, check_times
from server.ingest.writer import EventRow, SampleRow, now_ms
from server.sessions.tokens import TokenOwner


class Refusal(Exception):
    """A refused message: WebSocket close code, HTTP status and a reason."""

    def __init__(self, ws_code: int, http_status: int, reason: str) -> None:
        super().__init__(reason)
        self.ws_code = ws_code
        self.http_status = http_status
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.ws_code}/{self.http_status}: {self.reason}"


# The documented codes (docs/telemetry.md, "Errors"). WebSocket codes are in
# the 4000-4999 private range and end in the matching HTTP status.
MALFORMED = (4400, 400)
UNAUTHORIZED = (4401, 401)
EXPIRED = (4403, 403)
AUTH_TIMEOUT = (4408, 408)
TOO_LARGE = (4413, 413)
UNSUPPORTED_SCHEMA = (4415, 415)
INVALID = (4422, 422)
RATE_LIMITED = (4429, 429)
UNAVAILABLE = (4503, 503)


def refuse(kind: tuple[int, int], reason: str) -> Refusal:
    return Refusal(kind[0], kind[1], reason)


def _check_size(raw: bytes | str, settings: Settings) -> None:
    # str.isascii() is O(1) in CPython: ASCII text is as long as its UTF-8.
    size = len(raw) if isinstance(raw, bytes) or raw.isascii() else len(raw.encode("utf-8"))
    if size > settings.max_message_bytes:
        raise refuse(TOO_LARGE, f"message of {size} bytes exceeds {settings.max_message_bytes}")


def parse_json(raw: bytes | str, settings: Settings) -> dict[str, Any]:
    _check_size(raw, settings)
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise refuse(MALFORMED, f"malformed JSON: {e}") from None
    if not isinstance(msg, dict):
        raise refuse(MALFORMED, "a message must be a JSON object")
    return msg


def _first_error(e: ValidationError) -> str:
    err = e.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


def validate_batch(msg: dict[str, Any], settings: Settings) -> Batch:
    """Validate a parsed message, refusing it with the most specific reason."""
    schema = msg.get("schema")
    if schema != SCHEMA_ID:
        raise refuse(UNSUPPORTED_SCHEMA, f"unsupported schema {schema!r}; this server takes {SCHEMA_ID!r}")
    samples = msg.get("samples", [])
    events = msg.get("events", [])
    if isinstance(samples, list) and len(samples) > settings.max_batch_samples:
        raise refuse(TOO_LARGE, f"{len(samples)} samples in one batch; at most {settings.max_batch_samples}")
    if isinstance(events, list) and len(events) > settings.max_batch_events:
        raise refuse(TOO_LARGE, f"{len(events)} events in one batch; at most {settings.max_batch_events}")
    for raw in samples if isinstance(samples, list) else ():
        if isinstance(raw, dict) and "schema" in raw and raw["schema"] != SCHEMA_ID:
            raise refuse(UNSUPPORTED_SCHEMA, f"sample seq {raw.get('seq')} has schema {raw['schema']!r}")
    try:
        batch = batch_adapter.validate_python(msg)
    except ValidationError as e:
        raise refuse(INVALID, _first_error(e)) from None
    _check_batch(batch, settings)
    return batch


def _check_batch(batch: Batch, settings: Settings) -> None:
    n = len(batch.get("samples", ()))
    if n > settings.max_batch_samples:
        raise refuse(TOO_LARGE, f"{n} samples in one batch; at most {settings.max_batch_samples}")
    n = len(batch.get("events", ()))
    if n > settings.max_batch_events:
        raise refuse(TOO_LARGE, f"{n} events in one batch; at most {settings.max_batch_events}")
    problem = check_times(batch)
    if problem:
        raise refuse(INVALID, problem)


# Tokens orjson refuses but pydantic's JSON parser reads as floats: a
# message holding them (even inside a string) takes the slow path.
_NON_JSON = ("NaN", "Infinity")
_NON_JSON_BYTES = tuple(token.encode() for token in _NON_JSON)


def read_samples(raw: bytes | str, settings: Settings) -> Batch | None:
    """The fast path for the usual message, a valid ``samples`` batch: parse
    and validate in one step, in pydantic's Rust core, without building the
    parsed message as Python objects first (docs/performance.md, "Telemetry
    ingest"). Returns None for anything else, which the caller then parses
    and dispatches: refusals keep their specific codes and reasons, because
    validate_batch() is what refuses a bad batch."""
    _check_size(raw, settings)
    if isinstance(raw, str):
        if any(token in raw for token in _NON_JSON):
            return None
    elif any(token in raw for token in _NON_JSON_BYTES):
        return None
    try:
        batch = batch_adapter.validate_json(raw)
    except ValidationError:
        return None
    if batch.get("type") != "samples":
        return None
    _check_batch(batch, settings)
    return batch


def _json(value: Mapping[str, Any]) -> str:
    try:
        return orjson.dumps(value).decode("utf-8")
    except orjson.JSONEncodeError:
        # orjson writes no integer beyond 64 bits, which an unknown field may
        # hold; the standard library writes it exactly.
        return json.dumps(value, separators=(",", ":"), allow_nan=False)


def to_rows(
    batch: Batch, owner: TokenOwner, origin_ms: int | None = None
) -> tuple[list[SampleRow], list[EventRow]]:
    """Rows for the writer. A sample's JSON is what arrived, as validated:
    every field with its value, unknown ones included (docs/telemetry.md)."""
    received = origin_ms if origin_ms is not None else now_ms()
    samples: list[SampleRow] = []
    pid = owner.participant_id
    for s in batch.get("samples", ()):
        samples.append(
            (pid, s["seq"], s["startMs"], s["intervalMs"], s["source"], received, *headline_row(s), _json(s))
        )
    events: list[EventRow] = []
    for ev in batch.get("events", ()):
        data = {k: v for k, v in ev.items() if k not in ("key", "kind", "tMs", "endMs", "severity")}
        text = _json(data)
        events.append(
            (
                owner.session_id,
                owner.participant_id,
                ev["kind"],
                "collector",
                ev["tMs"],
                ev.get("endMs"),
                ev.get("severity"),
                ev["key"],
                text,
            )
        )
    return samples, events


def server_event(owner: TokenOwner, kind: str, data: dict[str, Any]) -> EventRow:
    """An event the server itself observed about a participant's collector."""
    return (
        owner.session_id,
        owner.participant_id,
        kind,
        "server",
        now_ms(),
        None,
        None,
        None,
        orjson.dumps(data).decode("utf-8"),
    )


class TokenBucket:
    """Allows ``rate`` messages a second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
