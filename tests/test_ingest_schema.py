"""Unit tests of the sample contract and headline figures."""

from __future__ import annotations

from typing import Any

import orjson
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
    rows, _ = p.to_rows(batch, TokenOwner(1, 1, "client"))
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


def test_fast_path_reads_what_the_checked_path_reads() -> None:
    samples = [sample(i, vendorFigure={"x": [1, 2.5]}) for i in range(5)]
    samples[2]["streams"][0]["myCounter"] = 7
    samples[3]["connection"]["rttMs"] = 40
    events = [{"key": "k1", "kind": "reconnect", "tMs": samples[0]["startMs"], "extra": "kept"}]
    msg = {"type": "samples", "schema": SCHEMA, "batch": 9, "samples": samples, "events": events}
    owner = TokenOwner(1, 1, "client")
    fast = p.read_samples(orjson.dumps(msg), Settings())
    checked = p.validate_batch(msg, Settings())
    assert fast == checked
    assert fast is not None
    assert p.to_rows(fast, owner, origin_ms=1) == p.to_rows(checked, owner, origin_ms=1)
    # Stored JSON holds every field sent, with its value.
    rows, erows = p.to_rows(fast, owner, origin_ms=1)
    assert [orjson.loads(str(r[-1])) for r in rows] == samples
    assert orjson.loads(str(erows[0][-1])) == {"extra": "kept"}


@pytest.mark.parametrize(
    "message",
    [
        {"schema": SCHEMA, "samples": []},  # no type: refused as such by the caller
        {"type": "ping", "t": 1},
        {"type": "samples", "schema": "bondline.sample/2", "samples": []},
        {"type": "samples", "schema": SCHEMA, "samples": [{"seq": -1}]},
    ],
)
def test_fast_path_leaves_other_messages_to_the_checked_path(message: dict[str, Any]) -> None:
    assert p.read_samples(orjson.dumps(message), Settings()) is None


def test_fast_path_leaves_non_json_numbers_to_the_parser() -> None:
    text = orjson.dumps({"type": "samples", "schema": SCHEMA, "samples": [sample(0)]}).decode()
    assert p.read_samples(text.replace('"rttMs":42.0', '"rttMs":NaN'), Settings()) is None
    with pytest.raises(p.Refusal) as e:
        p.parse_json(text.replace('"rttMs":42.0', '"rttMs":NaN'), Settings())
    assert e.value.ws_code == 4400


def test_integers_in_unknown_fields_are_kept_exactly_within_64_bits() -> None:
    # Built by hand: the fast path and the checked path must read the literal alike.
    for big, kept in ((2**63 - 1, True), (-(2**63), True), (2**63, False), (2**70, False)):
        one = orjson.dumps(sample(0)).decode()[:-1] + f',"vendor":{big}}}'
        raw = f'{{"type":"samples","schema":"{SCHEMA}","samples":[{one}]}}'
        if kept:
            batch = p.read_samples(raw, Settings())
            assert batch is not None
            rows, _ = p.to_rows(batch, TokenOwner(1, 1, "client"))
            assert f'"vendor":{big}' in str(rows[0][-1])
            continue
        for read in (lambda text: p.read_samples(text, Settings()),
                     lambda text: p.validate_batch(p.parse_json(text, Settings()), Settings())):
            with pytest.raises(p.Refusal) as e:
                read(raw)
            assert e.value.ws_code == 4422 and e.value.reason.startswith("samples.0.vendor: integer outside")


def test_fast_path_keeps_the_batch_limits() -> None:
    msg = {"type": "samples", "schema": SCHEMA, "samples": [sample(i) for i in range(501)]}
    with pytest.raises(p.Refusal) as e:
        p.read_samples(orjson.dumps(msg), Settings())
    assert e.value.ws_code == 4413


def test_integer_values_are_fine_for_float_fields() -> None:
    raw = sample(0)
    raw["connection"]["rttMs"] = 40
    p.validate_batch({"type": "samples", "schema": SCHEMA, "samples": [raw]}, Settings())


def test_a_second_without_media_is_null_loss_and_flagged() -> None:
    s = sample(0)
    for st in s["streams"]:
        if st["direction"] == "inbound":
            st.update(packetsReceived=0, packetsLost=0, retransmittedPacketsReceived=0)
    h = headline(sample_adapter.validate_python(s))
    # Nothing arrived: not 0 % loss but no measurement, and said so.
    assert h["no_media_in"] is True
    assert h["loss_in"] is None and h["audio_loss_in"] is None and h["video_loss_in"] is None
    assert h["audio_packets_in"] == 0.0
    h = headline(sample_adapter.validate_python(sample(0)))
    assert h["no_media_in"] is False and h["audio_packets_in"] == 49.0


def test_the_latest_audio_packet_stamp_is_kept_and_video_stamps_are_not() -> None:
    s = sample(0)
    audio = next(st for st in s["streams"] if st["direction"] == "inbound" and st["kind"] == "audio")
    video = next(st for st in s["streams"] if st["direction"] == "inbound" and st["kind"] == "video")
    assert headline(sample_adapter.validate_python(s))["last_packet_in_ms"] is None  # absent: null, not 0
    audio["lastPacketReceivedMs"] = 1_764_590_400_123.4
    video["lastPacketReceivedMs"] = 1_764_590_400_900.0  # video's: not an audio packet's time
    second = dict(audio, ssrc=4242, lastPacketReceivedMs=1_764_590_400_456.7)  # a second far end's audio
    s["streams"].append(second)
    assert headline(sample_adapter.validate_python(s))["last_packet_in_ms"] == 1_764_590_400_456.7
