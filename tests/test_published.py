"""The published numbers ship with the package and are matched to our models like with like."""

from __future__ import annotations

from xrayutils import published, results


def test_published_results_ship_with_the_package():
    table = published.table()
    assert len(table) == 12
    assert len(published.table("coronahack")) == 9
    challenge = published.table("class-challenge")
    assert challenge["accuracy"].tolist() == [0.90, 0.75, 0.3611]


def test_each_modelling_chapter_finds_its_published_rows():
    assert published.chapter_rows(results.TASK1)["model"].str.contains("VGG16").all()
    assert len(published.chapter_rows(results.TASK2)) == 2 and len(published.chapter_rows(results.CORONAHACK)) == 9


def test_hard_label_auc_stands_beside_balanced_accuracy_not_roc_auc():
    rows = published.chapter_rows(results.CORONAHACK)
    assert published.comparable(rows, ["ResNet34", "VGG19"], "roc_auc") == {}
    assert published.comparable(rows, ["ResNet34", "VGG19"], "balanced_accuracy") == {"ResNet34": 0.9244, "VGG19": 0.9299}
    task2 = published.chapter_rows(results.TASK2)
    assert published.comparable(task2, ["VGG16", "AlexNet"], "accuracy") == {"VGG16": 0.75, "AlexNet": 0.3611}
