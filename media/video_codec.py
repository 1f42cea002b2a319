"""VP8 encoding of stamped probe frames and decoding of received ones (PyAV).

The probe encodes its own frames rather than leaving it to aiortc's
encoder: every frame is a key frame, with no denoiser and a fixed quality.
Key frames make each frame decodable on its own, so a lost frame costs
exactly that frame (no smeared references until the next key frame, no
retransmission needed to recover), which is what lets the receiver count
lost frames exactly. At 160x120 a stamped key frame is ~210 bytes: one RTP
packet, encoded in ~0.4 ms.
"""

from __future__ import annotations

import fractions

import av
import numpy as np
from numpy.typing import NDArray

from media.barcode import HEIGHT, WIDTH, Stamp, StampPainter

VIDEO_CLOCK = 90_000
TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)


class StampEncoder:
    """Paints a stamp and encodes it as one VP8 frame: a key frame every
    ``key_interval`` frames (1, the probe's own: every frame), inter frames
    between, as a browser sends (the bench's browser-like load)."""

    def __init__(self, width: int = WIDTH, height: int = HEIGHT, key_interval: int = 1) -> None:
        if (width, height) != (WIDTH, HEIGHT):
            raise ValueError(f"the probe's stamp is laid out for {WIDTH}x{HEIGHT} frames")
        self._painter = StampPainter()
        # One frame, reused: the encoder copies it on each call, and filling a
        # frame in place costs a tenth of building one from an array.
        self._frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        for plane in self._frame.planes[1:]:
            np.frombuffer(memoryview(plane), dtype=np.uint8)[:] = 128  # type: ignore[call-overload]
        y = self._frame.planes[0]
        self._luma = np.frombuffer(memoryview(y), dtype=np.uint8).reshape(HEIGHT, y.line_size)[:, :WIDTH]  # type: ignore[call-overload]
        codec = av.CodecContext.create("libvpx", "w")
        codec.width = WIDTH
        codec.height = HEIGHT
        codec.pix_fmt = "yuv420p"
        codec.time_base = TIME_BASE
        codec.gop_size = key_interval  # 1: every frame a key frame
        codec.bit_rate = 300_000
        codec.thread_count = 1
        codec.options = {
            "deadline": "realtime",
            "cpu-used": "16",
            "lag-in-frames": "0",
            "noise-sensitivity": "0",
            "auto-alt-ref": "0",
            "crf": "10",
            "qmin": "4",
            "qmax": "30",
        }
        codec.open()
        self._codec = codec

    def encode(self, stamp: Stamp, pts: int) -> av.Packet:
        """One VP8 packet; ``pts`` in 90 kHz units."""
        self._luma[:] = self._painter.paint(stamp)
        frame = self._frame
        frame.pts = pts
        frame.time_base = TIME_BASE
        packets = self._codec.encode(frame)
        if len(packets) != 1:
            raise RuntimeError(f"VP8 encoder returned {len(packets)} packets for one frame")
        packet = packets[0]
        packet.pts = pts
        packet.time_base = TIME_BASE
        return packet


def luma(frame: av.VideoFrame) -> NDArray[np.uint8]:
    """The luma plane of a decoded frame as a (height, width) array (a view)."""
    plane = frame.planes[0]
    buf = np.frombuffer(memoryview(plane), dtype=np.uint8)  # type: ignore[arg-type]
    return buf.reshape(frame.height, plane.line_size)[:, : frame.width]


class Vp8Reader:
    """Decodes VP8 frames (bytes) to luma planes."""

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("libvpx", "r")

    def decode(self, data: bytes) -> list[NDArray[np.uint8]]:
        """Luma planes of the frames in ``data``; [] when it does not decode."""
        try:
            frames = self._codec.decode(av.Packet(data))
        except av.FFmpegError:
            return []
        return [luma(f) for f in frames if isinstance(f, av.VideoFrame)]
