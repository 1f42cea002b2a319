"""Caseload model: does a more disrupted session go with a lower rating?

    rating_ij = b0 + bW (d_ij - mean_j d) + bB mean_j d + bS session_ij + u_j + e_ij

with d the session's disrupted minutes, j the client, u_j a random intercept
per client (statsmodels MixedLM, REML). Splitting d into its within-client
deviation and the client's mean separates "this client rates disrupted
sessions lower" (bW) from "clients with worse connections rate lower" (bB);
only bW speaks to what a disruption does to a given relationship.
docs/methodology.md ("Caseload model") explains the choices and limits.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from server.config import AnalysisConfig


@dataclass(frozen=True)
class Point:
    session_id: int
    client_id: int
    number: int
    disruption: float
    rating: float
    # Disrupted minutes on the client's and on the clinician's connection
    # (server/analysis/attribution.py); None when the session was not attributed.
    client_side: float | None = None
    clinician_side: float | None = None


@dataclass
class Coefficient:
    name: str
    label: str
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p: float


@dataclass
class ModelResult:
    ok: bool
    n_sessions: int
    n_clients: int
    message: str
    coefficients: list[Coefficient] = field(default_factory=list)
    client_sd: float | None = None
    residual_sd: float | None = None
    converged: bool = True

    def coef(self, name: str) -> Coefficient:
        for c in self.coefficients:
            if c.name == name:
                return c
        raise KeyError(name)


@dataclass
class Correlation:
    key: str
    n: int
    r: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None
    message: str = ""


TERMS = (
    ("intercept", "Intercept (rating at 0 disrupted minutes, session 0)"),
    ("within", "Within client: per disrupted minute above the client's own average"),
    ("between", "Between clients: per minute of a client's average disruption"),
    ("session", "Per session number"),
)


def fit_model(points: list[Point], cfg: AnalysisConfig) -> ModelResult:
    n = len(points)
    clients = sorted({p.client_id for p in points})
    k = len(clients)
    if n < cfg.model_min_sessions or k < cfg.model_min_clients:
        return ModelResult(
            False, n, k,
            f"Not enough data for the model: {n} rated sessions from {k} clients; it needs at least "
            f"{cfg.model_min_sessions} sessions from {cfg.model_min_clients} clients.",
        )
    g = np.array([p.client_id for p in points])
    d = np.array([p.disruption for p in points], dtype=float)
    y = np.array([p.rating for p in points], dtype=float)
    s = np.array([p.number for p in points], dtype=float)
    _, inv = np.unique(g, return_inverse=True)
    means = np.bincount(inv, weights=d) / np.bincount(inv)
    between = means[inv]
    within = d - between
    if np.ptp(within) == 0:
        return ModelResult(False, n, k, "Not enough data for the model: disruption never varies within a client.")
    if np.ptp(between) == 0:
        # Every client has the same mean: the between term is not estimable.
        return ModelResult(False, n, k, "Not enough data for the model: clients do not differ in disruption.")
    exog = np.column_stack([np.ones(n), within, between, s])
    return _fit(y, exog, inv, TERMS, n, k)


# The split model: the within-client term of each side on its own (docs/methodology.md, "Caseload model").
SPLIT_TERMS = (
    ("intercept", "Intercept (rating at 0 disrupted minutes, session 0)"),
    ("within_client_side", "Within client: per minute on the client's connection above the client's own average"),
    ("within_clinician_side", "Within client: per minute on your connection above the client's own average"),
    ("between", "Between clients: per minute of a client's average disruption"),
    ("session", "Per session number"),
)


def fit_split_model(points: list[Point], cfg: AnalysisConfig) -> ModelResult:
    """The caseload model with the within-client term split by whose connection it was.

    Only sessions whose disruption was attributed take part. Minutes between
    the two (peer to peer) or undetermined stay in the between-clients term
    only: they belong to neither side."""
    pts = [p for p in points if p.client_side is not None and p.clinician_side is not None]
    n = len(pts)
    k = len({p.client_id for p in pts})
    if n < cfg.model_min_sessions or k < cfg.model_min_clients:
        return ModelResult(
            False, n, k,
            f"Not enough attributed sessions to split the model: {n} from {k} clients; it needs at least "
            f"{cfg.model_min_sessions} sessions from {cfg.model_min_clients} clients.",
        )
    g = np.array([p.client_id for p in pts])
    _, inv = np.unique(g, return_inverse=True)

    def within(v: np.ndarray) -> np.ndarray:
        return np.asarray(v - (np.bincount(inv, weights=v) / np.bincount(inv))[inv])

    c = within(np.array([p.client_side or 0.0 for p in pts], dtype=float))
    m = within(np.array([p.clinician_side or 0.0 for p in pts], dtype=float))
    d = np.array([p.disruption for p in pts], dtype=float)
    between = (np.bincount(inv, weights=d) / np.bincount(inv))[inv]
    for name, v in (("the client's connection", c), ("your connection", m)):
        if np.ptp(v) == 0:
            return ModelResult(False, n, k, f"Not enough data to split the model: disruption on {name} never "
                                            "varies within a client.")
    if np.ptp(between) == 0:
        return ModelResult(False, n, k, "Not enough data to split the model: clients do not differ in disruption.")
    y = np.array([p.rating for p in pts], dtype=float)
    s = np.array([p.number for p in pts], dtype=float)
    return _fit(y, np.column_stack([np.ones(n), c, m, between, s]), inv, SPLIT_TERMS, n, k)


def _fit(y: np.ndarray, exog: np.ndarray, inv: np.ndarray, terms: tuple[tuple[str, str], ...], n: int,
         k: int) -> ModelResult:
    # Imported here: statsmodels and scipy take seconds to import, and a
    # server that is never asked for a caseload should not pay that at start.
    from scipy import stats
    from statsmodels.regression.mixed_linear_model import MixedLM
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = MixedLM(y, exog, groups=inv)
        try:
            res = model.fit(reml=True)
        except (np.linalg.LinAlgError, ValueError) as e:
            return ModelResult(False, n, k, f"The model could not be fitted to these data ({e}).")
    converged = bool(getattr(res, "converged", True)) and not any(
        issubclass(w.category, ConvergenceWarning) for w in caught
    )
    params = np.asarray(res.fe_params, dtype=float)
    bse = np.asarray(res.bse_fe, dtype=float)
    zcrit = float(stats.norm.ppf(0.975))
    coefs = []
    for i, (name, lab) in enumerate(terms):
        est, se = float(params[i]), float(bse[i])
        p = float(2 * stats.norm.sf(abs(est / se))) if se > 0 and math.isfinite(se) else float("nan")
        coefs.append(Coefficient(name, lab, est, se, est - zcrit * se, est + zcrit * se, p))
    cov_re = float(np.asarray(res.cov_re).ravel()[0])
    msg = "Fitted." if converged else "Fitted, but the optimiser reported a convergence problem: read with care."
    return ModelResult(True, n, k, msg, coefs, math.sqrt(max(cov_re, 0.0)), math.sqrt(float(res.scale)), converged)


def correlation(key: str, x: list[float], y: list[float], cfg: AnalysisConfig) -> Correlation:
    """Pearson r with its 95% interval (Fisher z), pairs across sessions."""
    n = len(x)
    if n < cfg.corr_min_n:
        return Correlation(key, n, None, None, None, None, f"not enough data (n = {n}, needs {cfg.corr_min_n})")
    from scipy import stats

    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.ptp(xa) == 0 or np.ptp(ya) == 0:
        return Correlation(key, n, None, None, None, None, "no variation")
    res = stats.pearsonr(xa, ya)
    ci = res.confidence_interval(0.95)
    return Correlation(key, n, float(res.statistic), float(ci.low), float(ci.high), float(res.pvalue))
