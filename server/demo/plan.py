"""The synthetic caseload: who, when, which disruptions, which ratings.

Everything here is drawn from one seeded NumPy generator, so a seed gives
the same caseload every time. The rating model is stated in full in
docs/reports.md ("Demo caseload") and in ``RatingModel``: the client's bond
falls by a known amount per disrupted minute, plus noise, so the caseload
model's estimate can be checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from server.analysis.summary import MINUTE_MS

KINDS = ("loss_burst", "latency_spike", "video_freeze", "audio_dropout", "reconnect")
KIND_WEIGHTS = (0.30, 0.15, 0.25, 0.20, 0.10)
# Seconds an episode of each kind lasts (uniform between the two).
DURATION_S = {
    "loss_burst": (10, 90),
    "latency_spike": (15, 120),
    "video_freeze": (3, 25),
    "audio_dropout": (2, 12),
    "reconnect": (8, 45),
}
WAI_BOND = ("3", "5", "7", "9")
WAI_GOAL = ("4", "6", "8", "11")
WAI_TASK = ("1", "2", "10", "12")
WEEK_MS = 7 * 86_400_000


@dataclass(frozen=True)
class RatingModel:
    """How the demo ratings are generated (per session i of client j):

    bond_latent = a_j + effect x D_ij + slope x number_ij + e_ij
    a_j ~ N(intercept_mean, intercept_sd), e_ij ~ N(0, residual_sd),
    D_ij = the session's disrupted minutes (from its planted episodes).
    Each WAI-SR bond item = latent + N(0, item_sd), rounded without bias
    (floor(x + U), U ~ Uniform(0, 1)) and kept within 1..5, so the expected
    item mean equals the latent wherever it lies within 1..5. Goal and task
    items follow the same model with half the disruption effect.
    """

    effect: float = -0.04
    slope: float = 0.02
    intercept_mean: float = 3.5
    intercept_sd: float = 0.35
    residual_sd: float = 0.25
    item_sd: float = 0.3
    rated_share: float = 0.92
    # A planted rupture: one client per clinician whose last session's bond
    # falls by this much below their usual, whatever its connection was; that
    # session is always rated, so the caseload page must flag the client.
    rupture_drop: float = 1.6
    ruptures_per_clinician: int = 1


@dataclass(frozen=True)
class Episode:
    kind: str
    side: str  # whose network: "client" | "clinician"
    start_s: int
    end_s: int  # exclusive
    level: float  # loss fraction, RTT ms or concealed ratio, by kind


@dataclass
class PlannedSession:
    number: int
    start_ms: int
    duration_s: int
    episodes: list[Episode]
    disrupted_minutes: int
    answers: dict[tuple[str, str], dict[str, int | None]] = field(default_factory=dict)
    submitted_ms: int = 0
    planted_rupture: bool = False


@dataclass
class PlannedClient:
    code: str
    quality: float  # expected episodes per session
    intercept: float
    sessions: list[PlannedSession]


@dataclass
class PlannedClinician:
    email: str
    display_name: str
    clients: list[PlannedClient]


def truth_minutes(episodes: list[Episode], duration_s: int) -> int:
    """Minutes of the session that overlap any planted episode."""
    n = int(np.ceil(duration_s * 1000 / MINUTE_MS))
    mask = np.zeros(n, dtype=bool)
    for e in episodes:
        a = e.start_s * 1000 // MINUTE_MS
        b = (e.end_s * 1000 - 1) // MINUTE_MS
        mask[max(a, 0) : min(b, n - 1) + 1] = True
    return int(mask.sum())


def _episodes(rng: np.random.Generator, expected: float, duration_s: int) -> list[Episode]:
    count = int(rng.poisson(expected))
    out: list[Episode] = []
    taken = np.zeros(duration_s + 1, dtype=bool)
    for _ in range(count * 3):  # a few tries to place each without overlap
        if len(out) >= count:
            break
        kind = str(rng.choice(KINDS, p=KIND_WEIGHTS))
        lo, hi = DURATION_S[kind]
        length = int(rng.integers(lo, hi + 1))
        # Keep clear of the first and last minute so each episode is whole; a
        # session too short for this episode gets none of its kind.
        latest = duration_s - 60 - length
        if latest <= 60:
            continue
        start = int(rng.integers(60, latest))
        end = start + length
        if taken[max(start - 15, 0) : end + 15].any():
            continue
        taken[start:end] = True
        side = "client" if rng.random() < 0.7 else "clinician"
        level = {
            "loss_burst": rng.uniform(0.03, 0.15),
            "latency_spike": rng.uniform(450, 900),
            "video_freeze": rng.uniform(0.15, 0.4),
            "audio_dropout": rng.uniform(0.35, 1.0),
            "reconnect": 1.0,
        }[kind]
        out.append(Episode(kind, side, start, end, float(level)))
    return sorted(out, key=lambda e: e.start_s)


def _items(rng: np.random.Generator, latent: float, ids: tuple[str, ...], sd: float) -> dict[str, int | None]:
    x = np.clip(latent, 1.0, 5.0) + rng.normal(0.0, sd, len(ids))
    vals = np.clip(np.floor(x + rng.random(len(ids))), 1, 5).astype(int)
    return {i: int(v) for i, v in zip(ids, vals, strict=True)}


def _scale(rng: np.random.Generator, mean: float, sd: float = 0.6) -> int:
    return int(np.clip(np.floor(mean + rng.normal(0, sd) + rng.random()), 1, 5))


def rate(rng: np.random.Generator, client: PlannedClient, s: PlannedSession, model: RatingModel) -> None:
    """Fill a session's answers from the rating model."""
    if rng.random() > model.rated_share and not s.planted_rupture:
        return
    d = s.disrupted_minutes
    base = client.intercept + model.slope * s.number
    bond = base + model.effect * d + rng.normal(0, model.residual_sd)
    if s.planted_rupture:
        bond -= model.rupture_drop
    goal = base + 0.1 + 0.5 * model.effect * d + rng.normal(0, model.residual_sd)
    task = base + 0.05 + 0.5 * model.effect * d + rng.normal(0, model.residual_sd)
    wai: dict[str, int | None] = {}
    wai.update(_items(rng, bond, WAI_BOND, model.item_sd))
    wai.update(_items(rng, goal, WAI_GOAL, model.item_sd))
    wai.update(_items(rng, task, WAI_TASK, model.item_sd))
    s.answers[("client", "wai-sr-client")] = dict(sorted(wai.items(), key=lambda kv: int(kv[0])))
    reconnects = sum(1 for e in s.episodes if e.kind == "reconnect")
    s.answers[("client", "bondline-telehealth")] = {
        "tech_interfered": _scale(rng, 1.0 + d / 4),
        "felt_heard_seen": _scale(rng, 4.4 - d / 15),
        "session_changed": _scale(rng, 1.0 + 0.8 * reconnects),
        "hard_to_talk": _scale(rng, 1.5 + d / 8),
    }
    if rng.random() < 0.9:
        t_latent = base + 0.2 + 0.5 * model.effect * d + rng.normal(0, model.residual_sd)
        s.answers[("therapist", "wai-sr-therapist")] = {
            str(i): v for i, v in enumerate(_items(rng, t_latent, tuple(str(k) for k in range(1, 13)),
                                                    model.item_sd).values(), start=1)
        }
    s.submitted_ms = s.start_ms + s.duration_s * 1000 + int(rng.integers(5, 240)) * 60_000


