"""Pre-encoded Opus packets of the audio pilot.

The pilot repeats every ``pilot.PERIOD`` blocks, so its Opus packets can be
encoded once per process and replayed: a probe sender then spends no CPU on
audio encoding, resampling or level metering (aiortc's sender skips all of
it for pre-encoded packets). One cycle at 60 ms packets is 1,280 packets,
about 230 KB, encoded in a fraction of a second.

Opus carries state from packet to packet, so a naive replay would glitch at
the wrap. The cycle is therefore encoded a little past its end and its first
packets are taken from that second pass, encoded right after the cycle's
last packet: at the wrap the decoder sees exactly what the encoder assumed.
"""

from __future__ import annotations

import fractions
import threading
from dataclasses import dataclass

import av
import numpy as np

from media import pilot

# Packet durations Opus can carry that divide the pilot period evenly.
PTIMES_MS = (20, 40, 60, 120)
_WARM_PACKETS = 12
_lock = threading.Lock()
_cache: dict[tuple[int, int], PilotCycle] = {}


@dataclass(frozen=True)
class PilotCycle:
    ptime_ms: int
    samples_per_packet: int
    packets: tuple[bytes, ...]

    def packet(self, index: int) -> bytes:
        return self.packets[index % len(self.packets)]

    @property
    def blocks_per_packet(self) -> int:
        return self.samples_per_packet // pilot.BLOCK

    def index(self) -> dict[bytes, int]:
        """Position in the cycle of each packet, by its exact bytes ({} when
        two positions share bytes, which would make the lookup ambiguous)."""
        table = {p: i for i, p in enumerate(self.packets)}
        return table if len(table) == len(self.packets) else {}


def _encoder(ptime_ms: int, bitrate: int) -> av.AudioCodecContext:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = pilot.RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = bitrate
    codec.time_base = fractions.Fraction(1, pilot.RATE)
    # "lowdelay" is CELT only: steady tones code well and the lookahead is
    # 2.5 ms instead of 6.5 ms. packet_loss=100 makes the encoder lean as
    # little as it can on the previous packet, so the packet after a lost
    # one still decodes cleanly: without it about one loss in four also
    # garbled the next block, an audio gap the network did not cause.
    codec.options = {"application": "lowdelay", "frame_duration": str(ptime_ms), "vbr": "off",
                     "packet_loss": "100"}
    codec.open()
    return codec  # type: ignore[no-any-return]


def encode_cycle(ptime_ms: int = 60, bitrate: int = 48_000) -> PilotCycle:
    """The pilot's packets for one period (cached per process)."""
    if ptime_ms not in PTIMES_MS:
        raise ValueError(f"ptime must be one of {PTIMES_MS} ms, not {ptime_ms}")
    key = (ptime_ms, bitrate)
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        spp = pilot.RATE * ptime_ms // 1000
        per_cycle = pilot.PERIOD * pilot.BLOCK // spp
        total = per_cycle + _WARM_PACKETS
        signal = pilot.blocks(0, total * spp // pilot.BLOCK + 1)
        codec = _encoder(ptime_ms, bitrate)
        out: list[bytes] = []
        for i in range(total):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(signal[None, i * spp : (i + 1) * spp]), format="s16", layout="mono"
            )
            frame.sample_rate = pilot.RATE
            frame.pts = i * spp
            out.extend(bytes(p) for p in codec.encode(frame))
        for p in codec.encode(None):
            out.append(bytes(p))
        if len(out) < total:
            raise RuntimeError(f"Opus encoder returned {len(out)} packets for {total} frames")
        # The encoder's output runs a lookahead behind its input; packet i
        # still starts at block i * blocks_per_packet plus a constant delay,
        # which readers find by searching for the block alignment.
        packets = out[per_cycle : per_cycle + _WARM_PACKETS] + out[_WARM_PACKETS:per_cycle]
        cycle = PilotCycle(ptime_ms=ptime_ms, samples_per_packet=spp, packets=tuple(packets))
        _cache[key] = cycle
        return cycle
