"""Where media stopped arriving and where it came back, to the sub-second.

A participant's media was interrupted when nothing arrived for a while.
Two shapes show it in per-second samples:

- a run of samples without media (``no_media_in``: inbound streams were
  there and not one packet arrived), between samples that had media;
- a cut shorter than two samples that falls across a sample boundary, so
  no sample is empty: the sample before it ends short of packets and the
  one after it starts short of them, by ``MIN_GAP_MS`` or more in all
  (neither of them the first or last sample with media of the series, nor
  the first one the sample a gap just resumed in).

The edges come from the receiver's own packet stamps where the collector
sends them (``last_packet_in_ms``: when the latest audio packet arrived, on
the clock the sample windows are read on). The last sample with media
before the cut reports its last packet, to the packet. The first packet
after the resume is never reported, so that edge is counted back from the
first sample after it: its stamp less its packets received, less one, at
the call's usual spacing of received packets (random loss moves that edge
by about sqrt(n p) packet times, n packets, loss p). A stamp outside its
own sample's window (a muted or replaced audio track's old packet, an
unset gauge) is no stamp.

Without stamps (the aiortc collector, data stored before them) the audio
packet counts (``audio_packets_in``) place both edges. Opus sends at a
steady rate (one packet per 20 ms), so the packets *sent* before the cut
(received, plus those the sample's own loss fraction says were lost, each
detected by a packet that followed within the sample) at the call's usual
send rate fill that sample from its start. After the resume the sample's
lost count may also hold the cut's own packets (always for gaps under
about a second), so there the packets received, at the call's usual rate
of received packets, fill the sample up to its end. Without audio counts
the samples' own edges are used. A run at the very start or end of a
series is the call starting or ending, not an interruption. Definition
and measured error: docs/methodology.md ("Media interruption").
"""

from __future__ import annotations

import numpy as np

from server.analysis.series import ParticipantSeries

# A cut across a sample boundary counts from this long: random loss of up
# to 10 % moves a sample's packet count by about 2 packets (40 ms) either way.
MIN_GAP_MS = 500


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    diff = np.diff(padded)
    return list(zip(np.flatnonzero(diff == 1).tolist(), (np.flatnonzero(diff == -1) - 1).tolist(), strict=True))


def media_gaps(s: ParticipantSeries) -> list[tuple[int, int]]:
    """(start, end) epoch ms of each span in which no media arrived."""
    n = len(s)
    if n < 3:
        return []
    flag = s.col("no_media_in")
    none = np.nan_to_num(flag, nan=0.0) > 0.5
    media = np.nan_to_num(flag, nan=1.0) < 0.5
    audio = s.col("audio_packets_in")
    loss = np.nan_to_num(s.col("audio_loss_in"), nan=0.0).clip(0.0, 0.9)
    ok = media & (np.nan_to_num(audio, nan=0.0) > 0)
    counted = bool(ok.any())
    received = float(np.median(audio[ok] / s.interval_ms[ok])) if counted else 0.0  # packets per ms
    sent = float(np.median(audio[ok] / (1.0 - loss[ok]) / s.interval_ms[ok])) if counted else 0.0
    stamp = s.col("last_packet_in_ms")
    # Window ends are rounded to the millisecond apart from the stamp: one either way.
    stamped = (stamp >= s.t_ms - 1) & (stamp <= s.end_ms + 1)

    def stop_in(k: int) -> int:
        if stamped[k]:
            return int(min(max(stamp[k], s.t_ms[k]), s.end_ms[k]))
        if sent > 0 and np.isfinite(audio[k]):
            return int(s.t_ms[k] + min(audio[k] / (1.0 - loss[k]) / sent, s.interval_ms[k]))
        return int(s.t_ms[k] + s.interval_ms[k])

    def resume_in(k: int) -> int:
        if not (received > 0 and np.isfinite(audio[k])):
            return int(s.t_ms[k])
        if stamped[k] and audio[k] >= 1:
            # The last packet's own time, not the poll's: the poll comes some
            # milliseconds after it, and a busy page polls late.
            last = min(stamp[k], s.end_ms[k])
            return int(max(last - (audio[k] - 1) / received, s.t_ms[k]))
        # Not the sample's own loss fraction: Chromium counts a short gap's
        # packets as lost there, and sometimes part of a longer one's.
        return int(s.t_ms[k] + s.interval_ms[k] - min(audio[k] / received, s.interval_ms[k]))

    out = []
    for a, b in _runs(none):
        if a == 0 or b == n - 1 or not media[a - 1] or not media[b + 1]:
            continue
        start = stop_in(a - 1)
        out.append((start, max(resume_in(b + 1), start)))
    if counted:
        # Pairs of whole-media samples only: not the first or last sample
        # with media (media starts or ends part-way through them), nor one
        # next to a sample without media (its shortfall is that run's edge).
        have = np.flatnonzero(ok)
        inner = ok.copy()
        inner[have[0]] = inner[have[-1]] = False
        inner[1:] &= ~none[:-1]
        inner[:-1] &= ~none[1:]
        resumed = -1  # the sample the last gap found resumed in
        for k in range(n - 1):
            # A sample that resumed a gap holds its packets at its end: read as the
            # start of the next pair, it would place a second, overlapping gap.
            if k == resumed or not (inner[k] and inner[k + 1]):
                continue
            start = stop_in(k)
            end = resume_in(k + 1)
            # Both samples short of packets, at the boundary between them.
            if end - start >= MIN_GAP_MS and start < s.t_ms[k] + s.interval_ms[k] < end:
                out.append((start, end))
                resumed = k + 1
    return sorted(out)
