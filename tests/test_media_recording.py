"""Recording analysis on files made here with PyAV, with known freezes
(repeated frames, missing frames) and audio dropouts (digital silence, a
hole in the timestamps)."""

from __future__ import annotations

import fractions
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import orjson
import pytest

from media.recording import analyze

FPS = 25
RATE = 48_000
SECONDS = 10.0
REPEAT = (3.0, 4.0)  # the picture stops changing
MISSING = (6.0, 6.8)  # no frames at all
SILENCE = (2.0, 2.5)  # digital zeros
AUDIO_HOLE = (7.0, 7.3)  # no audio frames: timestamps jump


def make_recording(path: Path, impaired: bool) -> None:
    rng = np.random.default_rng(7)
    with av.open(str(path), "w", format="matroska") as out:
        vs = out.add_stream("libvpx", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 160, 120, "yuv420p"
        vs.codec_context.time_base = fractions.Fraction(1, FPS)
        aus = out.add_stream("flac", rate=RATE)
        aus.layout = "mono"
        last = None
        for i in range(int(SECONDS * FPS)):
            t = i / FPS
            if impaired and MISSING[0] <= t < MISSING[1]:
                continue
            if impaired and REPEAT[0] <= t < REPEAT[1] and last is not None:
                img = last
            else:
                # A moving gradient with sensor-like noise: every live frame differs.
                x = np.arange(160)[None, :] + 3 * i
                img = ((np.sin(x / 9.0) * 60 + 128 + rng.normal(0, 4, (120, 160))).clip(0, 255)).astype(np.uint8)
                last = img
            yuv = np.concatenate([img, np.full((60, 160), 128, np.uint8)])
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        step = 960
        for k in range(int(SECONDS * RATE / step)):
            t = k * step / RATE
            if impaired and AUDIO_HOLE[0] <= t < AUDIO_HOLE[1]:
                continue
            n = np.arange(k * step, (k + 1) * step)
            sig = 0.3 * np.sin(2 * np.pi * 440 * n / RATE) + rng.normal(0, 0.01, step)
            if impaired:
                sig[(n >= SILENCE[0] * RATE) & (n < SILENCE[1] * RATE)] = 0.0
            frame = av.AudioFrame.from_ndarray((sig * 32767).astype(np.int16)[None, :], format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = k * step
            frame.time_base = fractions.Fraction(1, RATE)
            out.mux(aus.encode(frame))
        out.mux(aus.encode(None))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("rec")
    out = {"impaired": d / "impaired.mkv", "clean": d / "clean.mkv"}
    make_recording(out["impaired"], True)
    make_recording(out["clean"], False)
    return out


def test_finds_freezes_and_dropouts(files: dict[str, Path]) -> None:
    report = analyze(str(files["impaired"]))
    freezes = report.freezes
    assert len(freezes) == 2, freezes
    repeated, missing = freezes
    assert repeated.cause == "repeated" and missing.cause == "missing"
    # A freeze runs from the last new picture to the next one.
    assert repeated.start_s == pytest.approx(REPEAT[0] - 1 / FPS, abs=0.05)
    assert repeated.end_s == pytest.approx(REPEAT[1], abs=0.05)
    assert missing.start_s == pytest.approx(MISSING[0] - 1 / FPS, abs=0.05)
    assert missing.end_s == pytest.approx(MISSING[1], abs=0.05)
    drops = report.dropouts
    assert [d.cause for d in drops] == ["silence", "gap"], drops
    assert drops[0].start_s == pytest.approx(SILENCE[0], abs=0.002)
    assert drops[0].end_s == pytest.approx(SILENCE[1], abs=0.002)
    assert drops[1].start_s == pytest.approx(AUDIO_HOLE[0], abs=0.021)
    assert drops[1].end_s == pytest.approx(AUDIO_HOLE[1], abs=0.021)


def test_clean_recording_has_nothing(files: dict[str, Path]) -> None:
    report = analyze(str(files["clean"]))
    assert report.episodes == []
    assert report.video_frames == SECONDS * FPS
    assert report.audio_duration_s == pytest.approx(SECONDS, abs=0.03)


def test_cli_prints_the_same(files: dict[str, Path]) -> None:
    out = subprocess.run([sys.executable, "-m", "server.cli", "analyze-recording", str(files["impaired"]), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    data = orjson.loads(out.stdout)
    assert data["freezeCount"] == 2 and data["dropoutCount"] == 2
    events = analyze(str(files["impaired"])).events(1_800_000_000_000)
    assert [e["kind"] for e in events] == ["probe.audio_dropout", "probe.freeze", "probe.freeze", "probe.audio_dropout"]
    bad = subprocess.run([sys.executable, "-m", "server.cli", "analyze-recording", str(files["clean"]) + ".nope"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "No such file" in bad.stderr
