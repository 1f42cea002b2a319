"""Turning an ingest message into rows, or into a precise refusal.

Shared by the WebSocket and the HTTP fallback so both refuse the same input
with the same reason. Validation is all-or-nothing: a batch with one bad
sample is refused whole and nothing of it is written.

One parser contract for both channels (docs/telemetry.md, "Rules"): every
message is read by pydantic's JSON parser, either in one step with
validation (``read_samples``, the fast path for the usual samples batch) or
as plain values first (``parse_json``); then the same checks run on the
same values, so a message means the same, or is refused with the same
reason, whichever way it came. The fast path reads a batch of declared
fields only with msgspec instead, which gives exactly the values pydantic's
reading would (server/ingest/fastread.py; tests/test_ingest_fastread.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

import orjson
from pydantic import ValidationError
from pydantic_core import from_json

from media.probe.profile import PROBE_SEQ_BASE, STREAM_PARTICIPANT, probe_seq
from server.config import Settings
from server.ingest.fastread import read_usual_batch
from server.ingest.headline import headline_row
from server.ingest.schema import SCHEMA_ID, Batch, batch_adapter, check_times
from server.ingest.unknown import MAX_UNKNOWN_DEPTH, unknown_content_problem
from server.sessions.tokens import TokenOwner
from server.store.telemetry import EventRow, SampleRow
from server.timeutil import now_ms


class Refusal(Exception):
    """A refused message: WebSocket close code, HTTP status and a reason."""

    def __init__(self, ws_code: int, http_status: int, reason: str) -> None:
        super().__init__(reason)
        self.ws_code = ws_code
        self.http_status = http_status
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.ws_code}/{self.http_status}: {self.reason}"


# The documented codes (docs/telemetry.md, "Errors"; docs/probe.md for the
# probe socket), one table for both sockets. WebSocket codes are in the
# 4000-4999 private range and end in the matching HTTP status.
MALFORMED = (4400, 400)
UNAUTHORIZED = (4401, 401)
EXPIRED = (4403, 403)
AUTH_TIMEOUT = (4408, 408)
TOO_LARGE = (4413, 413)
UNSUPPORTED_SCHEMA = (4415, 415)
INVALID = (4422, 422)
RATE_LIMITED = (4429, 429)
UNAVAILABLE = (4503, 503)  # also: the sidecar is at its probe capacity
MEDIA_FAILED = (4504, 504)  # the sidecar's probe media did not connect or failed


def refuse(kind: tuple[int, int], reason: str) -> Refusal:
    return Refusal(kind[0], kind[1], reason)


# Size bounds of what one sample or event may take in the store (docs/telemetry.md,
# "Rules"): a full sample of 64 streams is about 50 KB as JSON.
MAX_SAMPLE_JSON = 65_536
MAX_EVENT_JSON = 8_192


def _check_size(raw: bytes | str, settings: Settings) -> None:
    # str.isascii() is O(1) in CPython: ASCII text is as long as its UTF-8.
    size = len(raw) if isinstance(raw, bytes) or raw.isascii() else len(raw.encode("utf-8"))
    if size > settings.max_message_bytes:
        raise refuse(TOO_LARGE, f"message of {size} bytes exceeds {settings.max_message_bytes}")


def parse_json(raw: bytes | str, settings: Settings) -> dict[str, Any]:
    """The message as plain values, read by the same parser as the fast path's
    (so 2^70 stays an integer and 1e400 overflows alike on both paths)."""
    _check_size(raw, settings)
    try:
        msg = from_json(raw, allow_inf_nan=False)
    except ValueError as e:
        if "recursion limit" in str(e):
            raise refuse(INVALID, "the message nests too deeply (unknown content may nest at most "
                                  f"{MAX_UNKNOWN_DEPTH} levels)") from None
        raise refuse(MALFORMED, f"malformed JSON: {e}") from None
    if not isinstance(msg, dict):
        raise refuse(MALFORMED, "a message must be a JSON object")
    return msg


def _first_error(e: ValidationError) -> str:
    err = e.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


def validate_batch(msg: dict[str, Any], settings: Settings, *, sidecar: bool = False) -> Batch:
    """Validate a parsed message, refusing it with the most specific reason.
    Only the sidecar (``sidecar=True``) writes seqs from PROBE_SEQ_BASE up."""
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
    _check_batch(batch, settings, sidecar=sidecar)
    return batch


def _check_batch(batch: Batch, settings: Settings, *, sidecar: bool = False) -> None:
    n = len(batch.get("samples", ()))
    if n > settings.max_batch_samples:
        raise refuse(TOO_LARGE, f"{n} samples in one batch; at most {settings.max_batch_samples}")
    n = len(batch.get("events", ()))
    if n > settings.max_batch_events:
        raise refuse(TOO_LARGE, f"{n} events in one batch; at most {settings.max_batch_events}")
    problem = check_times(batch) or unknown_content_problem(batch)
    if problem:
        raise refuse(INVALID, problem)
    if not sidecar:
        for i, smp in enumerate(batch.get("samples", ())):
            if smp["seq"] >= PROBE_SEQ_BASE and not _participant_probe_sample(smp):
                raise refuse(INVALID, f"samples.{i}.seq: seqs from 2^48 ({PROBE_SEQ_BASE}) up belong to the "
                                      "probe; a collector may send there only a probe agent's own sample, "
                                      "source 'probe' at seq 2^48 + 4 x (startMs / 1000) + 1")


def _participant_probe_sample(smp: Mapping[str, Any]) -> bool:
    """A probe agent's own measurement (docs/probe.md, "Samples"): the one
    seq of the probe range a collector may write. The sidecar's seqs (and
    the reserved streams) stay the sidecar's, so no collector can claim an
    interval before the sidecar's measurement of it arrives."""
    start = smp["startMs"]
    return (smp["source"] == "probe" and start % 1000 == 0
            and smp["seq"] == probe_seq(start, STREAM_PARTICIPANT))


