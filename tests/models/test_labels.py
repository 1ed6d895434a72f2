"""The label data: complete, unique, natural names in both languages."""

from __future__ import annotations

from pathlib import Path

import pytest
from torchvision.models import ResNet50_Weights

from recognizer.models.efficientnet_lite0 import imagenet_labels
from recognizer.models.labels import Labels, normalize_language


def test_all_1000_classes_have_unique_chinese_and_english_names() -> None:
    labels = imagenet_labels()
    assert labels.languages == ("zh", "en")
    assert len(labels) == 1000
    for language in labels.languages:
        names = labels.names(language)
        assert all(name.strip() == name and name for name in names)
        assert len(set(names)) == 1000


def test_english_names_follow_the_imagenet_class_order() -> None:
    assert list(imagenet_labels().names("en")) == ResNet50_Weights.IMAGENET1K_V1.meta["categories"]


@pytest.mark.parametrize(
    ("class_id", "chinese"),
    [(285, "埃及猫"), (967, "浓缩咖啡"), (665, "助力车"), (1, "金鱼"), (207, "金毛寻回犬")],
)
def test_chinese_names_are_the_natural_ones(class_id: int, chinese: str) -> None:
    assert imagenet_labels().names("zh")[class_id] == chinese


def test_chinese_names_are_chinese() -> None:
    latin_allowed = {"iPod", "T恤", "福特T型车"}  # the names Chinese speakers actually use
    for name in imagenet_labels().names("zh"):
        assert name in latin_allowed or not any("a" <= c.lower() <= "z" for c in name), name


@pytest.mark.parametrize(
    ("tag", "language"), [("zh", "zh"), ("zh-CN", "zh"), ("zh_Hans", "zh"), ("EN-us", "en")]
)
def test_language_tags_reduce_to_their_primary_subtag(tag: str, language: str) -> None:
    assert normalize_language(tag) == language


def test_a_missing_language_resolves_to_the_first(tmp_path: Path) -> None:
    path = tmp_path / "labels.tsv"
    path.write_text("zh\n猫\n狗\n", encoding="utf-8")
    labels = Labels.from_tsv(path)
    assert (labels.resolve("en"), labels.resolve("zh")) == ("zh", "zh")


def test_label_lists_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        Labels({"zh": ["猫"], "en": ["cat", "dog"]})
