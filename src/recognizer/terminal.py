"""Text laid out in terminal columns, for the commands that print tables."""

from __future__ import annotations

import unicodedata


def pad(text: str, width: int) -> str:
    """Left-align text in a terminal column, counting CJK characters as two cells."""
    cells = sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)
    return text + " " * max(width - cells, 0)
