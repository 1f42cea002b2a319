"""Tidy export for researchers: one row per session, summary figures and scores.

Column definitions: docs/reports.md ("Export"). Missing values are empty
cells in CSV and null in JSON, never zero.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from typing import Any

from server.analysis.attribution import SIDE_KEYS
from server.analysis.events import KINDS
from server.analysis.scores import label
from server.reports.views import CaseloadRow, CaseloadView, score_keys
from server.timeutil import to_iso

# Per-side disrupted minutes (docs/reports.md, "Export"): "client_side" and "clinician_side"
# may both count one minute; "between" and "undetermined" only minutes neither side accounts for.
SIDE_COLUMNS = {"client_side": "client", "clinician_side": "clinician", "between": "between",
                "undetermined": "undetermined"}
assert set(SIDE_COLUMNS.values()) == set(SIDE_KEYS)
BASE_COLUMNS = (
    "session_id", "client_code", "session_number", "started", "ended", "minutes", "disrupted_minutes",
    "disrupted_pct", *(f"disrupted_minutes_{k}" for k in SIDE_COLUMNS),
    *(f"events_{k}" for k in KINDS), "freeze_total_s", "rtt_median_ms", "rtt_p95_ms",
    "mos_median", "verdict",
)


def session_record(r: CaseloadRow, keys: list[str]) -> dict[str, Any]:
    s = r.quality.summary if r.quality is not None else None
    rec: dict[str, Any] = {
        "session_id": r.ref.id,
        "client_code": r.ref.client_code,
        "session_number": r.ref.number,
        "started": to_iso(r.ref.started_ms),
        "ended": to_iso(r.ref.ended_ms),
        "minutes": s.minutes if s else None,
        "disrupted_minutes": s.disrupted_minutes if s and s.minutes else None,
        "disrupted_pct": s.disrupted_pct if s else None,
    }
    sides = s.side_minutes if s and s.minutes else None
    for col, key in SIDE_COLUMNS.items():
        rec[f"disrupted_minutes_{col}"] = sides.get(key, 0) if sides is not None else None
    for k in KINDS:
        rec[f"events_{k}"] = s.events_by_kind.get(k, 0) if s and s.minutes else None
    rec.update({
        "freeze_total_s": s.freeze_total_s if s else None,
        "rtt_median_ms": s.rtt_median_ms if s else None,
        "rtt_p95_ms": s.rtt_p95_ms if s else None,
        "mos_median": s.mos_median if s else None,
        "verdict": s.verdict if s else None,
    })
    for key in keys:
        rec[key] = r.scores.values.get(key)
    return rec


def to_csv(rows: list[CaseloadRow]) -> str:
    keys = score_keys(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[*BASE_COLUMNS, *keys], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in session_record(r, keys).items()})
    return buf.getvalue()


def to_json(view: CaseloadView, generated_ms: int, config: dict[str, Any]) -> dict[str, Any]:
    keys = score_keys(view.rows)
    m = view.model
    return {
        "schema": "bondline.caseload-export/1",
        "generated": to_iso(generated_ms),
        "definitions": "docs/methodology.md and docs/reports.md",
        "analysis_config": config,
        "score_labels": {k: label(k) for k in keys},
        "sessions": [session_record(r, keys) for r in view.rows],
        "model": {
            "outcome": view.outcome,
            "ok": m.ok,
            "message": m.message,
            "n_sessions": m.n_sessions,
            "n_clients": m.n_clients,
            "client_sd": m.client_sd,
            "residual_sd": m.residual_sd,
            "coefficients": [asdict(c) for c in m.coefficients],
        },
        "model_split": None if view.split_model is None else {
            "ok": view.split_model.ok,
            "message": view.split_model.message,
            "n_sessions": view.split_model.n_sessions,
            "n_clients": view.split_model.n_clients,
            "coefficients": [asdict(c) for c in view.split_model.coefficients],
        },
        "correlations": [asdict(c) for c in view.correlations],
    }
