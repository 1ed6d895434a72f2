"""Read class names from the label files models come with.

Three layouts, told apart by their content; in each, class i is on line i (of the body):

    one name per line           labels_zh.txt, labels_en.txt: the language is the name's
                                `labels_<lang>` suffix, unless given
    tab-separated, no header    ModelScope's meta_info.txt and label_mapping.txt: the name
                                is in the second column
    tab-separated, a header of  this project's TSV (always so for a .tsv file): the header
    language codes              names each column's language (zh, en, ...)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from recognizer.config.models import LabelFile
from recognizer.errors import ModelLoadError
from recognizer.models.labels import Labels, normalize_language

_LANGUAGE = r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]+)*"  # zh, en, zh-CN, zh-Hans
_LANGUAGE_CODE = re.compile(_LANGUAGE)
_SUFFIXED = re.compile(rf"(?:.+_)?labels_(?P<language>{_LANGUAGE})\.txt")
TSV = "labels.tsv"


def discover_label_files(directory: Path) -> tuple[LabelFile, ...]:
    """The label files beside a model: labels.tsv, then labels_<lang>.txt with Chinese first."""
    found = [LabelFile(directory / TSV)] if (directory / TSV).is_file() else []
    suffixed = sorted(
        (normalize_language(match["language"]), path)
        for path in directory.glob("labels_*.txt")
        if (match := _SUFFIXED.fullmatch(path.name))
    )
    suffixed.sort(key=lambda item: item[0] != "zh")  # stable: the rest stay alphabetical
    return (*found, *(LabelFile(path, language) for language, path in suffixed))


def read_labels(files: Sequence[LabelFile], *, num_classes: int, model: str) -> Labels:
    """Read and merge label files, each naming exactly `num_classes` classes.

    `model` names the model in error messages. The first language is the model's fallback.
    """
    if not files:
        raise ModelLoadError(
            f"{model} has no labels: put labels_<lang>.txt (one name per line) beside it,"
            " or name the files with labels.<lang>=FILE"
        )
    names: dict[str, list[str]] = {}
    for file in files:
        for language, values in _read(file).items():
            if len(values) != num_classes:
                raise ModelLoadError(
                    f"{file.path} has {len(values)} {language} labels but {model} has"
                    f" {num_classes} classes: give one name per class, in class order"
                )
            if language in names:
                raise ModelLoadError(f"{model} has {language} labels twice (again in {file.path})")
            names[language] = values
    return Labels(names)


def _read(file: LabelFile) -> dict[str, list[str]]:
    """The names in a label file, by language."""
    try:
        lines = file.path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError as error:
        raise ModelLoadError(f"label file {file.path} does not exist") from error
    except UnicodeDecodeError as error:
        raise ModelLoadError(f"label file {file.path} is not UTF-8 text") from error
    except OSError as error:
        raise ModelLoadError(f"cannot read label file {file.path}: {error.strerror}") from error
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ModelLoadError(f"label file {file.path} is empty")
    header = [cell.strip() for cell in lines[0].split("\t")]
    is_code = [bool(_LANGUAGE_CODE.fullmatch(cell)) for cell in header]
    if file.path.suffix == ".tsv" or (len(header) > 1 and all(is_code)):
        if not all(is_code):
            raise ModelLoadError(
                f"{file.path} is a TSV file, so its first line must name the language of each"
                " column (zh, en, ...), tab-separated"
            )
        return _read_tsv(file, header, lines[1:])
    language = _language_of(file)
    if "\t" in lines[0]:
        return {language: _names(file.path, _column(file.path, lines, 1))}
    return {language: _names(file.path, lines)}


def _read_tsv(file: LabelFile, header: list[str], body: list[str]) -> dict[str, list[str]]:
    columns = [_column(file.path, body, i, first=2) for i in range(len(header))]
    by_language = {
        normalize_language(language): _names(file.path, column, first=2)
        for language, column in zip(header, columns, strict=True)
    }
    if file.language is None:
        return by_language
    language = normalize_language(file.language)
    if language not in by_language:
        raise ModelLoadError(
            f"{file.path} has no {language} column; its header names {', '.join(by_language)}"
        )
    return {language: by_language[language]}


def _language_of(file: LabelFile) -> str:
    if file.language is not None:
        return normalize_language(file.language)
    match = _SUFFIXED.fullmatch(file.path.name)
    if match is None:
        raise ModelLoadError(
            f"cannot tell the language of {file.path}: name it labels_<lang>.txt, or give"
            " the language with labels.<lang>=FILE (labels.zh=..., labels.en=...)"
        )
    return normalize_language(match["language"])


def _column(path: Path, lines: Sequence[str], index: int, *, first: int = 1) -> list[str]:
    """Column `index` of tab-separated lines, each of which must have it."""
    cells = [line.split("\t") for line in lines]
    for number, row in enumerate(cells, start=first):
        if len(row) <= index:
            raise ModelLoadError(f"{path} line {number} has no column {index + 1}: {row[0]!r}")
    return [row[index] for row in cells]


def _names(path: Path, values: Sequence[str], *, first: int = 1) -> list[str]:
    """Stripped names, none of them empty; `first` is the line number of values[0]."""
    names = [value.strip() for value in values]
    if "" in names:
        raise ModelLoadError(f"{path} line {names.index('') + first} names no class")
    return names
