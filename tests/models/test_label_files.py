"""Label files in each layout models come with, found beside models, and every way to fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from recognizer.config.models import LabelFile
from recognizer.errors import ModelLoadError
from recognizer.models.label_files import discover_label_files, read_labels


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_one_name_per_line_in_the_language_of_the_suffix(tmp_path: Path) -> None:
    zh = write(tmp_path / "labels_zh.txt", "猫\n狗\r\n 鸟 \n\n")
    en = write(tmp_path / "labels_en-US.txt", "cat\ndog\nbird")
    labels = read_labels([LabelFile(zh), LabelFile(en)], num_classes=3, model="m")
    assert labels.languages == ("zh", "en")
    assert labels.names("zh") == ("猫", "狗", "鸟")
    assert labels.names("en") == ("cat", "dog", "bird")


def test_modelscope_files_give_the_second_column(tmp_path: Path) -> None:
    meta = write(tmp_path / "meta_info.txt", "\ufeff00000\t人物\n00001\t猫\textra\n")
    labels = read_labels([LabelFile(meta, "zh")], num_classes=2, model="m")
    assert labels.names("zh") == ("人物", "猫")


def test_the_project_tsv_names_its_languages_in_the_header(tmp_path: Path) -> None:
    tsv = write(tmp_path / "labels.tsv", "zh\ten\n猫\tcat\n狗\tdog\n")
    assert read_labels([LabelFile(tsv)], num_classes=2, model="m").languages == ("zh", "en")
    english = read_labels([LabelFile(tsv, "en")], num_classes=2, model="m")
    assert (english.languages, english.names("en")) == (("en",), ("cat", "dog"))


def test_label_files_beside_a_model_are_found_chinese_first(tmp_path: Path) -> None:
    for name in ("labels_en.txt", "labels_ja.txt", "labels_zh.txt", "labels.tsv", "notes.txt"):
        write(tmp_path / name, "x\n")
    assert discover_label_files(tmp_path) == (
        LabelFile(tmp_path / "labels.tsv"),
        LabelFile(tmp_path / "labels_zh.txt", "zh"),
        LabelFile(tmp_path / "labels_en.txt", "en"),
        LabelFile(tmp_path / "labels_ja.txt", "ja"),
    )


@pytest.mark.parametrize(
    ("name", "text", "language", "message"),
    [
        ("labels_zh.txt", "猫\n狗\n", None, "has 2 zh labels but m has 3 classes"),
        ("labels_zh.txt", "猫\n\n狗\n", None, "line 2 names no class"),
        ("labels_zh.txt", "", None, "is empty"),
        ("names.txt", "猫\n狗\n鱼\n", None, "cannot tell the language of"),
        ("meta_info.txt", "0\t猫\n1\n2\t鱼\n", "zh", "line 2 has no column 2"),
        ("labels.tsv", "猫\t狗\n", None, "first line must name the language"),
        ("labels.tsv", "zh\ten\n猫\tcat\n狗\tdog\n鱼\tfish\n", "ja", "has no ja column"),
    ],
)
def test_bad_label_files_are_start_up_errors_naming_the_file(
    tmp_path: Path, name: str, text: str, language: str | None, message: str
) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(ModelLoadError, match=name) as raised:
        read_labels([LabelFile(path, language)], num_classes=3, model="m")
    assert message in str(raised.value)


def test_missing_duplicate_and_undecodable_label_files(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"has no labels: put labels_<lang>\.txt"):
        read_labels([], num_classes=1, model="m")
    with pytest.raises(ModelLoadError, match="does not exist"):
        read_labels([LabelFile(tmp_path / "labels_zh.txt")], num_classes=1, model="m")
    zh = write(tmp_path / "labels_zh.txt", "猫\n")
    with pytest.raises(ModelLoadError, match="zh labels twice"):
        read_labels([LabelFile(zh), LabelFile(zh)], num_classes=1, model="m")
    gbk = tmp_path / "labels_en.txt"
    gbk.write_bytes("猫狗鸟\n".encode("gbk"))
    with pytest.raises(ModelLoadError, match="is not UTF-8"):
        read_labels([LabelFile(gbk)], num_classes=1, model="m")
