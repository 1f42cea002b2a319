"""The house rules of pyproject.toml's [tool.importlinter] hold, and the
private-names contract they rely on really finds what it is for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.import_contracts import private_name_imports

ROOT = Path(__file__).resolve().parent.parent


def _package(tmp_path: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_private_name_from_another_package_is_found(on_path: Path) -> None:
    _package(on_path, {
        "houseA/__init__.py": "",
        "houseA/cli.py": "def _settings(): ...\ndef public(): ...\n",
        "houseA/inner/__init__.py": "",
        "houseA/inner/mod.py": "from houseA.cli import public, _settings\nfrom ..cli import _settings as s\n",
        "houseA/sibling.py": "from houseA.cli import _settings\nfrom .cli import _settings as again\n",
    })
    found = private_name_imports("houseA.inner.mod")
    assert [(line, source, name) for line, source, name in found] == [(1, "houseA.cli", "_settings"),
                                                                      (2, "houseA.cli", "_settings")]
    # A module of the same package may use its neighbour's private names.
    assert private_name_imports("houseA.sibling") == []


def test_the_project_keeps_every_import_contract() -> None:
    out = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "Contracts: 5 kept, 0 broken." in out.stdout