# Tokens orjson refuses but pydantic's JSON parser reads as floats: a
# message holding them (even inside a string) takes the slow path.
_NON_JSON = ("NaN", "Infinity")
_NON_JSON_BYTES = tuple(token.encode() for token in _NON_JSON)


def read_samples(raw: bytes | str, settings: Settings) -> Batch | None:
    """The fast path for the usual message, a valid ``samples`` batch: parse
    and validate in one step, without building the parsed message as Python
    objects first (docs/performance.md, "Telemetry ingest"): msgspec for a
    batch of declared fields only (server/ingest/fastread.py), else
    pydantic's Rust core. Returns None for anything else, which the caller
    then parses and dispatches: refusals keep their specific codes and
    reasons, because validate_batch() is what refuses a bad batch."""
    _check_size(raw, settings)
    batch = cast("Batch | None", read_usual_batch(raw))
    if batch is None:
        # msgspec refuses NaN and Infinity, so only this reader needs the scan.
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


def websocket_message(raw: bytes | str, settings: Settings) -> tuple[Batch | None, dict[str, Any]]:
    """A telemetry socket message: (the validated batch, {}) for a samples
    batch, else (None, the message) for the caller to dispatch on its type."""
    batch = read_samples(raw, settings)
    if batch is not None:
        return batch, {}
    msg = parse_json(raw, settings)
    if msg.get("type") == "samples":
        # The fast path declined it: validate_batch refuses an invalid batch
        # with its reason, and takes a valid one holding the text NaN or
        # Infinity in a string.
        return validate_batch(msg, settings), {}
    return None, msg


def http_message(raw: bytes | str, settings: Settings) -> tuple[dict[str, Any], object]:
    """A telemetry POST body: (the message, its ``token`` field). The caller
    checks the token, then validates with ``validate_batch``."""
    msg = parse_json(raw, settings)
    token = msg.pop("token", None)
    msg.setdefault("type", "samples")
    return msg, token


def _json(value: Mapping[str, Any]) -> str:
    # Validation has bounded what orjson cannot write (integers beyond 64
    # bits, nesting beyond its 254 levels): see server/ingest/unknown.py.
    return orjson.dumps(value).decode("utf-8")


def sample_row(participant_id: int, sample: Mapping[str, Any], received_ms: int) -> SampleRow:
    """The stored row of one validated sample: its own fields, the headline
    figures derived from it, and its JSON as it arrived, unknown fields
    included (docs/telemetry.md)."""
    return SampleRow(participant_id, sample["seq"], sample["startMs"], sample["intervalMs"], sample["source"],
                     received_ms, *headline_row(sample), _json(sample))


# The event fields that have columns; the rest is the event's JSON.
_EVENT_FIELDS = frozenset(("key", "kind", "tMs", "endMs", "severity"))


def event_row(owner: TokenOwner, event: Mapping[str, Any], origin: str = "collector") -> EventRow:
    """The stored row of one validated event, keyed by its ``key``."""
    data = {k: v for k, v in event.items() if k not in _EVENT_FIELDS}
    return EventRow(owner.session_id, owner.participant_id, event["kind"], origin, event["tMs"],
                    event.get("endMs"), event.get("severity"), event["key"], _json(data))


def to_rows(
    batch: Batch, owner: TokenOwner, origin_ms: int | None = None, *, event_origin: str = "collector"
) -> tuple[list[SampleRow], list[EventRow]]:
    """Rows for the store, from a validated batch; a sample or event too
    large as stored is refused here, before anything is written."""
    received = origin_ms if origin_ms is not None else now_ms()
    pid = owner.participant_id
    samples = [sample_row(pid, s, received) for s in batch.get("samples", ())]
    events = [event_row(owner, ev, event_origin) for ev in batch.get("events", ())]
    for row in samples:
        if len(row.data) > MAX_SAMPLE_JSON:
            raise refuse(TOO_LARGE, f"sample seq {row.seq} is {len(row.data)} bytes as stored JSON; "
                                    f"at most {MAX_SAMPLE_JSON}")
    for ev in events:
        if len(ev.data) > MAX_EVENT_JSON:
            raise refuse(TOO_LARGE, f"event {ev.client_key}: its other fields are {len(ev.data)} bytes as "
                                    f"stored JSON; at most {MAX_EVENT_JSON}")
    return samples, events


def server_event(owner: TokenOwner, kind: str, data: dict[str, Any]) -> EventRow:
    """An event the server itself observed about a participant's collector."""
    return EventRow(owner.session_id, owner.participant_id, kind, "server", now_ms(), None, None, None,
                    orjson.dumps(data).decode("utf-8"))


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
