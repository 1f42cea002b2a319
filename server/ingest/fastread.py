"""The usual samples batch, read and validated in one pass by msgspec.

pydantic's ``validate_json`` of a batch cost about three times the JSON
parse alone (docs/performance.md, "Where Bondline's ingest time goes"),
mostly its bookkeeping for unknown fields (``extra="allow"``), which the
usual batch does not have. msgspec decodes straight into typed structs,
checking the same types and bounds, in about a quarter of that time, and
turning the structs into dicts takes about as long again: half in all.

schema.py stays the one contract: the structs here are derived from its
pydantic core schema at import, and a construct this module cannot carry
over exactly makes the import fail (the server's start and the tests)
rather than let the two drift apart. Only what both read identically is
taken here; every other message is declined (None) and goes to pydantic
as before, which then accepts it or refuses it with its reason:

- unknown fields anywhere (``forbid_unknown_fields``): pydantic keeps
  them and server/ingest/unknown.py bounds them;
- a batch with events (an empty list is fine): an event key's
  control-character check is Python code, and the kind's pattern is Rust
  regex, whose ``$`` differs from Python's (msgspec's) before a trailing
  newline;
- anything msgspec refuses: bad values, big integers, NaN, bad UTF-8.

What it accepts comes out as pydantic's output would: plain dicts, fields
in the schema's order, a field present only if it was sent (``UNSET``
otherwise, so an explicit null stays), integers sent for a float field as
floats (strict pydantic converts them so too; the integer -0 is 0.0 in
both, the float -0.0 stays -0.0 in both).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from server.ingest.schema import batch_adapter


class UntranslatableSchema(Exception):
    """A schema.py construct msgspec would not check exactly as pydantic does."""


_BOUNDS = {"ge", "le", "gt", "lt", "min_length", "max_length"}
_PLAIN = {"type", "metadata", "strict"}


def _meta(node: dict[str, Any], base: Any) -> Any:
    extra = node.keys() - _BOUNDS - _PLAIN
    if extra:
        raise UntranslatableSchema(f"{node['type']} with {sorted(extra)}")
    bounds = {k: node[k] for k in _BOUNDS & node.keys()}
    return Annotated[base, Meta(**bounds)] if bounds else base


def _translate(node: dict[str, Any], name: str, structs: dict[str, type[Struct]]) -> Any:
    kind = node["type"]
    if kind in ("int", "float"):
        # Strict pydantic: no bool for either, no float for an int; an int
        # for a float becomes a float. msgspec's decoder does the same.
        return _meta(node, int if kind == "int" else float)
    if kind == "str":
        return _meta(node, str)
    if kind == "bool":
        # Strict pydantic takes only true and false, as msgspec's decoder does.
        return _meta(node, bool)
    if kind == "literal":
        expected = node["expected"]
        if not all(isinstance(v, str) for v in expected):
            raise UntranslatableSchema(f"literal {expected!r}: only strings compare alike in both")
        return Literal[tuple(expected)]
    if kind == "nullable":
        return _translate(node["schema"], name, structs) | None
    if kind == "list":
        bounds = {k: node[k] for k in ("min_length", "max_length") if k in node}
        items = list[_translate(node["items_schema"], name, structs)]  # type: ignore[misc,valid-type]
        return Annotated[items, Meta(**bounds)] if bounds else items
    if kind == "typed-dict":
        return struct_for(node, name, structs)
    raise UntranslatableSchema(f"{name}: {kind}")


def struct_for(node: dict[str, Any], name: str, structs: dict[str, type[Struct]] | None = None) -> type[Struct]:
    """The msgspec struct checking what a pydantic ``typed-dict`` core schema
    checks, or UntranslatableSchema. Structs made on the way go into ``structs``."""
    structs = {} if structs is None else structs
    if node.get("computed_fields"):
        raise UntranslatableSchema(f"{name}: computed fields")
    fields: list[tuple[str, Any, Any]] = []
    for key, field in node["fields"].items():
        if field.keys() - {"type", "schema", "required", "metadata"}:
            raise UntranslatableSchema(f"{name}.{key}: {sorted(field)}")
        tp = _translate(field["schema"], f"{name}.{key}", structs)
        fields.append((key, tp, msgspec.NODEFAULT) if field["required"] else (key, tp | UnsetType, UNSET))
    cls = node.get("cls")
    struct = msgspec.defstruct(cls.__name__ if cls else name, fields, kw_only=True, forbid_unknown_fields=True)
    structs[struct.__name__] = struct
    return struct


def _reader() -> msgspec.json.Decoder[Any]:
    schema = dict(batch_adapter.core_schema)
    # Batches with events go to pydantic (see above). The plugin sends
    # "events": [] with every batch, so an empty list is taken here; any
    # item makes the list too long, and the batch is declined.
    no_events = {"type": "list", "items_schema": {"type": "literal", "expected": ["never"]}, "max_length": 0}
    schema["fields"] = {**schema["fields"], "events": {**schema["fields"]["events"], "schema": no_events}}
    return msgspec.json.Decoder(struct_for(schema, "Batch"))


_decoder = _reader()


def read_usual_batch(raw: bytes | str) -> dict[str, Any] | None:
    """The validated batch as pydantic would give it, or None when this is
    not a message this reader takes (then pydantic decides)."""
    try:
        batch: dict[str, Any] = msgspec.to_builtins(_decoder.decode(raw))
    # UnicodeError: a str holding lone surrogates (msgspec encodes a str to
    # UTF-8 first); what pydantic makes of it, it decides as before.
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeError):
        return None
    return batch
