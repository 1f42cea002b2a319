"""``bondline instruments``: list, check, fhir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.cli import main
from server.surveys.instruments import BUILTIN_DIR


def test_check_passes_shipped_files_and_names_a_broken_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["instruments", "check", str(BUILTIN_DIR)]) == 0
    assert capsys.readouterr().out.count("ok  ") == 3
    bad = tmp_path / "mine.yaml"
    bad.write_text("schema: bondline.instrument/1\nid: mine\nversion: '1'\n")
    assert main(["instruments", "check", str(bad)]) == 1
    assert "mine.yaml: invalid instrument: title: Field required" in capsys.readouterr().out


def test_list_and_fhir(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["instruments", "list"]) == 0
    out = capsys.readouterr().out
    assert "wai-sr-client" in out and "default for the client: wai-sr-client, bondline-telehealth" in out
    assert main(["instruments", "fhir", "wai-sr-therapist", "--base", "https://b.test"]) == 0
    q = json.loads(capsys.readouterr().out)
    assert q["resourceType"] == "Questionnaire" and q["url"] == "https://b.test/api/v1/fhir/Questionnaire/wai-sr-therapist"
