"""The published numbers ship with the package and are matched to our models like with like."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from xrayutils import catalogue, chapters, evaluate, published
from xrayutils.protocol import TrainingProtocol


def test_published_results_ship_with_the_package():
    table = published.table()
    assert len(table) == 12
    assert len(published.table("coronahack")) == 9
    challenge = published.table("class-challenge")
    assert challenge["accuracy"].tolist() == [0.90, 0.75, 0.3611]


def test_each_modelling_chapter_finds_its_published_rows():
    assert published.chapter_rows(chapters.TASK1)["model"].str.contains("VGG16").all()
    assert len(published.chapter_rows(chapters.TASK2)) == 2 and len(published.chapter_rows(chapters.CORONAHACK)) == 9


def test_hard_label_auc_stands_beside_balanced_accuracy_not_roc_auc():
    rows = published.chapter_rows(chapters.CORONAHACK)
    assert published.comparable(rows, ["ResNet34", "VGG19"], "roc_auc") == {}
    assert published.comparable(rows, ["ResNet34", "VGG19"], "balanced_accuracy") == {"ResNet34": 0.9244, "VGG19": 0.9299}
    task2 = published.chapter_rows(chapters.TASK2)
    assert published.comparable(task2, ["VGG16", "AlexNet"], "accuracy") == {"VGG16": 0.75, "AlexNet": 0.3611}


def _cpu_protocol(**changes) -> TrainingProtocol:
    """Chapter 02's protocol as the published study ran it, then changed by ``changes``."""
    study = dict(study="class-challenge", image_size=224, batch_size=10, num_epochs=100, optimizer="adam", learning_rate=1e-4,
                 validation_fraction=0.2, seed=42)
    return TrainingProtocol(**{**study, **changes})


def test_a_published_accuracy_carries_its_own_wilson_interval():
    task2 = published.chapter_rows(chapters.TASK2)
    vgg16 = published.row(task2, chapters.TASK2, "VGG16")
    assert evaluate.interval(published.accuracy(vgg16)) == "0.750 [0.589, 0.862]"  # 27 of 36 images
    assert published.accuracy(published.row(task2, chapters.TASK2, "AlexNet"))["value"] == pytest.approx(13 / 36)


def test_like_for_like_only_when_every_setting_and_count_is_the_published_ones():
    alexnet = published.row(published.table(), chapters.TASK2, "AlexNet")
    same = published.unlike(alexnet, _cpu_protocol(), pretrained=False, n_train=270, n_test=36)
    assert same == [] and published.like_for_like(same) == "yes"


@pytest.mark.parametrize(("changes", "counts", "reason"), [
    ({"image_size": 128}, {}, "128 px here, 224 there"),
    ({"num_epochs": 10}, {}, "10 epochs here, 100 there"),
    ({"batch_size": 16}, {}, "16 batch here, 10 there"),
    ({"optimizer": "adamax"}, {}, "adamax at 0.0001 here, Adam at 0.0001 there"),
    ({"learning_rate": 1e-3}, {}, "adam at 0.001 here, Adam at 0.0001 there"),
    ({}, {"n_train": 320}, "320 training images here, 270 there"),
    ({}, {"n_test": 124}, "124 test images here, 36 there"),
])
def test_a_run_that_differs_from_the_published_one_in_any_setting_is_not_like_for_like(changes, counts, reason):
    alexnet = published.row(published.table(), chapters.TASK2, "AlexNet")
    reasons = published.unlike(alexnet, _cpu_protocol(**changes), pretrained=False, **{"n_train": 270, "n_test": 36, **counts})
    assert reasons == [reason] and published.like_for_like(reasons) == f"no: {reason}"


def test_the_cpu_builds_alexnet_says_every_way_it_differs():
    # chapter 02 under cpu: AlexNet at 128 px and 10 epochs, on the sample's 320 training and 124 test images
    protocol = _cpu_protocol(image_size=128, model_settings={"AlexNet": {"num_epochs": 10}})
    alexnet = published.row(published.table(), chapters.TASK2, "AlexNet")
    verdict = published.like_for_like(published.unlike(alexnet, protocol.for_model("AlexNet"), pretrained=False, n_train=320, n_test=124))
    assert verdict == ("no: 128 px here, 224 there; 10 epochs here, 100 there; 320 training images here, 270 there; "
                       "124 test images here, 36 there")
    vgg16 = published.row(published.table(), chapters.TASK2, "VGG16")
    assert "ImageNet weights there, random here" in published.unlike(vgg16, protocol, pretrained=False, n_train=320, n_test=124)


