"""The aiortc internals the probe relies on, in one place.

The probe replaces aiortc's receive path (media/probe/receiver.py) and
needs two private attributes of RTCRtpReceiver for it: the negotiated
codecs by payload type and the per-SSRC statistics that feed RTCP receiver
reports. They are read here, and ``check()`` fails loudly (at import of the
sidecar and in tests) if an aiortc upgrade renames them, rather than letting
the probe silently measure nothing.
"""

from __future__ import annotations

from typing import Any

from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics

_CODECS = "_RTCRtpReceiver__codecs"
_STREAMS = "_RTCRtpReceiver__remote_streams"


class AiortcMismatch(RuntimeError):
    pass


def receiver_codecs(receiver: RTCRtpReceiver) -> dict[int, Any]:
    codecs = getattr(receiver, _CODECS, None)
    if not isinstance(codecs, dict):
        raise AiortcMismatch(f"aiortc RTCRtpReceiver has no {_CODECS}: the probe needs aiortc 1.16")
    return codecs


def receiver_streams(receiver: RTCRtpReceiver) -> dict[int, StreamStatistics]:
    streams = getattr(receiver, _STREAMS, None)
    if not isinstance(streams, dict):
        raise AiortcMismatch(f"aiortc RTCRtpReceiver has no {_STREAMS}: the probe needs aiortc 1.16")
    return streams


def check() -> None:
    """Raise AiortcMismatch unless this aiortc has what the probe taps."""
    for name in ("_handle_rtp_packet", "_send_rtcp_pli"):
        if not callable(getattr(RTCRtpReceiver, name, None)):
            raise AiortcMismatch(f"aiortc RTCRtpReceiver.{name} is missing: the probe needs aiortc 1.16")
    source = RTCRtpReceiver.__init__.__code__.co_names
    for attr in ("_RTCRtpReceiver__codecs", "_RTCRtpReceiver__remote_streams"):
        if attr not in source:
            raise AiortcMismatch(f"aiortc RTCRtpReceiver no longer sets {attr}: the probe needs aiortc 1.16")
