"""Charts as inline SVG, drawn server-side with matplotlib (Agg).

Figures are built with the object API (no pyplot state, safe in threads)
and kept small: long series are reduced to at most ``MAX_POINTS`` points
per line, each the worst value of its bin (highest RTT, loss, jitter and
concealment; lowest frame rate), so a one-second spike still shows.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from markupsafe import escape  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullLocator  # noqa: E402

from server.analysis.caseload import ModelResult, Point  # noqa: E402
from server.analysis.course import CourseRow  # noqa: E402
from server.analysis.events import Disruption  # noqa: E402
from server.analysis.series import FloatArray, ParticipantSeries  # noqa: E402
from server.config import AnalysisConfig  # noqa: E402

MAX_POINTS = 600
KIND_COLOURS = {
    "video_freeze": "#8e44ad",
    "audio_dropout": "#d35400",
    "loss_burst": "#c0392b",
    "latency_spike": "#2471a3",
    "reconnect": "#566573",
    "interruption": "#1b2631",
}
LINE = "#17324d"
THRESHOLD = "#b42318"
# One colour per client, each at least 3:1 against white (WCAG 1.4.11 for
# graphics); past eight clients the marker shape changes too, so every
# client of a caseload of up to 48 has a look of their own.
CLIENT_COLOURS = ("#0072b2", "#d55e00", "#007d5a", "#8e44ad", "#9a6700", "#a23b72", "#5d6d7e", "#8b4513")
CLIENT_MARKERS = ("o", "s", "^", "D", "v", "P")
# Points are nudged apart by up to this much (minutes, rating points) so that
# whole-minute and quarter-point values do not hide each other; the caption says so.
JITTER_X = 0.25
JITTER_Y = 0.06
matplotlib.rcParams.update(
    {
        "svg.fonttype": "none",  # text stays text: smaller, faster, selectable
        "font.size": 8,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "path.simplify": True,
        "svg.hashsalt": "bondline",  # stable ids, so equal data gives equal SVG
    }
)
_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.S)
# matplotlib puts a <style> element in every SVG; the CSP forbids inline
# style elements, so it goes and reports.css carries the same two rules.
_STYLE = re.compile(r"<style[^>]*>.*?</style>", re.S)


def to_svg(fig: Figure, title: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = _STYLE.sub("", _PROLOGUE.sub("", buf.getvalue(), count=1))
    # An accessible name for the picture; the page carries the numbers as text too.
    return svg.replace("<svg ", f"<svg role=\"img\" aria-label=\"{escape(title)}\" ", 1)


def _bin(t_min: FloatArray, v: FloatArray, how: str) -> tuple[FloatArray, FloatArray]:
    n = v.shape[0]
    if n <= MAX_POINTS:
        return t_min, v
    k = int(np.ceil(n / MAX_POINTS))
    m = (n // k) * k
    tv = t_min[:m].reshape(-1, k)[:, 0]
    vv = v[:m].reshape(-1, k)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            agg = np.nanmin(vv, axis=1) if how == "min" else np.nanmax(vv, axis=1)
    return tv, agg


# (column, label, scale, how to bin)
PANELS = (
    ("rtt_ms", "RTT (ms)", 1.0, "max"),
    ("loss_in", "Loss in (%)", 100.0, "max"),
    ("jitter_ms", "Jitter (ms)", 1.0, "max"),
    ("fps_in", "Video fps", 1.0, "min"),
    ("concealed_ratio_in", "Concealed (%)", 100.0, "max"),
)


def _spans(ax: Axes, events: Sequence[Disruption], t0_ms: int) -> None:
    """Shade events: one collection per kind (far cheaper than one patch each)."""
    by_kind: dict[str, list[list[tuple[float, float]]]] = {}
    for d in events:
        a = (d.start_ms - t0_ms) / 60_000.0
        b = max((d.end_ms - t0_ms) / 60_000.0, a + 0.05)
        by_kind.setdefault(d.kind, []).append([(a, 0.0), (a, 1.0), (b, 1.0), (b, 0.0)])
    for kind, verts in by_kind.items():
        ax.add_collection(
            PolyCollection(verts, transform=ax.get_xaxis_transform(), facecolors=KIND_COLOURS[kind], alpha=0.25,
                           linewidths=0),
            autolim=False,
        )


def thresholds(cfg: AnalysisConfig) -> dict[str, float]:
    """The event thresholds drawn on the timelines, in each panel's unit."""
    return {"rtt_ms": cfg.rtt_ms, "loss_in": cfg.loss_fraction * 100.0,
            "concealed_ratio_in": cfg.audio_concealed_ratio * 100.0}


