"""A lean receive path for probe media, tapped into aiortc's RTCRtpReceiver.

aiortc's own receive path is built for playing media, not for measuring
it: its video jitter buffer holds every frame until the next one starts and
stalls on any hole until a retransmission fills it (or 512 packets later),
its audio buffer holds four packets, every packet feeds a bitrate estimator
and a NACK generator, and each frame crosses to a decoder thread and back.
For a probe all of that is cost or distortion. The tap takes over
``_handle_rtp_packet`` of the receiver and instead:
- counts RTP packets per SSRC (and still feeds aiortc's statistics, so
  RTCP receiver reports keep flowing to the sender);
- emits a video frame as soon as all its packets are in, skipping older
  incomplete frames (and asking for a key frame when it does);
- like a browser's receiver, never shows an inter frame whose reference
  chain is broken (a packet lost since the last key frame): it counts as
  unreadable and a key frame is asked for;
- plays audio packets in order, dropping ones that arrive after a newer one;
- decodes inline (VP8 key frames of 160x120 take ~0.1 ms, 60 ms of Opus
  ~0.1 ms) and hands the content straight to the meters.
``media/probe/tuning.py`` checks the aiortc internals this relies on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
from aiortc.rtp import RtpPacket

from media.barcode import read_stamp
from media.pilot import PERIOD
from media.pilot_opus import PilotCycle
from media.probe.audio_meter import AudioMeter
from media.probe.tuning import receiver_codecs, receiver_streams
from media.probe.video_meter import VideoMeter
from media.video_codec import Vp8Reader

log = logging.getLogger("bondline.probe")

MAX_PENDING_FRAMES = 32


class Unwrapper:
    """Extends wrapping counters (16-bit seq, 32-bit timestamps) to ints."""

    def __init__(self, bits: int) -> None:
        self._mod = 1 << bits
        self._half = 1 << (bits - 1)
        self._last: int | None = None

    def __call__(self, value: int) -> int:
        if self._last is None:
            self._last = value
            return value
        delta = (value - self._last) % self._mod
        if delta >= self._half:
            delta -= self._mod
        self._last += delta
        return self._last


@dataclass
class RtpInterval:
    received: int = 0
    lost: int = 0
    bytes: int = 0


class RtpCounter:
    """Packets received and lost on one SSRC, from sequence numbers."""

    def __init__(self) -> None:
        self.unwrap = Unwrapper(16)
        self.highest: int | None = None
        self.received = 0
        self.lost = 0
        self.late = 0
        self.interval = RtpInterval()

    def add(self, seq: int, size: int) -> int:
        ext = self.unwrap(seq)
        iv = self.interval
        iv.received += 1
        iv.bytes += size
        self.received += 1
        if self.highest is None:
            self.highest = ext
        elif ext > self.highest:
            gap = ext - self.highest - 1
            self.lost += gap
            iv.lost += gap
            self.highest = ext
        else:
            self.late += 1
            self.lost -= 1
            iv.lost -= 1
        return ext

    def take_interval(self) -> RtpInterval:
        iv = self.interval
        self.interval = RtpInterval()
        return iv


class _Frame:
    __slots__ = ("packets", "begin", "end")

    def __init__(self) -> None:
        self.packets: dict[int, bytes] = {}
        self.begin: int | None = None
        self.end: int | None = None


class Vp8Assembler:
    """Complete VP8 frames from RTP packets, newest-wins."""

    def __init__(self) -> None:
        self._frames: dict[int, _Frame] = {}
        self.last_ts: int | None = None
        self.skipped = 0
        # The last packet of the last frame handed out: a frame not starting
        # right after it means packets (whole frames, perhaps) were lost between.
        self.last_end: int | None = None
        self.contiguous = True

    def add(self, seq: int, ts: int, marker: bool, payload: bytes) -> tuple[bytes | None, int]:
        """(complete frame or None, older incomplete frames given up now)."""
        if self.last_ts is not None and ts <= self.last_ts:
            return None, 0
        try:
            desc, data = VpxPayloadDescriptor.parse(payload)
        except ValueError:
            return None, 0
        frame = self._frames.get(ts)
        if frame is None:
            frame = self._frames[ts] = _Frame()
        frame.packets[seq] = data
        if desc.partition_start and desc.partition_id == 0:
            frame.begin = seq
        if marker:
            frame.end = seq
        if frame.begin is None or frame.end is None:
            self._bound()
            return None, 0
        if any(s not in frame.packets for s in range(frame.begin, frame.end + 1)):
            return None, 0
        data = b"".join(frame.packets[s] for s in range(frame.begin, frame.end + 1))
        older = [t for t in self._frames if t <= ts]
        for t in older:
            del self._frames[t]
        skipped = len(older) - 1
        self.skipped += skipped
        self.last_ts = ts
        self.contiguous = self.last_end is None or frame.begin == self.last_end + 1
        self.last_end = frame.end
        return data, skipped

    def _bound(self) -> None:
        while len(self._frames) > MAX_PENDING_FRAMES:
            del self._frames[min(self._frames)]
            self.skipped += 1


class DecodedPilot:
    """A browser's audio: every Opus packet decoded and its pilot read by ``meter``."""

    def __init__(self, meter: AudioMeter) -> None:
        self.meter = meter
        self.decode_errors = 0
        self._opus = self._new_opus()

    @staticmethod
    def _new_opus() -> Any:
        codec = av.CodecContext.create("libopus", "r")
        codec.sample_rate = 48_000
        codec.layout = "mono"
        codec.format = "s16"
        return codec

    def packet(self, payload: bytes, pos: int, arrival_ms: float, after_gap: bool) -> None:
        """``pos``: the packet's first sample on the sender's media clock (unwrapped,
        from the first packet); ``after_gap``: packets before it were lost."""
        if after_gap:
            # Decoding it on the state left by the last packet heard smears it (Opus
            # predicts across packets), which would count network loss twice. Start
            # clean, as after a receiver's concealment. Chromium's hybrid Opus may still
            # decode a block or two wrong after that (docs/probe.md).
            self._opus = self._new_opus()
        try:
            frames = self._opus.decode(av.Packet(payload))
        except av.FFmpegError:
            self.decode_errors += 1
            return
        for frame in frames:
            samples = frame.to_ndarray()
            mono = samples[0] if samples.ndim == 2 else samples
            self.meter.chunk(np.asarray(mono, dtype=np.int16), pos, arrival_ms)
            pos += frame.samples


