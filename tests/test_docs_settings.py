"""docs/operations.md documents every setting Bondline reads, all four groups."""

import os
import re
import subprocess
import sys
from pathlib import Path

from server.config import DemoSettings, ProbeSettings, Settings, setting_variables, settings_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
BLOCK = re.compile(r"<!-- settings:begin[^>]*-->\n(.*?)<!-- settings:end -->", re.S)


def test_settings_section_is_the_generated_table() -> None:
    match = BLOCK.search(DOC.read_text())
    assert match, "docs/operations.md lost its settings markers"
    assert match.group(1) == settings_markdown(), (
        "docs/operations.md's settings differ from the code: paste the output of `python -m server.config` "
        "between the settings markers"
    )


def test_every_group_is_in_the_table() -> None:
    variables = setting_variables()
    assert len(variables) == len(set(variables)), "two settings read the same variable"
    from server.config import AnalysisConfig

    for cls, prefix in ((Settings, "BONDLINE_"), (ProbeSettings, "BONDLINE_PROBE_"), (DemoSettings, "BONDLINE_"),
                        (AnalysisConfig, "BONDLINE_ANALYSIS_")):
        for name in cls.model_fields:
            if cls is Settings and name in ("probe", "demo", "analysis"):
                continue
            assert f"{prefix}{name.upper()}" in variables


def test_each_table_variable_is_read_from_the_environment() -> None:
    """Setting a variable of the table changes what Settings() holds: the
    table names what the code really reads, in every group."""
    probe = {"BONDLINE_PROBE_MAX_FPS": "12", "BONDLINE_DEMO_CALL": "off", "BONDLINE_ANALYSIS_RTT_MS": "333",
             "BONDLINE_RATE_BURST": "7"}
    code = ("from server.config import Settings; s = Settings(); "
            "print(s.probe.max_fps, s.demo.demo_call, s.analysis.rtt_ms, s.rate_burst)")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **probe}, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["12.0", "off", "333.0", "7"]