def timeline_svg(s: ParticipantSeries, events: Sequence[Disruption], t0_ms: int, t1_ms: int, title: str,
                 thresholds: dict[str, float] | None = None, narrow: bool = False) -> str:
    """Five panels on one time axis (minutes from the session's start), with
    this participant's disruption events shaded in every panel and each
    event threshold drawn as a dashed line. ``narrow``: drawn for a phone
    (taller, labels above the panels, fewer ticks), so text stays legible."""
    fig = Figure(figsize=(4.0, 6.6) if narrow else (8.0, 5.2))
    axes = fig.subplots(len(PANELS), 1)
    t_min = (s.t_ms - t0_ms) / 60_000.0
    x_end = max((t1_ms - t0_ms) / 60_000.0, 1.0)
    limits = thresholds or {}
    for i, (ax, (col, lab, scale, how)) in enumerate(zip(axes, PANELS, strict=True)):
        tv, vv = _bin(t_min, s.col(col) * scale, how)
        ax.plot(tv, vv, color=LINE, linewidth=0.8)
        # A plain text beside (or above) the panel: set_ylabel would make matplotlib
        # measure every tick label to place it, a third of the drawing time.
        if narrow:
            ax.text(0.0, 1.04, lab, transform=ax.transAxes, ha="left", va="bottom", fontsize=8)
        else:
            ax.text(-0.075, 0.5, lab, transform=ax.transAxes, ha="right", va="center", fontsize=7)
        ax.set_xlim(0, x_end)
        top = float(np.nanmax(vv)) if np.isfinite(vv).any() else 1.0
        top = max(top * 1.1, 1.0)
        limit = limits.get(col)
        if limit is not None:
            top = max(top, limit * 1.3)
            ax.axhline(limit, color=THRESHOLD, linewidth=0.8, linestyle=(0, (4, 2)))
            ax.text(1.0, limit, f"limit {limit:g}", transform=ax.get_yaxis_transform(), ha="right", va="bottom",
                    fontsize=7, color=THRESHOLD)
        ax.set_ylim(0, top)
        ax.yaxis.set_major_locator(MaxNLocator(3))
        # Same x range on every panel; tick labels only on the bottom one
        # (ticks are most of matplotlib's drawing time).
        ax.xaxis.set_major_locator(MaxNLocator(5 if narrow else 10) if i == len(PANELS) - 1 else NullLocator())
        _spans(ax, events, t0_ms)
    fig.text(0.57, 0.005, "minutes from start", ha="center", va="bottom")
    # The colour key is HTML next to the charts (one for both), not a legend per figure.
    if narrow:
        fig.subplots_adjust(left=0.13, right=0.97, top=0.96, bottom=0.07, hspace=0.55)
    else:
        fig.subplots_adjust(left=0.16, right=0.98, top=0.98, bottom=0.08, hspace=0.25)
    return to_svg(fig, title)


def course_svg(rows: Sequence[CourseRow], early_sessions: int, title: str, narrow: bool = False) -> str:
    """Alliance scores per session (top) over disrupted minutes (bottom)."""
    fig = Figure(figsize=(4.0, 4.8) if narrow else (8.0, 4.2))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
    x = np.array([r.number for r in rows], dtype=float)
    if early_sessions and len(rows):
        for ax in (top, bottom):
            ax.axvspan(0.5, early_sessions + 0.5, color="#f4d03f", alpha=0.18, linewidth=0)
        top.text(0.6, 5.05, f"first {early_sessions} sessions", fontsize=7, va="bottom")
    series = (("bond", "Bond", "#c0392b"), ("goal", "Goal", "#2471a3"), ("task", "Task", "#229954"),
              ("total", "WAI-SR mean", LINE))
    for attr, lab, colour in series:
        y = np.array([np.nan if getattr(r, attr) is None else getattr(r, attr) for r in rows], dtype=float)
        if np.isfinite(y).any():
            width = 1.8 if attr == "bond" else 1.0
            top.plot(x, y, marker="o", markersize=3, color=colour, linewidth=width, label=lab)
    rx = [r.number for r in rows if r.rupture and r.bond is not None]
    ry = [r.bond for r in rows if r.rupture and r.bond is not None]
    if rx:
        top.scatter(rx, ry, s=90, facecolors="none", edgecolors="#c0392b", linewidths=1.5, zorder=5,
                    label="Rupture flag")
    top.set_ylim(1, 5.3)
    top.set_ylabel("rating (1-5)")
    if narrow:
        top.legend(loc="lower left", bbox_to_anchor=(0.0, 1.02), ncol=3, fontsize=7, frameon=False,
                   borderaxespad=0.0)
    else:
        top.legend(loc="lower right", ncol=5, fontsize=7, frameon=False)
    top.grid(axis="y", linewidth=0.3, alpha=0.6)
    # A session without connection data draws no bar: "no data" is not zero minutes.
    dm = np.array([np.nan if r.disrupted_minutes is None else r.disrupted_minutes for r in rows], dtype=float)
    colours = ["#c0392b" if r.disrupted else "#95a5a6" for r in rows]
    bottom.bar(x, dm, color=colours, width=0.7)
    bottom.set_ylabel("disrupted min")
    bottom.set_xlabel("session")
    if len(rows):
        bottom.set_xticks(x)
        if narrow and len(rows) > 10:
            bottom.xaxis.set_major_locator(MaxNLocator(8, integer=True))
    if narrow:
        fig.subplots_adjust(left=0.15, right=0.97, top=0.86, bottom=0.11, hspace=0.12)
    else:
        fig.subplots_adjust(left=0.09, right=0.98, top=0.95, bottom=0.12, hspace=0.12)
    return to_svg(fig, title)