def plan_caseload(
    seed: int,
    *,
    clinicians: int = 3,
    clients_per_clinician: int = 4,
    sessions: tuple[int, int] = (6, 20),
    duration_s: tuple[int, int] = (45 * 60, 50 * 60),
    model: RatingModel | None = None,
    now_ms: int = 1_790_000_000_000,
) -> list[PlannedClinician]:
    model = model or RatingModel()
    rng = np.random.default_rng(seed)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out: list[PlannedClinician] = []
    code = 0
    # Drawn apart from the main stream, so planting ruptures leaves every other draw as it was.
    planting = np.random.default_rng([seed, 7])
    for c in range(clinicians):
        ruptured = set(planting.choice(clients_per_clinician, min(model.ruptures_per_clinician, clients_per_clinician),
                                       replace=False).tolist())
        name = f"Demo clinician {letters[c % 26]}{'' if c < 26 else c // 26}"
        email = f"demo.clinician.{letters[c % 26].lower()}{'' if c < 26 else c // 26}@example.org"
        clients: list[PlannedClient] = []
        for j in range(clients_per_clinician):
            code += 1
            quality = float(rng.lognormal(np.log(1.6), 0.6))
            client = PlannedClient(f"DEMO-{code:03d}", quality, float(rng.normal(model.intercept_mean,
                                                                                   model.intercept_sd)), [])
            count = int(rng.integers(sessions[0], sessions[1] + 1))
            hour = int(rng.integers(9, 17))
            first = now_ms - (count + 1) * WEEK_MS
            first -= first % 86_400_000 - hour * 3_600_000
            for k in range(count):
                dur = int(rng.integers(duration_s[0], duration_s[1] + 1))
                # Some weeks the connection is much worse than this client's usual.
                expected = quality * float(rng.gamma(2.0, 0.5))
                eps = _episodes(rng, expected, dur)
                s = PlannedSession(k + 1, first + k * WEEK_MS + int(rng.integers(-3, 4)) * 60_000, dur, eps,
                                   truth_minutes(eps, dur), planted_rupture=j in ruptured and k == count - 1 and k > 0)
                rate(rng, client, s, model)
                client.sessions.append(s)
            clients.append(client)
        out.append(PlannedClinician(email, name, clients))
    return out
