"""The audio sequence pilot: every 20 ms block of probe audio says its number.

Each block (960 samples at 48 kHz) is the sum of three steady tones, one
from each of three bands of 16 frequencies spaced 100 Hz apart; the three
choices are the base-16 digits of the block's sequence number modulo
``PERIOD`` (3,840 blocks = 76.8 s). Tones at multiples of 100 Hz make whole
cycles in a block and sit on bin centres of a 10 ms window, so a reader
needs one small FFT per block. Tones survive Opus far better than any
waveform-level code, cost nothing to generate (the Python sender even sends
pre-encoded packets, see media/pilot_opus.py), and a lost, concealed or
late block is recognised from its content: its digits are missing or wrong.

plugin/js/bondline-probe.js generates the same pilot with WebAudio
oscillators and reads it with the same rule.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

RATE = 48_000
BLOCK = 960  # 20 ms
WINDOW = 480  # 10 ms analysis window (bin width 100 Hz)
BASES_HZ = (600, 2400, 4200)
STEP_HZ = 100
DIGITS = 16
PERIOD = 3840  # blocks; divisible by 1, 2, 3 and 6 blocks per packet
AMPLITUDE = 0.22  # per tone, of full scale
# A digit is read when its tone carries this much more power than the
# strongest other candidate of its band.
MIN_PEAK_RATIO = 4.0


def digits(seq: int) -> tuple[int, int, int]:
    s = seq % PERIOD
    return s % DIGITS, (s // DIGITS) % DIGITS, s // (DIGITS * DIGITS)


def frequencies(seq: int) -> tuple[int, int, int]:
    d = digits(seq)
    return tuple(BASES_HZ[i] + STEP_HZ * d[i] for i in range(3))  # type: ignore[return-value]


@lru_cache(maxsize=1)
def _tone_table() -> NDArray[np.float32]:
    """One block of every candidate tone: (3 bands, 16 digits, BLOCK)."""
    t = np.arange(BLOCK, dtype=np.float64) / RATE
    table = np.empty((3, DIGITS, BLOCK), dtype=np.float32)
    for band, base in enumerate(BASES_HZ):
        for d in range(DIGITS):
            table[band, d] = np.sin(2 * np.pi * (base + STEP_HZ * d) * t) * AMPLITUDE
    return table


def block(seq: int) -> NDArray[np.float32]:
    """The waveform (float, full scale 1.0) of block ``seq``."""
    table = _tone_table()
    d = digits(seq)
    return table[0, d[0]] + table[1, d[1]] + table[2, d[2]]


def blocks(first_seq: int, count: int) -> NDArray[np.int16]:
    """``count`` consecutive blocks as one int16 signal."""
    out = np.concatenate([block(first_seq + i) for i in range(count)]) if count else np.zeros(0, np.float32)
    return np.round(out * 32767).astype(np.int16)


@lru_cache(maxsize=1)
def _bins() -> NDArray[np.intp]:
    return np.array([(base + STEP_HZ * d) // STEP_HZ for base in BASES_HZ for d in range(DIGITS)], dtype=np.intp)


def read_windows(windows: NDArray[np.floating]) -> NDArray[np.int64]:
    """Sequence numbers (mod PERIOD) of analysis windows, -1 where unreadable.

    ``windows`` is (n, WINDOW): the central 10 ms of n blocks. With a plain
    (rectangular) window every candidate tone makes whole cycles, so the
    candidates are orthogonal FFT bins and a clean tone leaks nothing into
    its neighbours 100 Hz away. (An FFT, not a product with a table of the
    48 candidates: NumPy's matrix product goes to a threaded BLAS, which on
    a busy machine can stall the event loop for tens of milliseconds.)
    """
    n = windows.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    x = np.asarray(windows, dtype=np.float64)
    spectrum = np.fft.rfft(x, axis=1)
    picked = spectrum[:, _bins()]
    power = (picked.real**2 + picked.imag**2).reshape(n, 3, DIGITS)
    best = power.argmax(axis=2)
    ranked = np.sort(power, axis=2)
    top = ranked[:, :, -1]
    second = ranked[:, :, -2]
    # Tone power against the whole window's: a block of noise or silence
    # has no candidate standing out, whatever its level.
    total = (x * x).sum(axis=1) * (WINDOW / 2)
    ok = np.all(top > MIN_PEAK_RATIO * second, axis=1) & (top.sum(axis=1) > 0.5 * total)
    seq = best[:, 0] + DIGITS * best[:, 1] + DIGITS * DIGITS * best[:, 2]
    return np.where(ok & (seq < PERIOD), seq, -1).astype(np.int64)


def window_at(signal: NDArray[np.floating], block_start: int) -> NDArray[np.floating]:
    off = block_start + (BLOCK - WINDOW) // 2
    return signal[off : off + WINDOW]


def find_alignment(signal: NDArray[np.floating], step: int = 40) -> tuple[int, int] | None:
    """Offset (0..BLOCK-1) of block boundaries in ``signal`` and the number of
    readable blocks at it, or None. Codecs delay audio by a few ms (Opus
    lookahead, browser resampling), so a reader searches for the offset."""
    nblocks = len(signal) // BLOCK - 1
    if nblocks < 3:
        return None
    offsets = list(range(0, BLOCK, step))
    scores = []
    for offset in offsets:
        starts = offset + BLOCK * np.arange(nblocks)
        wins = np.stack([window_at(signal, int(s)) for s in starts])
        seqs = read_windows(wins)
        good = int(np.count_nonzero(seqs >= 0))
        # Consecutive blocks must also count up by one.
        steps = np.count_nonzero((np.diff(seqs) % PERIOD == 1) & (seqs[:-1] >= 0) & (seqs[1:] >= 0))
        scores.append(good + int(steps))
    top = max(scores)
    if top < nblocks:
        return None
    # Every offset whose window stays inside the blocks reads them all: take the middle
    # of that run (it may wrap past the block's end), not its first, so the windows sit
    # centred and a decoder's slight shift after a loss keeps them inside.
    n = len(offsets)
    runs = [i for i in range(n) if scores[i] == top and scores[i - 1] != top]
    best_len, best_mid = n, n // 2  # every offset reads them all
    if runs:
        best_len = 0
        for i in runs:
            length = 1
            while scores[(i + length) % n] == top:
                length += 1
            if length > best_len:
                best_len, best_mid = length, (i + (length - 1) // 2) % n
    return offsets[best_mid], top


def unwrap_seq(seq_mod: int, expected: float) -> int:
    """The full sequence number ≡ ``seq_mod`` (mod PERIOD) nearest ``expected``."""
    base = int(np.floor(expected / PERIOD)) * PERIOD
    candidates = (base - PERIOD + seq_mod, base + seq_mod, base + PERIOD + seq_mod)
    return min(candidates, key=lambda v: abs(v - expected))
