"""One end of a probe: an aiortc peer with stamped media, pilot audio, the
ping channel, content-reading receivers and an interval clock.

The participant's agent offers; the server's sidecar answers. Everything
else is the same on both ends, so both measure with the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)

from media.pilot_opus import encode_cycle
from media.probe import tuning
from media.probe.audio_meter import AudioMeter
from media.probe.pings import PingMeter
from media.probe.profile import ProbeProfile
from media.probe.receiver import ReceiverTap
from media.probe.report import IntervalData, Side
from media.probe.sdp import strip_extensions, tune_answer
from media.probe.tracks import PilotAudioTrack, StampedVideoTrack
from media.probe.video_meter import VideoMeter

log = logging.getLogger("bondline.probe")

CHANNEL_LABEL = "bondline-ping"
IntervalHandler = Callable[[IntervalData], Awaitable[None] | None]


def _codec_prefs(kind: str, mime: str) -> list[Any]:
    return [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() == mime]


class ProbeEndpoint:
    def __init__(self, profile: ProbeProfile, side: Side, *, ice_servers: list[RTCIceServer] | None = None,
                 run: str | None = None, recognise_pilot: bool = True, key_interval: int = 1) -> None:
        tuning.check()
        self.profile = profile
        self.side = side
        self.run = run or f"{random.getrandbits(32):08x}"
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers or [],
                                                     bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.video_meter = VideoMeter(profile.late_ms) if profile.video else None
        self.audio_meter = AudioMeter(profile.late_ms) if profile.audio else None
        self.pings = PingMeter()
        self.video_track = StampedVideoTrack(profile.fps, key_interval=key_interval) if profile.video else None
        self.audio_track = PilotAudioTrack(profile.ptime_ms) if profile.audio else None
        self.taps: dict[str, ReceiverTap] = {}
        self._recognise = recognise_pilot
        self.channel: RTCDataChannel | None = None
        self.channel_open = asyncio.Event()
        self.started_ms: float | None = None
        self.interval_start: int | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._closed = False
        self.pc.on("datachannel", self._on_channel)

    # -- negotiation -------------------------------------------------------

    async def make_offer(self) -> str:
        """Participant: media both ways, the ping channel, and the offer SDP."""
        for kind, track, mime in (("video", self.video_track, "video/vp8"), ("audio", self.audio_track, "audio/opus")):
            if track is None:
                continue
            transceiver = self.pc.addTransceiver(track, direction="sendrecv")
            transceiver.setCodecPreferences(_codec_prefs(kind, mime))
        self._on_channel(self.pc.createDataChannel(CHANNEL_LABEL, ordered=False, maxRetransmits=0))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self._tap()

    async def make_answer(self, offer_sdp: str) -> str:
        """Sidecar: take the participant's offer, add our media, answer."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=strip_extensions(offer_sdp), type="offer"))
        for transceiver in self.pc.getTransceivers():
            track = self.video_track if transceiver.kind == "video" else self.audio_track
            if track is not None and transceiver.sender.track is None:
                self.pc.addTrack(track)
        self._tap()
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return tune_answer(self.pc.localDescription.sdp, self.profile)

    def _tap(self) -> None:
        for transceiver in self.pc.getTransceivers():
            kind = transceiver.kind
            receiver: RTCRtpReceiver = transceiver.receiver
            if kind in self.taps:
                continue
            if kind == "video" and self.video_meter is not None:
                self.taps[kind] = ReceiverTap(receiver, kind, self.video_meter, None)
            elif kind == "audio" and self.audio_meter is not None:
                cycle = encode_cycle(self.profile.ptime_ms) if self._recognise else None
                self.taps[kind] = ReceiverTap(receiver, kind, None, self.audio_meter, cycle)

    def _on_channel(self, channel: RTCDataChannel) -> None:
        if channel.label != CHANNEL_LABEL or self.channel is not None:
            return
        self.channel = channel

        @channel.on("message")
        def _message(data: bytes | str) -> None:
            if isinstance(data, bytes):
                self.pings.receive(data)

        if channel.readyState == "open":
            self.channel_open.set()
        else:
            channel.on("open", self.channel_open.set)

    # -- running -----------------------------------------------------------

    async def wait_connected(self, timeout: float = 20.0) -> bool:
        try:
            await asyncio.wait_for(self.channel_open.wait(), timeout)
        except TimeoutError:
            return False
        return self.pc.connectionState == "connected"

    def start(self, on_interval: IntervalHandler) -> None:
        self.started_ms = time.time() * 1000
        self._tasks.append(asyncio.create_task(self._ping_loop(), name="probe-pings"))
        self._tasks.append(asyncio.create_task(self._interval_loop(on_interval), name="probe-intervals"))

    async def _ping_loop(self) -> None:
        period = 1.0 / self.profile.ping_hz
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        n = 0
        while True:
            channel = self.channel
            if channel is not None and channel.readyState == "open":
                with contextlib.suppress(Exception):  # a closing channel refuses sends
                    channel.send(self.pings.make_ping())
            n += 1
            await asyncio.sleep(max(0.0, t0 + n * period - loop.time()))

    def _reset_intervals(self) -> None:
        if self.video_meter is not None:
            self.video_meter.take_interval()
        if self.audio_meter is not None:
            self.audio_meter.take_interval()
        self.pings.take_interval()
        for tap in self.taps.values():
            tap.take_rtp()

    async def _interval_loop(self, on_interval: IntervalHandler) -> None:
        step = self.profile.interval_ms
        now = time.time() * 1000
        start = (int(now) // step + 1) * step  # first boundary on a whole interval
        await asyncio.sleep((start - now) / 1000)
        self._reset_intervals()  # what came before the first boundary was warm-up
        self.interval_start = start
        while True:
            end = start + step
            await asyncio.sleep(max(0.0, (end - time.time() * 1000) / 1000))
            data = self.collect(start, step)
            start = end
            self.interval_start = start
            result = on_interval(data)
            if result is not None:
                await result

    async def stop_intervals(self) -> IntervalData | None:
        """Stop sending and measuring; the last, partial interval (if it is
        at least 50 ms long, the shortest a sample may cover)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        start = self.interval_start
        self.interval_start = None
        if start is None:
            return None
        length = int(time.time() * 1000) - start
        if length < 50:
            return None
        return self.collect(start, min(length, self.profile.interval_ms))

    def collect(self, start_ms: int, interval_ms: int) -> IntervalData:
        """The figures of the interval that began at ``start_ms``, and a fresh one."""
        vtap = self.taps.get("video")
        atap = self.taps.get("audio")
        pings = self.pings
        clock: dict[str, float] = {}
        if pings.offset_ms is not None and pings.offset_error_ms is not None:
            clock = {"clockOffsetMs": pings.offset_ms, "clockOffsetErrorMs": pings.offset_error_ms}
        return IntervalData(
            start_ms=start_ms,
            interval_ms=interval_ms,
            side=self.side,
            run=self.run,
            video=self.video_meter.take_interval() if self.video_meter else None,
            video_rtp=vtap.take_rtp() if vtap else None,
            video_jitter_ms=self.video_meter.jitter_ms if self.video_meter else None,
            audio=self.audio_meter.take_interval() if self.audio_meter else None,
            audio_rtp=atap.take_rtp() if atap else None,
            audio_jitter_ms=self.audio_meter.jitter_ms if self.audio_meter else None,
            pings=pings.take_interval(),
            connection=self.connection_facts(),
            clock=clock,
        )

    def connection_facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"state": self.pc.connectionState, "iceState": self.pc.iceConnectionState}
        try:
            ice = self.pc.sctp.transport.transport if self.pc.sctp else None
            pair = ice._connection._nominated.get(1) if ice is not None else None
            if pair is not None:
                facts["localCandidateType"] = pair.local_candidate.type
                facts["remoteCandidateType"] = pair.remote_candidate.type
                facts["protocol"] = pair.local_candidate.transport.lower()
        except AttributeError:
            pass
        return facts

    def freeze(self) -> None:
        """Stop sending media and stop counting what arrives, so the totals
        of both ends describe the same frames: the end that stops first
        reports a final sent count, the other one counts up to it."""
        for track in (self.video_track, self.audio_track):
            if track is not None:
                track.stop()
        for tap in self.taps.values():
            tap.frozen = True

    def summary(self, peer: dict[str, Any] | None = None) -> dict[str, Any]:
        """Totals since the start; ``peer`` is what the other end said it sent."""
        peer = peer or {}
        out: dict[str, Any] = {"side": self.side, "run": self.run,
                               "sent": {"frames": self.video_track.sent if self.video_track else None,
                                        "audioPackets": self.audio_track.sent if self.audio_track else None,
                                        "pings": self.pings.totals.sent}}
        if self.video_meter is not None:
            out["video"] = self.video_meter.account(peer.get("frames"))
            out["video"]["freezes"] = self.video_meter.totals.freezes
            out["video"]["freezeMs"] = round(self.video_meter.totals.freeze_ms, 1)
            vtap = self.taps.get("video")
            if vtap is not None:
                # Of the corrupt frames: not decoded because a reference was lost, and
                # decoded but not readable (docs/probe.md).
                out["video"]["spoiled"] = vtap.spoiled
                out["video"]["decodeErrors"] = vtap.decode_errors
        if self.audio_meter is not None:
            out["audio"] = self.audio_meter.account()
            tap = self.taps.get("audio")
            out["audio"]["mode"] = tap.audio_mode if tap is not None else None
        out["pings"] = self.pings.account(peer.get("pings"))
        return out

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.stop_intervals()
        for track in (self.video_track, self.audio_track):
            if track is not None:
                track.stop()
        try:
            await self.pc.close()
        except AttributeError:
            # aiortc cannot close a connection whose offer it refused half-way
            # (a transceiver without a transport); there is nothing left to stop.
            log.debug("closing a half-negotiated peer connection", exc_info=True)
