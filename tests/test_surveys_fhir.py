"""FHIR R4 export, validated with the fhir.resources models (R4B package:
R4B left Questionnaire and QuestionnaireResponse as they were in R4)."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from server.surveys import fhir
from server.surveys.instruments import load_registry
from server.surveys.ratings import RatingRecord
from server.surveys.scoring import score

BASE = "https://bondline.test"
REG = load_registry(None, {})


@pytest.mark.parametrize("instrument_id", [i.id for i in REG.all()])
def test_every_instrument_exports_as_a_valid_questionnaire(instrument_id: str) -> None:
    inst = REG.get(instrument_id)
    res = fhir.questionnaire(inst, BASE)
    q = Questionnaire.model_validate(res)
    assert q.status == "active" and q.version == inst.version and q.url.endswith(f"/Questionnaire/{inst.id}")
    questions = [i for i in q.item if i.type == "choice"]
    assert [i.linkId for i in questions] == [i.id for i in inst.items]
    for fi, item in zip(questions, inst.items, strict=True):
        assert fi.text == item.text
        codes = [o.valueCoding.code for o in fi.answerOption]
        assert codes == [str(c.value) for c in inst.scale_of(item)]
        ordinals = [o.valueCoding.extension[0].valueDecimal for o in fi.answerOption]
        assert [float(x) for x in ordinals] == [float(c.value) for c in inst.scale_of(item)]
    link_ids = [i.linkId for i in q.item] + [i.linkId for i in q.item if i.item for i in i.item]
    assert len(link_ids) == len(set(link_ids)), "linkIds must be unique"
    assert inst.permission in (q.copyright or "")


def _rating(instrument_id: str, answers: dict[str, int | None], respondent: str = "client") -> RatingRecord:
    inst = REG.get(instrument_id)
    s = score(inst, answers)
    return RatingRecord(
        id=17, session_id=5, respondent=respondent, instrument_id=inst.id, instrument_version=inst.version,
        answers={i.id: answers.get(i.id) for i in inst.items}, total=s.total, mean=s.mean,
        subscales=s.subscales_json(), submitted_ms=1_700_000_000_000,
    )


def test_response_carries_answers_and_scores() -> None:
    answers: dict[str, int | None] = {str(n): 5 for n in range(1, 13)}
    answers["7"] = None
    rating = _rating("wai-sr-client", answers)
    res = fhir.questionnaire_response(rating, REG.get("wai-sr-client"), BASE, clinician_id=3, client_code="C-9")
    qr = QuestionnaireResponse.model_validate(res)
    assert qr.status == "completed" and qr.questionnaire == f"{BASE}/api/v1/fhir/Questionnaire/wai-sr-client|1.0"
    answered = [i for i in qr.item if i.linkId != "scores"]
    assert [i.linkId for i in answered] == [str(n) for n in range(1, 13) if n != 7]
    assert answered[0].answer[0].valueCoding.code == "5" and answered[0].answer[0].valueCoding.display == "Always"
    scores = {i.linkId: float(i.answer[0].valueDecimal) for i in next(x for x in qr.item if x.linkId == "scores").item}
    assert scores["score-total"] == 60.0 and scores["score-mean"] == 5.0
    assert scores["score-bond-sum"] == 20.0 and scores["score-goal-mean"] == 5.0
    assert qr.subject.identifier.value == "C-9" and qr.source.identifier.value == "C-9"
    assert qr.authored is not None


def test_therapist_response_names_the_clinician_as_author() -> None:
    rating = _rating("wai-sr-therapist", {str(n): 3 for n in range(1, 13)}, respondent="therapist")
    res = fhir.questionnaire_response(rating, REG.get("wai-sr-therapist"), BASE, clinician_id=3, client_code="C-9")
    qr = QuestionnaireResponse.model_validate(res)
    assert qr.author.identifier.value == "3"


def test_response_without_its_instrument_file_still_validates() -> None:
    rating = _rating("bondline-telehealth", {"tech_interfered": 4, "felt_heard_seen": 2, "session_changed": 1})
    res = fhir.questionnaire_response(rating, None, BASE, clinician_id=1, client_code="X")
    QuestionnaireResponse.model_validate(res)
    codes = {i["linkId"]: i["answer"][0]["valueCoding"]["code"] for i in res["item"] if i["linkId"] != "scores"}
    assert codes == {"tech_interfered": "4", "felt_heard_seen": "2", "session_changed": "1"}


def test_the_validator_is_not_vacuous() -> None:
    res = fhir.questionnaire(REG.get("wai-sr-client"), BASE)
    del res["item"][1]["linkId"]
    with pytest.raises(ValueError):
        Questionnaire.model_validate(res)
    bad = {"resourceType": "QuestionnaireResponse", "status": "completed", "item": [{"answer": [{}]}]}
    with pytest.raises(ValueError):
        QuestionnaireResponse.model_validate(bad)