def _nudge(session_id: int) -> tuple[float, float]:
    """A fixed small offset per session (the same on every drawing)."""
    rng = np.random.default_rng(session_id)
    return float(rng.uniform(-JITTER_X, JITTER_X)), float(rng.uniform(-JITTER_Y, JITTER_Y))


def client_look(i: int) -> tuple[str, str]:
    return CLIENT_COLOURS[i % len(CLIENT_COLOURS)], CLIENT_MARKERS[(i // len(CLIENT_COLOURS)) % len(CLIENT_MARKERS)]


def scatter_svg(points: Sequence[Point], model: ModelResult | None, y_label: str, title: str,
                codes: dict[int, str] | None = None, narrow: bool = False) -> str:
    """Sessions as points (disrupted minutes against the rating), one colour
    and marker per client with a legend, nudged apart so that equal values
    stay visible, and the model's within-client slope through the grand mean
    with its 95% interval shaded."""
    fig = Figure(figsize=(4.0, 5.2) if narrow else (7.2, 4.2))
    ax = fig.subplots()
    clients = sorted({p.client_id for p in points})
    for i, c in enumerate(clients):
        mine = [p for p in points if p.client_id == c]
        nudges = [_nudge(p.session_id) for p in mine]
        colour, marker = client_look(i)
        ax.scatter([p.disruption + dx for p, (dx, _) in zip(mine, nudges, strict=True)],
                   [p.rating + dy for p, (_, dy) in zip(mine, nudges, strict=True)],
                   s=18, color=colour, marker=marker, alpha=0.9, linewidths=0.4, edgecolors="white",
                   label=(codes or {}).get(c, f"client {c}"))
    handles = []
    if points and model is not None and model.ok:
        w = model.coef("within")
        mx = float(np.mean([p.disruption for p in points]))
        my = float(np.mean([p.rating for p in points]))
        xs_line = np.linspace(0.0, max(max(p.disruption for p in points), 1.0), 50)
        lo = my + w.ci_low * (xs_line - mx)
        hi = my + w.ci_high * (xs_line - mx)
        band = ax.fill_between(xs_line, np.minimum(lo, hi), np.maximum(lo, hi), color="#c0392b", alpha=0.15,
                               linewidth=0, label="95% interval of the slope")
        (line,) = ax.plot(xs_line, my + w.estimate * (xs_line - mx), color="#c0392b", linewidth=1.6,
                          label=f"within-client slope {w.estimate * 10:+.2f} per 10 min")
        handles = [line, band]
    ax.set_xlabel("disrupted minutes in the session")
    ax.set_ylabel(y_label if not narrow else y_label.split(" (")[0])
    ax.set_ylim(0.8, 5.2)
    ax.grid(linewidth=0.3, alpha=0.6)
    client_handles = [h for h in ax.collections
                      if not str(h.get_label()).startswith("_") and h.get_label() != "95% interval of the slope"]
    if narrow:
        fig.legend(handles=handles + client_handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
        fig.subplots_adjust(left=0.14, right=0.97, top=0.98, bottom=0.36)
    else:
        ax.legend(handles=handles + client_handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7,
                  frameon=False)
        fig.subplots_adjust(left=0.09, right=0.70, top=0.97, bottom=0.12)
    return to_svg(fig, title)
