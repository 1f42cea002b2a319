"""The video stamp: a frame number and a send time drawn as a pixel code.

The code is a grid of 16x16 cells aligned to VP8's macroblocks, each cell a
flat patch at one of four grey levels (2 bits). Flat macroblocks survive
VP8 at low bitrate almost exactly, where finer codes do not (aiortc's
encoder runs a denoiser that smears 8x8 cells; see docs/probe.md). The
first four cells carry the four levels as a calibration ramp, so a reader
copes with limited-range YUV, canvas colour conversion or a browser that
scaled the frame: it measures the levels instead of assuming them.

Payload (12 bytes, 48 cells): frame number (u32), send time (u32, the low
32 bits of the sender's Unix time in ms), run id (u16, tells one probe run
from another) and a CRC-16/CCITT-FALSE over the first 10 bytes, so a frame
damaged by loss or a stale reference is refused rather than misread.
plugin/js/bondline-probe.js draws and reads the same code.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

CELL = 16
WIDTH = 160
HEIGHT = 120
COLS = WIDTH // CELL  # 10
ROWS = HEIGHT // CELL  # 7 full rows; the last 8 pixel rows stay background
CALIBRATION = (0, 3, 1, 2)
PAYLOAD_BYTES = 12
DATA_CELLS = PAYLOAD_BYTES * 4
USED_CELLS = len(CALIBRATION) + DATA_CELLS  # 52 of 70
# Grey levels (0-255) of the four symbols, spaced well inside the legal range.
LEVELS = (40, 98, 156, 214)
BACKGROUND = 127

_LEVEL_LUT = np.array(LEVELS, dtype=np.uint8)


@dataclass(frozen=True)
class Stamp:
    frame: int
    send_ms: int  # low 32 bits of the sender's epoch ms
    run: int


def crc16(data: bytes) -> int:
    # binascii.crc_hqx with init 0xFFFF is CRC-16/CCITT-FALSE (poly 0x1021).
    return binascii.crc_hqx(data, 0xFFFF)


def payload(stamp: Stamp) -> bytes:
    head = struct.pack(">IIH", stamp.frame & 0xFFFFFFFF, stamp.send_ms & 0xFFFFFFFF, stamp.run & 0xFFFF)
    return head + struct.pack(">H", crc16(head))


def symbols(stamp: Stamp) -> NDArray[np.uint8]:
    """The 52 cell symbols (0-3) of a stamp, calibration ramp first."""
    raw = np.frombuffer(payload(stamp), dtype=np.uint8)
    # Four 2-bit symbols per byte, most significant first.
    data = np.stack([(raw >> 6) & 3, (raw >> 4) & 3, (raw >> 2) & 3, raw & 3], axis=1).reshape(-1)
    return np.concatenate([np.array(CALIBRATION, dtype=np.uint8), data.astype(np.uint8)])


class StampPainter:
    """Draws stamps into a reusable luma plane (160x120)."""

    def __init__(self) -> None:
        self.plane = np.full((HEIGHT, WIDTH), BACKGROUND, dtype=np.uint8)
        # A view of the plane as (row, cell-y, col, cell-x) to fill whole cells at once.
        self._cells = self.plane[: ROWS * CELL].reshape(ROWS, CELL, COLS, CELL)

    def paint(self, stamp: Stamp) -> NDArray[np.uint8]:
        grid = np.zeros(ROWS * COLS, dtype=np.uint8)
        grid[:USED_CELLS] = _LEVEL_LUT[symbols(stamp)]
        grid[USED_CELLS:] = BACKGROUND
        self._cells[:] = grid.reshape(ROWS, 1, COLS, 1)
        return self.plane


def cell_means(luma: NDArray[np.uint8]) -> NDArray[np.float64]:
    """Mean of the central 8x8 pixels of each cell, in cell order.

    Frames of the native size take a reshape; any other size (a browser
    that scaled the stream) is sampled at the scaled cell centres.
    """
    h, w = luma.shape
    if h >= ROWS * CELL and w == WIDTH:
        block = luma[: ROWS * CELL].reshape(ROWS, CELL, COLS, CELL)[:, 4:12, :, 4:12]
        return block.mean(axis=(1, 3), dtype=np.float64).reshape(-1)
    sy = h / HEIGHT
    sx = w / WIDTH
    half_y = max(1, int(4 * sy))
    half_x = max(1, int(4 * sx))
    out = np.empty(ROWS * COLS, dtype=np.float64)
    for r in range(ROWS):
        cy = int((r + 0.5) * CELL * sy)
        for c in range(COLS):
            cx = int((c + 0.5) * CELL * sx)
            out[r * COLS + c] = luma[cy - half_y : cy + half_y, cx - half_x : cx + half_x].mean()
    return out


def read_stamp(luma: NDArray[np.uint8]) -> Stamp | None:
    """The stamp in a decoded luma plane, or None when it does not check out."""
    if luma.ndim != 2 or luma.shape[0] < 16 or luma.shape[1] < 16:
        return None
    means = cell_means(luma)
    ramp = means[: len(CALIBRATION)]
    # Observed value of each level, from the ramp (0, 3, 1, 2).
    observed = np.array([ramp[0], ramp[2], ramp[3], ramp[1]])
    if not np.all(np.diff(observed) > 12):
        return None  # no ramp: not a stamped frame (or a badly damaged one)
    thresholds = (observed[:-1] + observed[1:]) / 2
    syms = np.searchsorted(thresholds, means[len(CALIBRATION) : USED_CELLS]).astype(np.uint8)
    quads = syms.reshape(PAYLOAD_BYTES, 4)
    raw = ((quads[:, 0] << 6) | (quads[:, 1] << 4) | (quads[:, 2] << 2) | quads[:, 3]).astype(np.uint8).tobytes()
    if crc16(raw[:10]) != struct.unpack(">H", raw[10:])[0]:
        return None
    frame, send_ms, run = struct.unpack(">IIH", raw[:10])
    return Stamp(frame=frame, send_ms=send_ms, run=run)


def unwrap_ms(low32: int, reference_ms: int) -> int:
    """The full epoch ms whose low 32 bits are ``low32`` nearest ``reference_ms``."""
    span = 1 << 32
    base = reference_ms - (reference_ms % span)
    candidates = (base - span + low32, base + low32, base + span + low32)
    return min(candidates, key=lambda v: abs(v - reference_ms))