def test_the_comparison_table_and_the_settings_give_each_model_its_own():
    import pandas as pd

    from xrayutils.models import Weights

    protocol = _cpu_protocol(image_size=128, model_settings={"AlexNet": {"num_epochs": 10}})
    frames = {"train": pd.DataFrame(index=range(256)), "validation": pd.DataFrame(index=range(64)), "test": pd.DataFrame(index=range(124))}
    weights = {name: Weights(None, "random (no ImageNet weights)") for name in ("VGG16", "AlexNet")}
    cis = {"accuracy": {"value": 0.68, "low": 0.59, "high": 0.76}}
    rows = published.chapter_rows(chapters.TASK2)
    table = published.compare({"VGG16": cis, "AlexNet": cis}, rows, ["accuracy"], protocol=protocol, frames=frames,
                              weights=weights, source="this book").set_index(["model", "source"])
    assert table.loc[("AlexNet", "published (test)"), "accuracy"] == "0.361 [0.225, 0.524]"
    assert "10 epochs here, 100 there" in table.loc[("AlexNet", "published (test)"), "like for like"]
    assert "10 epochs" not in table.loc[("VGG16", "published (test)"), "like for like"]
    setup = published.setup_beside(rows, protocol, frames, weights)
    assert setup.loc["epochs"].tolist() == ["100", "VGG16 100, AlexNet 10"]
    assert setup.loc["image size"].tolist() == ["224", "128"]


def test_the_comparison_shows_only_the_metrics_the_study_reported():
    import pandas as pd

    from xrayutils.models import Weights

    frames = {"train": pd.DataFrame(index=range(256)), "validation": pd.DataFrame(index=range(64)), "test": pd.DataFrame(index=range(124))}
    ci = {"value": 0.68, "low": 0.59, "high": 0.76}
    table = published.compare({"AlexNet": {"accuracy": ci, "roc_auc": ci}}, published.chapter_rows(chapters.TASK2), ["accuracy", "roc_auc"],
                              protocol=_cpu_protocol(), frames=frames, weights={"AlexNet": Weights(None, "random")}, source="here")
    assert list(table.columns) == ["model", "source", "test images", "accuracy", "like for like"]  # the study gave no ROC AUC


def test_a_frozen_backbone_is_not_like_for_like_with_the_studys_fine_tuning_but_its_resnet34_may_be():
    rows = published.chapter_rows(chapters.CORONAHACK)
    frozen = TrainingProtocol(study="coronahack", image_size=150, batch_size=64, num_epochs=100, optimizer="adamax", learning_rate=1e-4,
                              validation_fraction=0.1, seed=42, fine_tune=False, resnet34_optimizer="adam")
    xception = published.row(rows, chapters.CORONAHACK, "Xception")
    assert published.unlike(xception, frozen, pretrained=True, n_train=5286, n_test=624) == [
        "frozen backbone (a linear probe) here, fine-tuned whole there"]
    assert published.unlike(xception, dataclasses.replace(frozen, fine_tune=True), pretrained=True, n_train=5286, n_test=624) == []
    resnet34 = published.row(rows, chapters.CORONAHACK, "ResNet34")  # trained whole from random weights there and here
    assert published.unlike(resnet34, frozen.for_model("ResNet34"), pretrained=False, n_train=5286, n_test=624) == []


def test_three_orders_stand_in_the_studys_order_with_imagenet_accuracy_from_keras_table():
    imagenet = published.imagenet_accuracy()
    assert set(imagenet.index) == set(catalogue.BACKBONES) and imagenet.loc["EfficientNetV2M", "imagenet_top1"] == pytest.approx(0.853)
    board = pd.DataFrame({"rank": [1, 2, "-"], "model": ["Xception", "ResNet34", "VGG19"], "roc_auc": ["0.9", "0.8", "0.5"],
                          "rank interval": ["1 to 2", "1 to 2", "–"]}).set_index("rank")
    table = published.orders(board, "roc_auc", chapters.CORONAHACK)
    assert list(table.index) == ["VGG19", "ResNet34", "Xception"]  # the study's order: accuracy 0.9455, 0.9343, 0.9135
    assert list(table["published rank"]) == [1, 2, 7]
    assert table.loc["ResNet34", "ImageNet top-1"] == "–" and table.loc["Xception", "ImageNet top-1"] == "0.790"
    assert table.loc["VGG19", "rank here"] == "-" and table.loc["Xception", "rank interval"] == "1 to 2"
