"""docs/operations.md documents every setting the server reads."""

from pathlib import Path

from server.config import Settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    missing = [f"BONDLINE_{n.upper()}" for n in Settings.model_fields if f"BONDLINE_{n.upper()}" not in text]
    assert not missing, f"add these to docs/operations.md (python -m server.config prints the table): {missing}"
