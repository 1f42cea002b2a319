"""Instrument files and scoring, against hand-worked examples."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from server.surveys.instruments import BUILTIN_DIR, Instrument, InstrumentError, load_file, load_registry
from server.surveys.scoring import score

DEFAULTS = {"client": ["wai-sr-client", "bondline-telehealth"], "therapist": ["wai-sr-therapist"]}


@pytest.fixture(scope="module")
def registry():  # type: ignore[no-untyped-def]
    return load_registry(None, DEFAULTS)  # type: ignore[arg-type]


def wai(registry, respondent: str) -> Instrument:  # type: ignore[no-untyped-def]
    inst: Instrument = registry.get(f"wai-sr-{respondent}")
    return inst


# --- the shipped files match the published WAI-SR ----------------------------

@pytest.mark.parametrize("respondent", ["client", "therapist"])
def test_wai_sr_structure_is_the_published_key(registry, respondent: str) -> None:  # type: ignore[no-untyped-def]
    inst = wai(registry, respondent)
    assert [i.id for i in inst.items] == [str(n) for n in range(1, 13)]
    keys = {s.id: [int(i) for i in s.items] for s in inst.subscales}
    # Hatcher & Gillaspy (2006): Task 1, 2, 10, 12; Bond 3, 5, 7, 9; Goal 4, 6, 8, 11.
    assert keys == {"task": [1, 2, 10, 12], "bond": [3, 5, 7, 9], "goal": [4, 6, 8, 11]}
    assert not any(i.reverse for i in inst.items), "the published key has no reverse-scored item"
    labels = [c.label for c in inst.scale_of(inst.items[0])]
    assert labels == ["Seldom", "Sometimes", "Fairly often", "Very often", "Always"]
    assert [c.value for c in inst.scale_of(inst.items[0])] == [1, 2, 3, 4, 5]
    assert inst.respondent == respondent
    assert "Hatcher" in inst.citation and inst.permission and inst.source


def test_both_wai_forms_draw_the_same_items_of_the_36_item_wai(registry) -> None:  # type: ignore[no-untyped-def]
    c, t = wai(registry, "client"), wai(registry, "therapist")
    assert [i.source_item for i in c.items] == [i.source_item for i in t.items]
    assert sorted(i.source_item or 0 for i in c.items) == [4, 8, 16, 19, 22, 23, 24, 25, 30, 32, 35, 36]


def test_telehealth_set_has_the_agreed_item_ids(registry) -> None:  # type: ignore[no-untyped-def]
    inst = registry.get("bondline-telehealth")
    ids = [i.id for i in inst.items]
    assert {"tech_interfered", "felt_heard_seen", "session_changed"} <= set(ids)
    assert 3 <= len(ids) <= 5
    assert [i.id for i in inst.items if i.reverse] == ["felt_heard_seen"]


def test_session_rating_scale_is_not_shipped() -> None:
    names = " ".join(p.read_text().lower() for p in BUILTIN_DIR.iterdir() if p.suffix == ".yaml")
    assert "session rating scale" not in names and "srs" not in [p.stem for p in BUILTIN_DIR.iterdir()]


# --- scoring, worked by hand --------------------------------------------------

def test_wai_sr_complete(registry) -> None:  # type: ignore[no-untyped-def]
    inst = wai(registry, "client")
    answers = {"1": 5, "2": 4, "3": 3, "4": 2, "5": 1, "6": 5, "7": 4, "8": 3, "9": 2, "10": 1, "11": 5, "12": 4}
    s = score(inst, answers)
    # Task 1,2,10,12 = 5+4+1+4 = 14; Bond 3,5,7,9 = 3+1+4+2 = 10; Goal 4,6,8,11 = 2+5+3+5 = 15.
    assert s.total == 39.0 and s.mean == pytest.approx(39 / 12)
    assert s.subscales["task"].sum == 14.0 and s.subscales["task"].mean == 3.5
    assert s.subscales["bond"].sum == 10.0 and s.subscales["bond"].mean == 2.5
    assert s.subscales["goal"].sum == 15.0 and s.subscales["goal"].mean == 3.75
    assert s.answered == 12 and s.missing == 0


def test_wai_sr_extremes(registry) -> None:  # type: ignore[no-untyped-def]
    inst = wai(registry, "therapist")
    low = score(inst, {str(n): 1 for n in range(1, 13)})
    high = score(inst, {str(n): 5 for n in range(1, 13)})
    assert (low.total, high.total) == (12.0, 60.0)
    assert all(p.sum == 4.0 for p in low.subscales.values())
    assert all(p.sum == 20.0 for p in high.subscales.values())


def test_wai_sr_missing_items_are_prorated_within_the_limit(registry) -> None:  # type: ignore[no-untyped-def]
    inst = wai(registry, "client")
    answers: dict[str, int | None] = {str(n): 4 for n in range(1, 13)}
    answers["3"] = None  # a bond item
    answers["4"] = None  # a goal item
    answers["1"] = 2
    s = score(inst, answers)
    # Answered: 2 + 9 x 4 = 38 over 10 items -> mean 3.8, prorated sum 3.8 x 12 = 45.6.
    assert s.mean == pytest.approx(3.8) and s.total == pytest.approx(45.6)
    assert s.missing == 2
    # Bond: 5, 7, 9 answered (4 each) -> mean 4, sum 4 x 4 = 16; Task: 2+4+4+4 = 14, complete.
    assert s.subscales["bond"].mean == 4.0 and s.subscales["bond"].sum == 16.0
    assert s.subscales["task"].sum == 14.0 and s.subscales["task"].mean == 3.5


def test_wai_sr_too_many_missing(registry) -> None:  # type: ignore[no-untyped-def]
    inst = wai(registry, "client")
    answers: dict[str, int | None] = {str(n): 3 for n in range(1, 13)}
    answers.update({"3": None, "5": None, "8": None})  # 3 blanks > 2; bond has 2 blanks > 1
    s = score(inst, answers)
    assert s.total is None and s.mean is None
    assert s.subscales["bond"].sum is None and s.subscales["bond"].mean is None
    assert s.subscales["goal"].sum == 12.0  # one goal blank: 3 x 3 / 3 x 4
    assert s.subscales["task"].sum == 12.0


def test_telehealth_reverse_scored_item(registry) -> None:  # type: ignore[no-untyped-def]
    inst = registry.get("bondline-telehealth")
    # felt_heard_seen = 5 (strongly agree) scores 1 + 5 - 5 = 1 (no disruption).
    s = score(inst, {"tech_interfered": 2, "felt_heard_seen": 5, "session_changed": 1, "hard_to_talk": 2})
    assert s.total == 6.0 and s.mean == 1.5
    assert s.subscales["disruption"].sum == 6.0
    worst = score(inst, {"tech_interfered": 5, "felt_heard_seen": 1, "session_changed": 5, "hard_to_talk": 5})
    assert worst.total == 20.0 and worst.mean == 5.0


def test_telehealth_one_blank_prorated_two_blanks_unscored(registry) -> None:  # type: ignore[no-untyped-def]
    inst = registry.get("bondline-telehealth")
    s = score(inst, {"tech_interfered": 4, "felt_heard_seen": 2, "session_changed": 3, "hard_to_talk": None})
    # Scores 4, 1+5-2 = 4, 3 -> mean 11/3, prorated sum 11/3 x 4.
    assert s.mean == pytest.approx(11 / 3) and s.total == pytest.approx(44 / 3)
    s2 = score(inst, {"tech_interfered": 4, "felt_heard_seen": None, "session_changed": None})
    assert s2.total is None and s2.mean is None and s2.subscales["disruption"].mean is None


def test_scoring_refuses_values_off_the_scale_and_unknown_items(registry) -> None:  # type: ignore[no-untyped-def]
    inst = wai(registry, "client")
    with pytest.raises(ValueError):
        score(inst, {"1": 6})
    with pytest.raises(ValueError):
        score(inst, {"13": 3})


# --- instrument files are checked, with clear messages -----------------------

def _write(tmp: Path, name: str, data: object) -> Path:
    p = tmp / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def _minimal(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "schema": "bondline.instrument/1",
        "id": "clinic-check",
        "version": "2",
        "title": "Clinic check-in",
        "short_title": "Check-in",
        "respondent": "client",
        "description": "d",
        "instructions": "i",
        "scales": {"s3": [{"value": 0, "label": "No"}, {"value": 1, "label": "Some"}, {"value": 2, "label": "Yes"}]},
        "default_scale": "s3",
        "items": [{"id": "a", "text": "A?"}, {"id": "b", "text": "B?", "reverse": True}],
        "subscales": [{"id": "all", "title": "All", "items": ["a", "b"]}],
        "scoring": {"shown": "sum", "max_missing": 1, "subscale_max_missing": 1, "missing_sum": "none"},
        "citation": "c",
        "source": "s",
        "permission": "p",
    }
    base.update(over)
    return base


def test_a_clinic_file_loads_and_scores_with_missing_sum_none(tmp_path: Path) -> None:
    _write(tmp_path, "clinic-check.yaml", _minimal())
    reg = load_registry(tmp_path, {"client": ["clinic-check"]})
    inst = reg.get("clinic-check")
    s = score(inst, {"a": 2, "b": 0})  # b reversed: 0 + 2 - 0 = 2
    assert s.total == 4.0 and s.mean == 2.0
    s = score(inst, {"a": 1})  # one blank allowed: mean 1, but no sum under "none"
    assert s.mean == 1.0 and s.total is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema": "other/9"}, "'schema' must be"),
        ({"respondent": "observer"}, "respondent"),
        ({"items": [{"id": "a", "text": "A?"}, {"id": "a", "text": "again"}]}, "duplicate item ids"),
        ({"subscales": [{"id": "x", "title": "X", "items": ["zzz"]}]}, "unknown items"),
        ({"default_scale": "nope"}, "default_scale"),
        ({"items": [{"id": "a", "text": "A?", "scale": "nope"}, {"id": "b", "text": "B"}]}, "unknown scale"),
        ({"scales": {"s3": [{"value": 2, "label": "x"}, {"value": 1, "label": "y"}]}}, "ascending"),
        ({"scoring": {"shown": "sum", "max_missing": 2, "subscale_max_missing": 0, "missing_sum": "none"}},
         "max_missing"),
        ({"unexpected": 1}, "unexpected"),
        ({"id": "Bad Id"}, "id"),
    ],
)
def test_broken_files_are_refused_with_a_clear_message(tmp_path: Path, change: dict, message: str) -> None:
    data = _minimal(**change)
    name = f"{data['id']}.yaml" if isinstance(data["id"], str) and " " not in data["id"] else "clinic-check.yaml"
    path = _write(tmp_path, name, data)
    with pytest.raises(InstrumentError) as e:
        load_file(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_unreadable_yaml_and_wrong_file_name(tmp_path: Path) -> None:
    bad = _write(tmp_path, "broken.yaml", "id: [unclosed\n")
    with pytest.raises(InstrumentError, match="cannot read"):
        load_file(bad)
    renamed = _write(tmp_path, "other-name.yaml", _minimal())
    with pytest.raises(InstrumentError, match="file name must be the instrument id"):
        load_file(renamed)


def test_registry_refuses_bad_defaults_and_clashing_ids(tmp_path: Path) -> None:
    with pytest.raises(InstrumentError, match="unknown instrument 'nope'"):
        load_registry(None, {"client": ["nope"]})
    with pytest.raises(InstrumentError, match="is for the therapist"):
        load_registry(None, {"client": ["wai-sr-therapist"]})
    clash = _minimal(id="wai-sr-client")
    _write(tmp_path, "wai-sr-client.yaml", clash)
    with pytest.raises(InstrumentError, match="two instrument files have the id"):
        load_registry(tmp_path, {})
    with pytest.raises(InstrumentError, match="does not exist"):
        load_registry(tmp_path / "missing", {})
