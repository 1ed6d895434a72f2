"""Terminal columns: CJK characters take two cells."""

from recognizer.terminal import pad


def test_pad_counts_wide_characters_as_two_cells() -> None:
    assert pad("red", 6) == "red   "
    assert pad("浓缩咖啡", 10) == "浓缩咖啡  "
    assert pad("too long", 3) == "too long"
