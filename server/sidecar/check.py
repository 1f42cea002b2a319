"""The connection check's verdict: plain words and a few concrete tips.

Thresholds are documented in docs/probe.md ("Connection check"). The check
runs the probe for about ten seconds at its low fixed rates, so it speaks
about delay, loss and interruptions on the path, not about bandwidth.

A figure the check could not measure (no participant summary, a pilot that
never synchronised, no video frame) is "not measured": it is never graded
good, and a verdict that depends on it cannot be "good".
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
    "incomplete": ("We could not measure everything the check needs, so we cannot tell whether your connection "
                   "is good enough for video."),
}
NOT_MEASURED = "not measured"
LEVELS = ("good", "fair", "poor")
SEVERITY = {"good": 0, "fair": 1, "poor": 2, "incomplete": 3, "failed": 4}

TIP_WIFI = "Sit closer to your Wi-Fi router, or connect with a cable if you can."
TIP_OTHERS = "Pause downloads, streaming and other video calls on your network during the session."
TIP_VPN = "If you use a VPN, switch it off for the session."
TIP_APPS = "Close other apps and browser tabs you do not need."
TIP_NETWORK = ("Your network may block video calls (some workplace and public networks do). Try another "
               "network, such as home Wi-Fi or your phone's hotspot.")
TIP_RETRY = "Run the check again a few minutes before the session starts."
TIP_SOUND = ("Allow this page to play sound, and allow the microphone if your browser asks (the check sends only "
             "its own test tones), then run the check again.")
TIP_BROWSER = "Try another up-to-date browser, such as Chrome, Edge, Firefox or Safari."
TIP_STAY = "Keep this page open and in front until the check has finished."

# Which figures each graded aspect depends on; a missing one makes it not measured.
ASPECTS = {
    "delay": ("rtt_p95_ms",),
    "loss": ("loss_up", "loss_down"),
    "freezes": ("freeze_ms_up", "freeze_ms_down"),
    "sound": ("audio_gap_up", "audio_gap_down"),
}


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
    level: str  # good | fair | poor | incomplete | failed
    words: str
    tips: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # figure names not measured
    grades: dict[str, str] = field(default_factory=dict)  # aspect -> good | fair | poor | not measured

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _grade(value: float | None, limits: tuple[float, float]) -> int | None:
    if value is None:
        return None
    return 0 if value <= limits[0] else 1 if value <= limits[1] else 2


def _worst(*grades: int | None) -> int | None:
    """The worse of both directions as far as measured; None when neither was.
    (A missing direction is listed in ``Verdict.missing``, so "good" is never
    claimed from one direction alone.)"""
    known = [g for g in grades if g is not None]
    return max(known) if known else None


def _missing_tips(missing: list[str]) -> list[str]:
    """What to try, from which figures are missing (docs/probe.md, "Connection check")."""
    tips: list[str] = []
    down = [m for m in missing if m.endswith("_down")]
    if len(down) == 3:  # the browser sent no summary of what it received
        tips += [TIP_BROWSER, TIP_STAY]
    if any(m.startswith("audio_gap") for m in missing):
        tips.insert(0, TIP_SOUND)
        if TIP_BROWSER not in tips:
            tips.insert(1, TIP_BROWSER)
    if any(m.startswith("freeze") for m in missing) and TIP_BROWSER not in tips:
        tips.append(TIP_BROWSER)
    if any(m.startswith(("rtt", "loss")) for m in missing):
        tips.append(TIP_NETWORK)
    return tips


def judge(f: CheckFigures) -> Verdict:
    figures = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(f).items()}
    if not f.connected:
        return Verdict("failed", WORDS["failed"], [TIP_NETWORK, TIP_VPN], ["no media connection"], figures,
                       missing=[n for a in ASPECTS.values() for n in a],
                       grades=dict.fromkeys(ASPECTS, NOT_MEASURED))
    scale = 10.0 / max(f.duration_s, 1.0)
    grades = {
        "delay": _grade(f.rtt_p95_ms, RTT_P95_MS),
        "loss": _worst(_grade(f.loss_up, LOSS), _grade(f.loss_down, LOSS)),
        "freezes": _worst(_grade(None if f.freeze_ms_up is None else f.freeze_ms_up * scale, FREEZE_MS_PER_10S),
                          _grade(None if f.freeze_ms_down is None else f.freeze_ms_down * scale, FREEZE_MS_PER_10S)),
        "sound": _worst(_grade(f.audio_gap_up, AUDIO_GAP), _grade(f.audio_gap_down, AUDIO_GAP)),
    }
    missing = [n for names in ASPECTS.values() for n in names if getattr(f, n) is None]
    known = [g for g in grades.values() if g is not None]
    worst = max(known, default=0)
    # Not "good" unless every figure was measured; a measured fair or poor stands.
    level = "incomplete" if missing and worst == 0 else LEVELS[worst]
    reasons = [name for name, g in grades.items() if g]
    tips: list[str] = []
    if grades["loss"] or grades["freezes"] or grades["sound"]:
        tips += [TIP_WIFI, TIP_OTHERS]
    if grades["delay"]:
        tips.insert(0, TIP_VPN)
        if TIP_WIFI not in tips:
            tips.append(TIP_WIFI)
    if missing:
        tips = _missing_tips(missing) + [t for t in tips if t not in _missing_tips(missing)]
    elif tips and len(tips) < 3:
        tips.append(TIP_APPS if grades["freezes"] or grades["sound"] else TIP_RETRY)
    words = WORDS[level]
    if missing and level != "incomplete":
        words += " Some figures could not be measured, so it may be worse than this."
    graded = {name: NOT_MEASURED if g is None or (not g and any(n in missing for n in ASPECTS[name]))
              else LEVELS[g] for name, g in grades.items()}
    return Verdict(level, words, tips[:3], reasons, figures, missing, graded)


def figures_from(sidecar: dict[str, Any], participant: dict[str, Any] | None, duration_s: float,
                 connected: bool, relay: bool = False) -> CheckFigures:
    """Figures from the two ends' summaries (``ProbeEndpoint.summary`` shape;
    the browser reports the same keys)."""
    participant = participant or {}

    def loss(s: dict[str, Any]) -> float | None:
        v = (s.get("pings") or {}).get("lossFraction")
        return float(v) if isinstance(v, int | float) else None

    def freeze(s: dict[str, Any]) -> float | None:
        video = s.get("video") or {}
        v, received = video.get("freezeMs"), video.get("received")
        # Freezes are gaps between frames: with fewer than two frames there is nothing measured.
        if not isinstance(v, int | float) or not isinstance(received, int | float) or received < 2:
            return None
        return float(v)

    def gap(s: dict[str, Any]) -> float | None:
        a = s.get("audio") or {}
        blocks, gap_ms, heard = a.get("blocks"), a.get("gapMs"), a.get("heard")
        # A pilot that never synchronised (no block read) measured nothing, not "no gaps".
        if not isinstance(blocks, int | float) or not isinstance(gap_ms, int | float) or not blocks or not heard:
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
