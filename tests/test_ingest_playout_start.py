"""A stream's playout start (``playoutStart``) in the headline concealed ratio.

A subscription added mid-call conceals while its jitter buffer fills; summed
with a steady stream that reads as a dropout with nobody's network at fault
(docs/methodology.md, "Audio dropout").
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from plugin.aiortc_collector import StatsDeltas
from server.config import AnalysisConfig
from server.ingest.fastread import read_usual_batch
from server.ingest.headline import headline
from server.ingest.schema import batch_adapter, sample_adapter
from tests.support.samples import SCHEMA, sample

SAMPLES = 48_000  # one second of 48 kHz audio


def _audio(concealed: int, **extra: Any) -> dict[str, Any]:
    return {"kind": "audio", "direction": "inbound", "packetsReceived": 50, "packetsLost": 0,
            "concealedSamples": concealed, "totalSamplesReceived": SAMPLES, **extra}


def _two_streams(mark: bool) -> dict[str, Any]:
    # A steady stream, and one that started in this interval concealing 60 % of it.
    new = _audio(int(0.6 * SAMPLES), **({"playoutStart": True} if mark else {}))
    return sample(0, streams=[_audio(0), new])


def test_a_new_stream_starting_mid_call_is_left_out_of_the_concealed_ratio() -> None:
    threshold = AnalysisConfig().audio_concealed_ratio
    marked = headline(sample_adapter.validate_python(_two_streams(True)))
    assert marked["concealed_ratio_in"] == 0.0
    # Its packets still count: only its start-up concealment is left out.
    assert marked["audio_packets_in"] == 100
    unmarked = headline(sample_adapter.validate_python(_two_streams(False)))
    assert unmarked["concealed_ratio_in"] == pytest.approx(0.3)
    assert unmarked["concealed_ratio_in"] >= threshold


def test_only_the_marked_stream_is_left_out() -> None:
    s = sample(0, streams=[_audio(int(0.5 * SAMPLES)), _audio(SAMPLES, playoutStart=True)])
    assert headline(sample_adapter.validate_python(s))["concealed_ratio_in"] == pytest.approx(0.5)
    s = sample(0, streams=[_audio(SAMPLES, playoutStart=False), _audio(0)])
    assert headline(sample_adapter.validate_python(s))["concealed_ratio_in"] == pytest.approx(0.5)


def test_the_mark_passes_both_ingest_readers_as_sent() -> None:
    raw = orjson.dumps({"type": "samples", "schema": SCHEMA, "batch": 0, "events": [],
                        "samples": [_two_streams(True)]})
    fast = read_usual_batch(raw)
    assert fast is not None  # a known field: the fast path takes it
    assert fast == batch_adapter.validate_json(raw)
    assert fast["samples"][0]["streams"][1]["playoutStart"] is True
    for bad in (1, "true"):
        wrong = raw.replace(b'"playoutStart":true', b'"playoutStart":' + orjson.dumps(bad))
        assert read_usual_batch(wrong) is None
        with pytest.raises(ValueError):
            batch_adapter.validate_json(wrong)


def _inbound(sid: str, got: int, kind: str = "audio") -> dict[str, Any]:
    return {"type": "inbound-rtp", "id": sid, "kind": kind, "ssrc": 1, "packetsReceived": got, "packetsLost": 0}


def _marks(deltas: StatsDeltas, polls: list[list[dict[str, Any]]]) -> list[list[tuple[str, bool]]]:
    out = []
    for stats in polls:
        streams = deltas.reduce(stats, 1000.0, ({}, {}))
        if streams is None:  # the baseline poll
            out.append([])
            continue
        ids = [s["id"] for s in stats]
        out.append([(sid, f.get("playoutStart", False)) for sid, f in zip(ids, streams, strict=True)])
    return out


def test_the_aiortc_collector_marks_the_first_sample_with_audio_packets() -> None:
    polls = [
        [_inbound("a", 0), _inbound("v", 0, "video")],
        [_inbound("a", 40), _inbound("v", 90, "video")],
        [_inbound("a", 90), _inbound("v", 180, "video"), _inbound("b", 30)],
        [_inbound("a", 140), _inbound("v", 270, "video"), _inbound("b", 80)],
    ]
    assert _marks(StatsDeltas(from_start=True), polls) == [
        [("a", False), ("v", False)],
        [("a", True), ("v", False)],
        [("a", False), ("v", False), ("b", True)],
        [("a", False), ("v", False), ("b", False)],
    ]
    # Watched late: what already played on the baseline poll is no start.
    late = _marks(StatsDeltas(from_start=False), polls[2:])
    assert late == [[], [("a", False), ("v", False), ("b", False)]]
