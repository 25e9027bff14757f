"""Sentences built from results: grammar for every count, and a direction that follows the numbers."""

import pytest

from xrayutils import prose


def ci(value, low, high):
    return {"value": value, "low": low, "high": high}


@pytest.mark.parametrize(("n", "expected"), [(0, "no model"), (1, "1 model"), (2, "2 models"), (11, "11 models")])
def test_counts_take_the_number_they_need(n, expected):
    assert prose.count(n, "model") == expected


def test_lists_read_as_a_person_writes_them():
    assert prose.join([]) == "none"
    assert prose.join(["VGG16"]) == "VGG16"
    assert prose.join(["VGG16", "AlexNet", "ResNet34"]) == "VGG16, AlexNet and ResNet34"
    assert prose.join([], empty="no model") == "no model"


def test_a_sentence_starts_with_a_capital_and_ends_with_one_full_stop():
    assert prose.sentence("the task-1 VGG16 calls 87 of 100") == "The task-1 VGG16 calls 87 of 100."
    assert prose.sentence("done.") == "Done."
    assert prose.sentence("  ") == ""


def test_two_models_order_kept_reversed_or_not_told_apart():
    ahead = {"AlexNet": {"accuracy": ci(0.71, 0.62, 0.79)}, "VGG16": {"accuracy": ci(0.61, 0.52, 0.70)}}
    assert "the reverse of the published order" in prose.order_against_published(ahead, {"AlexNet": 0.36, "VGG16": 0.75}, differ=True)
    assert "as published" in prose.order_against_published(ahead, {"AlexNet": 0.75, "VGG16": 0.36}, differ=True)
    close = prose.order_against_published(ahead, {"AlexNet": 0.36, "VGG16": 0.75})  # the intervals overlap
    assert "not told apart" in close and "VGG16 ahead" in close
    assert "a model is missing" in prose.order_against_published({"VGG16": ahead["VGG16"]}, {"AlexNet": 0.36, "VGG16": 0.75})


@pytest.mark.parametrize(("external", "word"), [(ci(0.33, 0.23, 0.46), "falls from"), (ci(0.95, 0.90, 0.98), "rises from"),
                                                 (ci(0.55, 0.40, 0.70), "no clear change")])
def test_external_data_drop_rise_or_no_change(external, word):
    assert word in prose.external_change("AlexNet (02)", "normal recall", ci(0.61, 0.44, 0.76), external)


@pytest.mark.parametrize(("accuracy", "word"), [(ci(0.473, 0.43, 0.51), "has not learned the task"),
                                                 (ci(0.66, 0.60, 0.72), "not shown to beat"),
                                                 (ci(0.85, 0.80, 0.89), "is above")])
def test_against_the_constant_answer(accuracy, word):
    assert word in prose.against_constant("ResNet34", accuracy, 0.625, "pneumonia")


@pytest.mark.parametrize(("diff", "word"), [(ci(0.132, -0.037, 0.302), "no difference in accuracy detected"),
                                             (ci(0.10, 0.02, 0.18), "accuracy higher by"),
                                             (ci(-0.10, -0.18, -0.02), "accuracy lower by")])
def test_a_difference_is_detected_only_when_its_interval_excludes_zero(diff, word):
    text = prose.difference("accuracy", diff)
    assert text.startswith(word) and "matches" not in text


def test_settings_that_differ_are_named_with_the_published_value():
    assert prose.settings_differ(image_size=(128, 224), num_epochs=(10, 100), batch_size=(10, 10)) == [
        "image size 128 (published 224)", "num epochs 10 (published 100)"]
