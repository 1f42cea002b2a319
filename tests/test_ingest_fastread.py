"""The msgspec fast reader (server/ingest/fastread.py) against pydantic's
validation of the same bytes: whatever the fast reader accepts, pydantic
accepts too, with the same values, types (an integer sent for a float field
is a float), sign of zero and key order, so the stored JSON is the same
byte for byte. What it declines goes to pydantic as before. Real Chromium
samples (bench/data) with declared fields set to edge values: bounds and
one past them, -0, 1e400, 2^64, booleans, null, strings at their length
limits, duplicate keys, unknown fields and events. Seed: tests/support/fuzz.py.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bench.real_samples import recorded
from server.ingest.fastread import UntranslatableSchema, read_usual_batch, struct_for
from server.ingest.schema import SCHEMA_ID, batch_adapter
from tests.support.fuzz import fuzz

REAL = [s for s in recorded() if s.get("streams")]
STREAM_FIELDS = sorted({k for s in REAL for st_ in s["streams"] for k in st_} | {"id", "rid", "farEnd", "ssrc"})
CONNECTION_FIELDS = ["state", "iceState", "localCandidateType", "protocol", "relayProtocol", "rttMs",
                     "availableOutgoingBitrateKbps", "connections"]
SAMPLE_FIELDS = ["seq", "startMs", "intervalMs", "source", "schema", "streams", "connection"]
# Raw JSON spellings, placed as they are.
LITERALS = ["0", "-0", "-0.0", "0.0", "1", "-1", "1.0", "0.5", "1e400", "-1e400", "1e-400", "-1e-400",
            str(2**64), str(2**63), str(2**53), str(2**53 + 1), str(2**32 - 1), str(2**32), "1000", "1000.0001",
            "3600000", "3600000.0000001", "10000000", "1000000000000", "1000000000001", "-1000000000",
            "-1000000001", "1577836800000", "100000000000000", "50", "49", "600000", "600001", "1E2", "5e-324",
            "true", "false", "null", '"5"', '""', '"x"', json.dumps("x" * 16), json.dumps("x" * 17),
            json.dumps("\u00e9" * 128), json.dumps("\u00e9" * 129), json.dumps("\U0001f600" * 16),
            '"audio"', '"video"', '"inbound"', '"sfu"', '"none"', '"cpu"', '"connected"', '"relay"', '"tls"',
            '"browser"', '"probe"', f'"{SCHEMA_ID}"', "[]", "{}", '"\\u0000"', "NaN", '"NaN"']
EXTRA = ["odd", "note"]


def _edges(node: dict[str, Any]) -> list[str]:
    """Each bound of a declared field, and one past it, as JSON text."""
    kind = node["type"]
    if kind == "nullable":
        return ["null", *_edges(node["schema"])]
    if kind in ("int", "float"):
        out = []
        for key, step in (("ge", -1), ("le", 1)):
            if key in node:
                out += [str(node[key]), str(node[key] + step), f"{float(node[key])!r}"]
                if kind == "float":
                    out.append(repr(float(node[key]) + step * 1e-6 * max(1.0, abs(node[key]))))
        return out
    if kind == "str":
        n = node.get("max_length", 8)
        return [json.dumps("\u00e9" * n), json.dumps("y" * (n + 1)), json.dumps("\U0001f600" * (n + 1))]
    if kind == "literal":
        return [json.dumps(v) for v in node["expected"]] + ['"other"']
    return []


def _field_edges() -> dict[str, list[str]]:
    """Every declared field's edges, by name, from the schema itself."""
    edges: dict[str, list[str]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "typed-dict":
                for name, field in node["fields"].items():
                    edges.setdefault(name, []).extend(_edges(field["schema"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(batch_adapter.core_schema)
    return edges


EDGES = _field_edges()


def _encode(value: Any, spliced: dict[int, list[tuple[str, str]]]) -> str:
    if isinstance(value, dict):
        parts = [json.dumps(k) + ":" + _encode(v, spliced) for k, v in value.items()]
        parts += [json.dumps(k) + ":" + text for k, text in spliced.get(id(value), ())]
        return "{" + ",".join(parts) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(v, spliced) for v in value) + "]"
    return orjson.dumps(value).decode()


@st.composite
def batches(draw: st.DrawFn) -> str:
    samples = [json.loads(json.dumps(s)) for s in draw(st.lists(st.sampled_from(REAL), min_size=1, max_size=4))]
    for i, smp in enumerate(samples):
        smp["seq"] = i
    msg: dict[str, Any] = {"type": "samples", "schema": SCHEMA_ID, "batch": 1, "samples": samples}
    # The plugin sends "events": [] with every batch.
    if draw(st.integers(0, 9)) == 0:
        msg["events"] = [{"key": "e1", "kind": "connection.state", "tMs": samples[0]["startMs"]}]
    elif draw(st.booleans()):
        msg["events"] = []
    # Literal texts appended to an object's members (after its own, so a
    # repeated name is a duplicate key that comes last).
    spliced: dict[int, list[tuple[str, str]]] = {}
    for _ in range(draw(st.integers(0, 4))):
        smp = draw(st.sampled_from(samples))
        where = draw(st.sampled_from(["stream", "connection", "sample", "drop"]))
        if where == "stream" and smp.get("streams"):
            obj, name = draw(st.sampled_from(smp["streams"])), draw(st.sampled_from(STREAM_FIELDS))
        elif where == "connection" and smp.get("connection"):
            obj, name = smp["connection"], draw(st.sampled_from(CONNECTION_FIELDS))
        elif where == "drop":
            smp.pop(draw(st.sampled_from(SAMPLE_FIELDS)), None)
            continue
        else:
            obj, name = smp, draw(st.sampled_from(SAMPLE_FIELDS))
        if draw(st.integers(0, 9)) == 0:
            name = draw(st.sampled_from(EXTRA))
        own = EDGES.get(name)
        text = draw(st.sampled_from(own if own and draw(st.integers(0, 2)) else LITERALS))
        if draw(st.booleans()):
            obj.pop(name, None)
        spliced.setdefault(id(obj), []).append((name, text))
    return _encode(msg, spliced)


def test_what_the_fast_reader_takes_pydantic_reads_the_same() -> None:
    outcomes = {"same": 0, "declined, pydantic takes": 0, "declined, pydantic refuses": 0}

    @fuzz(max_examples=400)
    @given(raw=batches(), as_bytes=st.booleans())
    def same(raw: str, as_bytes: bool) -> None:
        data: str | bytes = raw.encode() if as_bytes else raw
        fast = read_usual_batch(data)
        try:
            slow: Any = batch_adapter.validate_json(data)
        except ValidationError:
            slow = None
        if fast is None:
            outcomes["declined, pydantic takes" if slow is not None else "declined, pydantic refuses"] += 1
            return
        assert slow is not None, raw[:400]
        # Bytes compare types (1 vs 1.0), signs of zero and key order too.
        assert orjson.dumps(fast) == orjson.dumps(slow), raw[:400]
        outcomes["same"] += 1

    same()
    # It explored both ways: mostly taken (the point of it), and edges declined.
    assert outcomes["same"] >= 40 and outcomes["declined, pydantic refuses"] >= 40, outcomes


def test_real_samples_take_the_fast_path() -> None:
    """Every recorded Chromium sample, in a batch as the plugin sends it, is
    read by msgspec, not declined (else the speed-up would silently be
    lost), and as pydantic reads it."""
    for smp in recorded():
        # As the plugin sends it (plugin/js/bondline.js: always an events list), and without.
        for extra in ({"events": []}, {}):
            raw = orjson.dumps({"type": "samples", "schema": SCHEMA_ID, "batch": 0, "samples": [smp], **extra})
            fast = read_usual_batch(raw)
            assert fast is not None, smp
            assert orjson.dumps(fast) == orjson.dumps(batch_adapter.validate_json(raw))


def test_a_schema_construct_msgspec_cannot_check_alike_is_refused_at_import() -> None:
    """schema.py may only use what the translation carries over exactly; a
    pattern (Rust regex in pydantic, Python re in msgspec) or a Python
    validator must stop the import, not be skipped."""
    for node in ({"type": "str", "pattern": "^a$"}, {"type": "int", "multiple_of": 2},
                 {"type": "literal", "expected": [1, True]},
                 {"type": "function-after", "schema": {"type": "str"}, "function": {}}):
        with pytest.raises(UntranslatableSchema):
            struct_for({"type": "typed-dict", "fields": {"f": {"type": "typed-dict-field", "schema": node,
                                                                 "required": True}}}, "T")
