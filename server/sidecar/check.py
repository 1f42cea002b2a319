"""The connection check's verdict: plain words and a few concrete tips.

Thresholds are documented in docs/probe.md ("Connection check"). The check
runs the probe for about ten seconds at its low fixed rates, so it speaks
about delay, loss and interruptions on the path, not about bandwidth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# (good, fair) limits; beyond fair is poor.
RTT_P95_MS = (300.0, 500.0)
LOSS = (0.02, 0.05)
FREEZE_MS_PER_10S = (500.0, 2000.0)
AUDIO_GAP = (0.02, 0.05)

WORDS = {
    "good": "Your connection looks good for a video session.",
    "fair": "Your connection should work for video, but you may notice short freezes or choppy sound.",
    "poor": "Your connection is likely to struggle with video: expect freezes and broken-up sound.",
    "failed": "We could not set up a test call from this device and network.",
}

TIP_WIFI = "Sit closer to your Wi-Fi router, or connect with a cable if you can."
TIP_OTHERS = "Pause downloads, streaming and other video calls on your network during the session."
TIP_VPN = "If you use a VPN, switch it off for the session."
TIP_APPS = "Close other apps and browser tabs you do not need."
TIP_NETWORK = ("Your network may block video calls (some workplace and public networks do). Try another "
               "network, such as home Wi-Fi or your phone's hotspot.")
TIP_RETRY = "Run the check again a few minutes before the session starts."


@dataclass
class CheckFigures:
    connected: bool
    duration_s: float = 0.0
    rtt_median_ms: float | None = None
    rtt_p95_ms: float | None = None
    loss_up: float | None = None
    loss_down: float | None = None
    freeze_ms_up: float | None = None
    freeze_ms_down: float | None = None
    audio_gap_up: float | None = None
    audio_gap_down: float | None = None
    relay: bool = False


@dataclass
class Verdict:
    level: str  # good | fair | poor | failed
    words: str
    tips: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _grade(value: float | None, limits: tuple[float, float]) -> int:
    if value is None:
        return 0
    return 0 if value <= limits[0] else 1 if value <= limits[1] else 2


def judge(f: CheckFigures) -> Verdict:
    figures = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(f).items()}
    if not f.connected:
        return Verdict("failed", WORDS["failed"], [TIP_NETWORK, TIP_VPN], ["no media connection"], figures)
    scale = 10.0 / max(f.duration_s, 1.0)
    grades = {
        "delay": _grade(f.rtt_p95_ms, RTT_P95_MS),
        "loss": max(_grade(f.loss_up, LOSS), _grade(f.loss_down, LOSS)),
        "freezes": max(_grade(None if f.freeze_ms_up is None else f.freeze_ms_up * scale, FREEZE_MS_PER_10S),
                       _grade(None if f.freeze_ms_down is None else f.freeze_ms_down * scale, FREEZE_MS_PER_10S)),
        "sound": max(_grade(f.audio_gap_up, AUDIO_GAP), _grade(f.audio_gap_down, AUDIO_GAP)),
    }
    worst = max(grades.values())
    level = ("good", "fair", "poor")[worst]
    reasons = [name for name, g in grades.items() if g > 0]
    tips: list[str] = []
    if grades["loss"] or grades["freezes"] or grades["sound"]:
        tips += [TIP_WIFI, TIP_OTHERS]
    if grades["delay"]:
        tips.insert(0, TIP_VPN)
        if TIP_WIFI not in tips:
            tips.append(TIP_WIFI)
    if tips and len(tips) < 3:
        tips.append(TIP_APPS if grades["freezes"] or grades["sound"] else TIP_RETRY)
    return Verdict(level, WORDS[level], tips[:3], reasons, figures)


def figures_from(sidecar: dict[str, Any], participant: dict[str, Any] | None, duration_s: float,
                 connected: bool, relay: bool = False) -> CheckFigures:
    """Figures from the two ends' summaries (``ProbeEndpoint.summary`` shape;
    the browser reports the same keys)."""
    participant = participant or {}

    def loss(s: dict[str, Any]) -> float | None:
        v = (s.get("pings") or {}).get("lossFraction")
        return float(v) if isinstance(v, int | float) else None

    def freeze(s: dict[str, Any]) -> float | None:
        v = (s.get("video") or {}).get("freezeMs")
        return float(v) if isinstance(v, int | float) else None

    def gap(s: dict[str, Any]) -> float | None:
        a = s.get("audio") or {}
        blocks, gap_ms = a.get("blocks"), a.get("gapMs")
        if not isinstance(blocks, int | float) or not isinstance(gap_ms, int | float) or not blocks:
            return None
        return float(gap_ms) / (float(blocks) * 20.0)

    pings = sidecar.get("pings") or {}
    return CheckFigures(
        connected=connected,
        duration_s=duration_s,
        rtt_median_ms=pings.get("rttMedianMs"),
        rtt_p95_ms=pings.get("rttP95Ms", pings.get("rttP99Ms")),
        loss_up=loss(sidecar),
        loss_down=loss(participant),
        freeze_ms_up=freeze(sidecar),
        freeze_ms_down=freeze(participant),
        audio_gap_up=gap(sidecar),
        audio_gap_down=gap(participant),
        relay=relay,
    )
