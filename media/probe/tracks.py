"""Outgoing probe media as aiortc tracks that hand over encoded packets.

aiortc sends an ``av.Packet`` returned by a track as it is (it only splits
it into RTP payloads), so these tracks skip aiortc's encoders, its audio
resampler and its per-frame audio level loop altogether.
"""

from __future__ import annotations

import asyncio
import fractions
import random
import time

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.barcode import Stamp
from media.pilot_opus import encode_cycle
from media.video_codec import VIDEO_CLOCK, StampEncoder

AUDIO_TIME_BASE = fractions.Fraction(1, 48_000)


class _Paced(MediaStreamTrack):
    """Releases one item every ``period_s`` on the event loop's clock."""

    def __init__(self, period_s: float) -> None:
        super().__init__()
        self.period_s = period_s
        self.sent = 0
        self._t0: float | None = None

    async def _wait_turn(self) -> None:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._t0 is None:
            self._t0 = loop.time()
        due = self._t0 + self.sent * self.period_s
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if self.readyState != "live":
            raise MediaStreamError


class StampedVideoTrack(_Paced):
    """160x120 VP8 frames stamped with frame number and send time: key frames
    (``key_interval`` 1), or inter frames between key frames like a browser's."""

    kind = "video"

    def __init__(self, fps: float, run: int | None = None, key_interval: int = 1) -> None:
        super().__init__(1.0 / fps)
        self.run = run if run is not None else random.randrange(1 << 16)
        self._encoder = StampEncoder(key_interval=key_interval)

    async def recv(self) -> av.Packet:
        await self._wait_turn()
        n = self.sent
        stamp = Stamp(frame=n, send_ms=int(time.time() * 1000) & 0xFFFFFFFF, run=self.run)
        packet = self._encoder.encode(stamp, pts=int(round(n * self.period_s * VIDEO_CLOCK)))
        self.sent += 1
        return packet


class PilotAudioTrack(_Paced):
    """The audio pilot as pre-encoded Opus packets of ``ptime_ms``."""

    kind = "audio"

    def __init__(self, ptime_ms: int = 60) -> None:
        super().__init__(ptime_ms / 1000.0)
        self._cycle = encode_cycle(ptime_ms)

    async def recv(self) -> av.Packet:
        await self._wait_turn()
        n = self.sent
        packet = av.Packet(self._cycle.packet(n))
        packet.pts = n * self._cycle.samples_per_packet
        packet.time_base = AUDIO_TIME_BASE
        self.sent += 1
        return packet
