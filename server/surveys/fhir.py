"""HL7 FHIR R4 export: instruments as Questionnaire, ratings as
QuestionnaireResponse (docs/surveys.md, "FHIR export").

Each resource is checked with the ``fhir.resources`` R4B models before it
leaves (R4B did not change these two resources from R4). Scale answers are
``choice`` items with Codings whose code is the scale value, and carry the
R4 ``ordinalValue`` extension so a receiver can score them; Bondline's
scores travel as read-only decimal items in a ``scores`` group.
"""

from __future__ import annotations

import re
from typing import Any

from server.surveys.instruments import Instrument
from server.surveys.ratings import RatingRecord
from server.timeutil import to_iso

ORDINAL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
SCORES = "scores"


def questionnaire_url(base: str, instrument_id: str) -> str:
    return f"{base}/api/v1/fhir/Questionnaire/{instrument_id}"


def _scale_system(base: str, inst: Instrument, scale: str) -> str:
    return f"{questionnaire_url(base, inst.id)}/scale/{scale}"


def _score_items(inst: Instrument) -> list[tuple[str, str]]:
    """(linkId, text) of each score a response of this instrument carries."""
    out = [("score-total", f"{inst.short_title} total (sum)"), ("score-mean", f"{inst.short_title} mean")]
    for sub in inst.subscales:
        out.append((f"score-{sub.id}-sum", f"{sub.title} (sum)"))
        out.append((f"score-{sub.id}-mean", f"{sub.title} (mean)"))
    return out


def questionnaire(inst: Instrument, base: str) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"linkId": "instructions", "type": "display", "text": inst.instructions},
    ]
    for n, item in enumerate(inst.items, start=1):
        scale = item.scale or inst.default_scale
        items.append(
            {
                "linkId": item.id,
                "prefix": f"{n}.",
                "text": item.text,
                "type": "choice",
                "required": False,
                "answerOption": [
                    {
                        "valueCoding": {
                            "system": _scale_system(base, inst, scale),
                            "code": str(c.value),
                            "display": c.label,
                            "extension": [{"url": ORDINAL, "valueDecimal": c.value}],
                        }
                    }
                    for c in inst.scale_of(item)
                ],
            }
        )
    items.append(
        {
            "linkId": SCORES,
            "type": "group",
            "text": "Scores calculated by Bondline",
            "readOnly": True,
            "item": [
                {"linkId": link_id, "text": text, "type": "decimal", "readOnly": True}
                for link_id, text in _score_items(inst)
            ],
        }
    )
    name = re.sub(r"[^A-Za-z0-9]+", "_", inst.id).strip("_").upper()
    if not name[:1].isalpha():
        name = "Q_" + name  # FHIR wants a computable name starting with a letter
    resource: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": inst.id,
        "url": questionnaire_url(base, inst.id),
        "version": inst.version,
        "name": name,
        "title": inst.title,
        "status": "active",
        "subjectType": ["Patient"],
        "description": f"{inst.description}\n\nCitation: {inst.citation}",
        "copyright": inst.permission,
        "code": [{"system": f"{base}/api/v1/instruments", "code": inst.id, "display": inst.short_title}],
        "item": items,
    }
    # imported on the first export: the FHIR models take a tenth of a second or more to load,
    # which a server (or command) that never exports need not pay at start-up
    from fhir.resources.R4B.questionnaire import Questionnaire

    Questionnaire.model_validate(resource)
    return resource


def questionnaire_response(
    rating: RatingRecord,
    inst: Instrument | None,
    base: str,
    *,
    clinician_id: int,
    client_code: str,
) -> dict[str, Any]:
    """One rating as a QuestionnaireResponse. ``inst`` (None if its file was
    removed since) supplies item texts and answer labels."""
    items: list[dict[str, Any]] = []
    for item_id, value in rating.answers.items():
        if value is None:
            continue
        coding: dict[str, Any] = {"code": str(value)}
        entry: dict[str, Any] = {"linkId": item_id}
        if inst is not None:
            try:
                item = inst.item(item_id)
            except KeyError:
                item = None
            if item is not None:
                entry["text"] = item.text
                scale = item.scale or inst.default_scale
                coding["system"] = _scale_system(base, inst, scale)
                labels = {c.value: c.label for c in inst.scale_of(item)}
                if value in labels:
                    coding["display"] = labels[value]
        coding["extension"] = [{"url": ORDINAL, "valueDecimal": value}]
        entry["answer"] = [{"valueCoding": coding}]
        items.append(entry)
    scores: list[dict[str, Any]] = []
    values: dict[str, float | None] = {"score-total": rating.total, "score-mean": rating.mean}
    for sub_id, part in rating.subscales.items():
        values[f"score-{sub_id}-sum"] = part.get("sum")
        values[f"score-{sub_id}-mean"] = part.get("mean")
    for link_id, v in values.items():
        if v is not None:
            scores.append({"linkId": link_id, "answer": [{"valueDecimal": round(float(v), 6)}]})
    if scores:
        items.append({"linkId": SCORES, "item": scores})
    patient = {"identifier": {"system": f"{base}/clinicians/{clinician_id}/clients", "value": client_code}}
    resource: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": str(rating.id),
        "identifier": {"system": f"{base}/api/v1/ratings", "value": str(rating.id)},
        "questionnaire": f"{questionnaire_url(base, rating.instrument_id)}|{rating.instrument_version}",
        "status": "completed",
        "subject": patient,
        "encounter": {"identifier": {"system": f"{base}/sessions", "value": str(rating.session_id)}},
        "authored": to_iso(rating.submitted_ms),
        "item": items,
    }
    if rating.respondent == "client":
        resource["source"] = patient
    else:
        resource["author"] = {"identifier": {"system": f"{base}/clinicians", "value": str(clinician_id)}}
        resource["source"] = resource["author"]
    from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

    QuestionnaireResponse.model_validate(resource)
    return resource
