"""The settings schema: every setting documented where users look for it."""

from __future__ import annotations

import re
from pathlib import Path

from recognizer.config.schema import SECTIONS
from recognizer.config.sources import flag

CONFIGURATION = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_the_configuration_page_lists_every_setting_and_no_other() -> None:
    table = CONFIGURATION.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(--[a-z0-9-]+)` \|", table, flags=re.MULTILINE))
    declared = {flag(key) for section in SECTIONS for key in section.model_fields}
    assert documented - {"--config", "--model"} == declared