class ReceiverTap:
    """Owns the receive side of one media kind."""

    def __init__(self, receiver: RTCRtpReceiver, kind: str, video: VideoMeter | None,
                 audio: AudioMeter | None, pilot_cycle: PilotCycle | None = None) -> None:
        self.kind = kind
        self.receiver = receiver
        self.video = video
        self.audio = audio
        self.counters: dict[int, RtpCounter] = {}
        self._codecs = receiver_codecs(receiver)
        self._streams: dict[int, StreamStatistics] = receiver_streams(receiver)
        self._vp8 = Vp8Assembler()
        self._vp8_reader = Vp8Reader() if kind == "video" else None
        self._ts = Unwrapper(32)
        self._ts_origin: int | None = None
        self._last_audio_seq: int | None = None
        self._decoded = DecodedPilot(audio) if audio is not None else None
        # Packets of a Bondline sender with this same Opus build are the
        # pre-encoded pilot byte for byte: recognising them by their bytes
        # tells exactly which blocks they carry, without decoding (the
        # decoder is the fallback, and is what reads browsers' audio).
        self._cycle = pilot_cycle
        self._known = pilot_cycle.index() if pilot_cycle is not None else {}
        self.audio_mode: str | None = None  # "recognise" | "decode", fixed by the first packet
        self.decode_errors = 0
        self.spoiled = 0  # inter frames not shown because a reference was lost
        self._broken = False
        self.frozen = False  # set at the end of a run: the totals are final
        receiver._handle_rtp_packet = self.handle  # type: ignore[method-assign]

    def take_rtp(self) -> RtpInterval:
        total = RtpInterval()
        for c in self.counters.values():
            iv = c.take_interval()
            total.received += iv.received
            total.lost += iv.lost
            total.bytes += iv.bytes
        return total

    async def handle(self, packet: RtpPacket, arrival_time_ms: int = 0) -> None:
        codec = self._codecs.get(packet.payload_type)
        if codec is None or codec.name.lower() == "rtx" or self.frozen:
            return
        arrival = time.time() * 1000.0
        ssrc = packet.ssrc
        stats = self._streams.get(ssrc)
        if stats is None:
            stats = self._streams[ssrc] = StreamStatistics(codec.clockRate)
        stats.add(packet)  # keeps aiortc's RTCP receiver reports going
        counter = self.counters.get(ssrc)
        if counter is None:
            counter = self.counters[ssrc] = RtpCounter()
        seq = counter.add(packet.sequence_number, len(packet.payload))
        if not packet.payload:
            return
        if self.kind == "video":
            await self._video(packet, seq, arrival)
        else:
            self._audio(packet, seq, arrival)

    async def _video(self, packet: RtpPacket, seq: int, arrival: float) -> None:
        assert self._vp8_reader is not None and self.video is not None
        ts = self._ts(packet.timestamp)
        data, skipped = self._vp8.add(seq, ts, bool(packet.marker), packet.payload)
        if skipped:
            # Senders with inter frames (browsers) need a key frame to recover.
            await self.receiver._send_rtcp_pli(packet.ssrc)
        if data is None:
            return
        if skipped or not self._vp8.contiguous:
            self._broken = True
        if data[0] & 1 == 0:  # VP8 frame tag: a key frame references nothing earlier
            self._broken = False
        elif self._broken:
            # Decoding it would paint over a missing reference; a browser shows
            # nothing new until the key frame it asks for.
            self.spoiled += 1
            self.video.frame(None, arrival)
            if not skipped:
                await self.receiver._send_rtcp_pli(packet.ssrc)
            return
        planes = self._vp8_reader.decode(data)
        if not planes:
            self.decode_errors += 1
            self.video.frame(None, arrival)
            await self.receiver._send_rtcp_pli(packet.ssrc)
            return
        for luma in planes:
            self.video.frame(read_stamp(luma), arrival)

    def _audio(self, packet: RtpPacket, seq: int, arrival: float) -> None:
        assert self.audio is not None
        if self._last_audio_seq is not None and seq <= self._last_audio_seq:
            return  # overtaken by a newer packet: a player would have moved on
        gap = self._last_audio_seq is not None and seq > self._last_audio_seq + 1
        self._last_audio_seq = seq
        ts = self._ts(packet.timestamp)
        if self._ts_origin is None:
            self._ts_origin = ts
        if self.audio_mode is None:
            self.audio_mode = "recognise" if packet.payload in self._known else "decode"
        if self.audio_mode == "recognise":
            assert self._cycle is not None
            index = self._known.get(packet.payload)
            bpp = self._cycle.blocks_per_packet
            first = None if index is None else (index * bpp) % PERIOD
            self.audio.packet(ts - self._ts_origin, first, bpp, arrival)
            return
        assert self._decoded is not None
        self._decoded.packet(packet.payload, ts - self._ts_origin, arrival, gap)
