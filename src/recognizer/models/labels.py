"""Class names of a model, in one or more languages."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path


def normalize_language(tag: str) -> str:
    """Reduce a BCP 47 tag to its primary language subtag: "zh-CN" -> "zh", "EN_us" -> "en"."""
    return tag.strip().replace("_", "-").split("-", 1)[0].lower()


class Labels:
    """The names of a model's classes, one list per language, all of the same length.

    The first language is the model's fallback: a request for a language the model
    lacks gets these names, and the response says which language it got.
    """

    def __init__(self, names: Mapping[str, Sequence[str]]) -> None:
        if not names:
            raise ValueError("a model needs class names in at least one language")
        lengths = {language: len(values) for language, values in names.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"label lists differ in length: {lengths}")
        self._names = {normalize_language(lang): tuple(values) for lang, values in names.items()}

    @classmethod
    def from_tsv(cls, path: Path) -> Labels:
        """Read a tab-separated file whose header names the languages, one class per row."""
        with path.open(encoding="utf-8", newline="") as file:
            rows = list(csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE))
        header, body = rows[0], rows[1:]
        return cls({language: [row[i] for row in body] for i, language in enumerate(header)})

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self._names)

    def __len__(self) -> int:
        return len(next(iter(self._names.values())))

    def resolve(self, language: str) -> str:
        """The language a request for `language` is answered in: itself or the fallback."""
        return language if language in self._names else self.languages[0]

    def names(self, language: str) -> tuple[str, ...]:
        """All class names in `language`, which must be one of `languages`."""
        return self._names[language]
