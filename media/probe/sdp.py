"""Adjustments to the SDP of a probe.

- No RTP header extensions: each one costs aiortc a pure-Python parse per
  packet (a fifth of its receive path in our profile), and a probe needs
  none of them (streams are told apart by SSRC, which both SDPs carry). The
  sidecar drops them from the offer, so neither end negotiates any.

- No generic NACK and no REMB: the probe measures the path as it is, so
  lost packets are not retransmitted (the sidecar never asks for them
  either), and its fixed-rate media needs no bandwidth estimate.
- ``a=ptime`` and Opus ``maxaveragebitrate``: a browser then sends the
  pilot in packets as long as the sidecar's (fewer packets for the server
  to handle) and at a bitrate at which the pilot tones read reliably.
  Chromium's Opus (VoIP application) codes everything below 8 kHz with
  SILK (hybrid mode) when it takes the signal for speech below about
  64 kbit/s; at 48 kbit/s it did so in about one call in three, and SILK
  distorted the pilot's tones (clipping at full scale) for up to 1.6 s at a
  time, most after a loss. At 96 kbit/s it stays CELT-only, where the
  tones read (docs/probe.md, "Where the browser is not exact").
"""

from __future__ import annotations

import re

from media.probe.profile import ProbeProfile

OPUS_BITRATE = 96_000  # above libopus's 64 kbit/s voice threshold for CELT-only


def strip_extensions(sdp: str) -> str:
    return "".join(ln for ln in sdp.splitlines(keepends=True) if not ln.startswith("a=extmap"))


def tune_answer(sdp: str, profile: ProbeProfile) -> str:
    sections = re.split(r"(?=^m=)", sdp, flags=re.M)
    out = []
    for section in sections:
        lines = section.splitlines()
        if section.startswith("m=audio"):
            lines = _tune_audio(lines, profile.ptime_ms)
        elif section.startswith("m=video"):
            lines = [ln for ln in lines if not re.fullmatch(r"a=rtcp-fb:\d+ (nack|goog-remb)", ln)]
        out.append("\r\n".join(lines) + "\r\n" if lines else "")
    return "".join(out)


def _tune_audio(lines: list[str], ptime_ms: int) -> list[str]:
    opus_pt = None
    for ln in lines:
        m = re.fullmatch(r"a=rtpmap:(\d+) opus/48000(/2)?", ln, flags=re.I)
        if m:
            opus_pt = m.group(1)
    lines = [ln for ln in lines if not ln.startswith(("a=ptime:", "a=maxptime:"))]
    if opus_pt is None:
        return lines
    fmtp_prefix = f"a=fmtp:{opus_pt} "
    extra = f"maxaveragebitrate={OPUS_BITRATE};usedtx=0;useinbandfec=0"
    found = False
    for i, ln in enumerate(lines):
        if ln.startswith(fmtp_prefix):
            params = [p for p in ln[len(fmtp_prefix):].split(";")
                      if p.split("=")[0].strip() not in ("maxaveragebitrate", "usedtx", "useinbandfec")]
            lines[i] = fmtp_prefix + ";".join([*params, extra])
            found = True
    if not found:
        lines.append(fmtp_prefix + extra)
    lines.append(f"a=ptime:{ptime_ms}")
    lines.append(f"a=maxptime:{max(ptime_ms, 120)}")
    return lines
