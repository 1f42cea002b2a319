"""Unit tests of the sample contract and headline figures."""

from __future__ import annotations

from typing import Any

import pytest

from server.config import Settings
from server.ingest import protocol as p
from server.ingest.headline import headline
from server.ingest.schema import sample_adapter
from server.sessions.tokens import TokenOwner
from tests.support.samples import SCHEMA, sample


def test_headline_uses_new_packets_not_retransmissions() -> None:
    h = headline(sample_adapter.validate_python(sample(0)))
    # audio 1 lost of 50; video 2 lost of 100 received of which 2 were RTX.
    assert h["audio_loss_in"] == pytest.approx(1 / 50)
    assert h["video_loss_in"] == pytest.approx(2 / 100)
    assert h["loss_in"] == pytest.approx(3 / 150)
    assert h["rtt_ms"] == 42.0 and h["jitter_ms"] == 4.0
    assert h["concealed_ratio_in"] == pytest.approx(0.01)
    assert h["fps_in"] == 20.0


def test_missing_figures_stay_null() -> None:
    bare = {"seq": 1, "startMs": sample(0)["startMs"], "intervalMs": 1000, "source": "python"}
    h = headline(sample_adapter.validate_python(bare))
    assert all(v is None for v in h.values())


def test_unknown_fields_are_kept_verbatim() -> None:
    raw = sample(3, vendorFigure={"x": 1})
    raw["streams"][0]["myCounter"] = 7
    msg = {"type": "samples", "schema": SCHEMA, "samples": [raw]}
    batch = p.validate_batch(msg, Settings())
    rows, _ = p.to_rows(msg, batch, TokenOwner(1, 1, "client"))
    assert '"vendorFigure":{"x":1}' in str(rows[0][-1]) and '"myCounter":7' in str(rows[0][-1])


@pytest.mark.parametrize(
    "change",
    [
        {"seq": "1"},
        {"seq": True},
        {"intervalMs": 1000.5},
        {"source": None},
    ],
)
def test_strict_types(change: dict[str, Any]) -> None:
    raw = sample(0)
    raw.update(change)
    with pytest.raises(p.Refusal) as e:
        p.validate_batch({"type": "samples", "schema": SCHEMA, "samples": [raw]}, Settings())
    assert e.value.ws_code == 4422


def test_integer_values_are_fine_for_float_fields() -> None:
    raw = sample(0)
    raw["connection"]["rttMs"] = 40
    p.validate_batch({"type": "samples", "schema": SCHEMA, "samples": [raw]}, Settings())
