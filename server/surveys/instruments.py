"""Instrument files: their schema, loading and validation.

An instrument is data (docs/instruments.md): a YAML or JSON file with its
items, response scales, subscales, reverse-scored items and scoring rule.
Bondline's own files live in ``server/instruments``; a clinic adds its own
in ``BONDLINE_INSTRUMENTS_DIR`` without code changes. Every file is checked
at server start and a broken one stops the start with a message naming the
file and the problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA = "bondline.instrument/1"
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "instruments"
SUFFIXES = (".yaml", ".yml", ".json")
Respondent = Literal["client", "therapist"]
RESPONDENTS: tuple[Respondent, ...] = ("client", "therapist")

Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
ItemId = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Text = Annotated[str, Field(min_length=1, max_length=2000)]


class InstrumentError(Exception):
    """A broken instrument file or an unknown instrument id."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Choice(_Strict):
    value: int = Field(ge=-1000, le=1000)
    label: Annotated[str, Field(min_length=1, max_length=120)]


class Item(_Strict):
    id: ItemId
    text: Text
    scale: Ident | None = None
    reverse: bool = False
    # Number of the item in a longer parent instrument, for provenance only.
    source_item: int | None = None


class Subscale(_Strict):
    id: Ident
    title: Annotated[str, Field(min_length=1, max_length=120)]
    items: list[ItemId] = Field(min_length=1)


class Scoring(_Strict):
    shown: Literal["sum", "mean"] = Field(description="Which score reports show first.")
    max_missing: int = Field(ge=0, description="Most blank items for which a total and mean are still given.")
    subscale_max_missing: int = Field(ge=0, description="Most blank items for which a subscale score is given.")
    missing_sum: Literal["prorate", "none"] = Field(
        description="prorate: with blanks, sum = mean of answered items x item count; none: no sum with blanks."
    )


class Instrument(_Strict):
    schema_: Literal["bondline.instrument/1"] = Field(alias="schema")
    id: Ident
    version: Annotated[str, Field(min_length=1, max_length=40)]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    short_title: Annotated[str, Field(min_length=1, max_length=40)]
    respondent: Respondent
    language: Annotated[str, Field(min_length=2, max_length=16)] = "en"
    description: Text
    instructions: Text
    blank_reads_as: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    scales: dict[Ident, list[Choice]] = Field(min_length=1)
    default_scale: Ident
    items: list[Item] = Field(min_length=1, max_length=200)
    subscales: list[Subscale] = Field(default_factory=list)
    scoring: Scoring
    citation: Text
    source: Text
    permission: Text

    @model_validator(mode="after")
    def _consistent(self) -> Instrument:
        for name, choices in self.scales.items():
            values = [c.value for c in choices]
            if len(values) < 2:
                raise ValueError(f"scale {name!r} needs at least two choices")
            if values != sorted(set(values)):
                raise ValueError(f"scale {name!r}: values must be distinct and ascending")
        if self.default_scale not in self.scales:
            raise ValueError(f"default_scale {self.default_scale!r} is not one of the scales")
        ids = [i.id for i in self.items]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate item ids: {dupes}")
        for item in self.items:
            if item.scale is not None and item.scale not in self.scales:
                raise ValueError(f"item {item.id!r} names unknown scale {item.scale!r}")
        sub_ids = [s.id for s in self.subscales]
        if len(sub_ids) != len(set(sub_ids)):
            raise ValueError("duplicate subscale ids")
        known = set(ids)
        for sub in self.subscales:
            unknown = [i for i in sub.items if i not in known]
            if unknown:
                raise ValueError(f"subscale {sub.id!r} names unknown items {unknown}")
            if len(set(sub.items)) != len(sub.items):
                raise ValueError(f"subscale {sub.id!r} lists an item twice")
            if self.scoring.subscale_max_missing >= len(sub.items):
                raise ValueError(f"subscale {sub.id!r}: subscale_max_missing must be below its item count")
        if self.scoring.max_missing >= len(self.items):
            raise ValueError("scoring.max_missing must be below the number of items")
        return self

    def scale_of(self, item: Item) -> list[Choice]:
        return self.scales[item.scale or self.default_scale]

    def item(self, item_id: str) -> Item:
        for it in self.items:
            if it.id == item_id:
                return it
        raise KeyError(item_id)


def _read(path: Path) -> object:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def _explain(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(file)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def load_file(path: Path) -> Instrument:
    """Parse and check one instrument file; InstrumentError names the problem."""
    try:
        raw = _read(path)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, json.JSONDecodeError) as e:
        raise InstrumentError(f"{path}: cannot read instrument file: {e}") from None
    if not isinstance(raw, dict):
        raise InstrumentError(f"{path}: an instrument file must hold one mapping (id, version, items, ...)")
    if raw.get("schema") != SCHEMA:
        raise InstrumentError(f"{path}: 'schema' must be {SCHEMA!r}, found {raw.get('schema')!r}")
    try:
        inst = Instrument.model_validate(raw)
    except ValidationError as e:
        raise InstrumentError(f"{path}: invalid instrument: {_explain(e)}") from None
    if path.stem != inst.id:
        raise InstrumentError(f"{path}: file name must be the instrument id ({inst.id}{path.suffix})")
    return inst


def instrument_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise InstrumentError(f"instrument directory {directory} does not exist")
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in SUFFIXES)


class Registry:
    """The instruments this server offers, and the default set per respondent."""

    def __init__(self, instruments: Iterable[Instrument], defaults: dict[Respondent, list[str]]) -> None:
        self._by_id: dict[str, Instrument] = {}
        for inst in instruments:
            if inst.id in self._by_id:
                raise InstrumentError(f"two instrument files have the id {inst.id!r}")
            self._by_id[inst.id] = inst
        self.defaults: dict[Respondent, list[str]] = {}
        for respondent, ids in defaults.items():
            self.defaults[respondent] = self.check_selection(respondent, ids, what="default instruments")

    def __contains__(self, instrument_id: object) -> bool:
        return instrument_id in self._by_id

    def get(self, instrument_id: str) -> Instrument:
        try:
            return self._by_id[instrument_id]
        except KeyError:
            raise InstrumentError(f"unknown instrument {instrument_id!r}") from None

    def all(self) -> list[Instrument]:
        return sorted(self._by_id.values(), key=lambda i: i.id)

    def check_selection(self, respondent: Respondent, ids: list[str], *, what: str = "instruments") -> list[str]:
        """Validate a list of instrument ids for a respondent; returns it unchanged."""
        if len(set(ids)) != len(ids):
            raise InstrumentError(f"{what} for {respondent}: an instrument is listed twice")
        for iid in ids:
            inst = self._by_id.get(iid)
            if inst is None:
                known = ", ".join(sorted(self._by_id)) or "none"
                raise InstrumentError(f"{what} for {respondent}: unknown instrument {iid!r} (known: {known})")
            if inst.respondent != respondent:
                raise InstrumentError(
                    f"{what} for {respondent}: instrument {iid!r} is for the {inst.respondent}, not the {respondent}"
                )
        return list(ids)


def load_registry(extra_dir: str | Path | None, defaults: dict[Respondent, list[str]]) -> Registry:
    """Load the built-in instruments plus a clinic's directory, checking all."""
    dirs = [BUILTIN_DIR]
    if extra_dir:
        dirs.append(Path(extra_dir).expanduser())
    return Registry((load_file(p) for d in dirs for p in instrument_files(d)), defaults)
