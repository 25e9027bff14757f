"""The within-collection test: who is in it, the patient-grouped folds, both methods, the verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xrayutils import datasets, models, within
from xrayutils.protocol import TrainingProtocol

from .conftest import save_image, synthetic_xray


def _collection(tmp_path, patients=12, per_patient=2):
    """A collection in the upstream layout: ``patients`` COVID-19 and as many others, ``per_patient`` frontal images each,
    one lateral COVID-19 image, and one COVID-19 patient aged 10."""
    folder = tmp_path / datasets.ADULTS
    rows, seed = [], 0
    for finding in ("COVID-19", "No Finding"):
        for p in range(patients):
            for i in range(per_patient):
                seed += 1
                name = f"{finding[:5].strip()}-{p}-{i}.jpg"
                image = synthetic_xray(seed, size=(40, 40))
                if finding == "COVID-19":
                    image = np.clip(image.astype(int) + 60, 0, 255).astype(np.uint8)  # brighter: a source a thumbnail can read
                save_image(folder / "images" / name, image)
                age = "10" if finding == "COVID-19" and p == 0 else str(30 + p)
                rows.append((f"{finding[:1]}{p}", age, "F", finding, "PA", name))
    save_image(folder / "images" / "lateral.jpg", synthetic_xray(999, size=(40, 40)))
    rows.append(("C1", "31", "F", "COVID-19", "L", "lateral.jpg"))
    frame = pd.DataFrame(rows, columns=["patientid", "age", "sex", "finding", "view", "filename"]).assign(modality="X-ray")
    frame.to_csv(folder / "metadata.csv", index=False)
    return datasets.load(datasets.ADULTS, task=within.TASK, root=folder)


def test_adult_images_leave_out_laterals_and_children_and_count_them(tmp_path):
    frame, counts = within.adult_images(_collection(tmp_path), min_age=18)
    assert counts["lateral"] == 1 and counts["younger"] == 2  # patient C0's two images, aged 10
    assert counts["covid"] == 22 and counts["other"] == 24 and counts["patients"] == 23
    assert (frame["view"] == "frontal").all() and (frame["age"] >= 18).all()
    with pytest.raises(ValueError, match="task='covid'"):
        within.adult_images(datasets.load(datasets.ADULTS, root=tmp_path / datasets.ADULTS), min_age=18)


@pytest.mark.parametrize("seed", [0, 1, 7, 42])
def test_no_patient_is_on_both_sides_of_a_fold_whatever_the_seed(tmp_path, seed):
    frame, _ = within.adult_images(_collection(tmp_path), min_age=0)
    fold = within.grouped_folds(frame, folds=5, seed=seed)
    assert set(fold) == set(range(5))
    assert (frame.assign(fold=fold).groupby("patient_id")["fold"].nunique() == 1).all()
    assert all(set(frame.loc[fold == k, "label"]) == {0, 1} for k in range(5))  # every fold is scored with both classes
    held = within.grouped_validation(frame, 0.25, seed)
    assert not set(frame.loc[held, "patient_id"]) & set(frame.loc[~held, "patient_id"])


def test_fewer_folds_when_a_class_has_few_patients(tmp_path):
    frame, _ = within.adult_images(_collection(tmp_path, patients=3), min_age=0)
    assert len(set(within.grouped_folds(frame, folds=5, seed=0))) == 3
    with pytest.raises(ValueError, match="at least two patients"):
        within.grouped_folds(frame[frame["patient_id"].isin(frame["patient_id"].iloc[[0, -1]])], folds=5, seed=0)


def test_a_class_with_one_patient_is_named_instead_of_failing_the_chapter(tmp_path):
    frame, _ = within.adult_images(_collection(tmp_path, patients=3), min_age=0)
    assert within.untestable(frame) is None
    first = frame.loc[frame["class_name"] == "covid", "patient_id"].iloc[0]
    one_covid = frame[(frame["class_name"] == "other") | (frame["patient_id"] == first)]
    assert within.untestable(one_covid) == "1 patient in class covid; the test needs at least 2 in each"
    assert within.untestable(frame[frame["class_name"] == "other"]).startswith("no patient in class covid")


def test_both_methods_score_every_image_out_of_fold(tmp_path):
    frame, _ = within.adult_images(_collection(tmp_path), min_age=18)
    fold = within.grouped_folds(frame, folds=3, seed=0)
    thumbnails = within.thumbnail_out_of_fold(frame, fold, thumbnail=8)
    baseline = within.scores(frame, {0: thumbnails}, n_resamples=20, seed=0)
    assert baseline["metrics"]["roc_auc"]["value"] > 0.9  # the brighter class is read from 8x8 grey pixels
    recipe = TrainingProtocol(study="class-challenge", image_size=32, batch_size=8, num_epochs=2, optimizer="adam", learning_rate=1e-3,
                              validation_fraction=0.2, seed=3, weights="none", cache_features=True, augmented_views=2, seeds=(1, 2))
    by_seed, ran = within.vgg16_out_of_fold(frame, fold, recipe, models.resolve_weights(recipe.weights))
    assert sorted(by_seed) == [1, 2] and all(np.isfinite(p).all() and p.shape == (len(frame),) for p in by_seed.values())
    assert not np.allclose(by_seed[1], by_seed[2])  # a seed changes the head's initial weights
    assert ran["views"] == 2 and not ran["pretrained"]
    scored = within.scores(frame, by_seed, n_resamples=20, seed=0)
    assert set(scored["metrics"]) == set(within.METRICS) and scored["spread"]["roc_auc"]["n"] == 2
    assert "one seed alone: ROC AUC" in within.metrics_text(scored)
    task1 = {"roc_auc": scored["metrics"]["roc_auc"], "recall_normal": {"value": 0.9, "low": 0.8, "high": 0.95}}
    table = within.table({"VGG16": scored}, task1, "task 1")
    assert list(table.index) == ["VGG16", "task 1"] and table.loc["task 1", "sensitivity"] == "–"
    assert table.loc["task 1", "specificity"] == "0.900 [0.800, 0.950]"


def _ci(value, low, high):
    return {"value": value, "low": low, "high": high}


def test_the_verdict_says_lower_than_task_1_or_no_clear_difference_and_where_chance_is():
    headline = _ci(0.99, 0.97, 1.0)
    lower = within.verdict("VGG16", _ci(0.75, 0.68, 0.82), headline)
    assert "above chance, and lower than task 1's 0.99 [0.97, 1.00]" in lower and "not from COVID-19" in lower
    same = within.verdict("VGG16", _ci(0.96, 0.91, 0.99), headline)
    assert "no difference from task 1's 0.99 [0.97, 1.00]" in same and "above chance" in same
    assert "(difference -0.030 [-0.081, +0.006])" in same
    # The intervals overlap (0.97 to 0.98), but the interval of the difference lies below zero: lower, by Methods' rule.
    overlapping = within.verdict("VGG16", _ci(0.95, 0.90, 0.98), headline)
    assert "and lower than task 1's" in overlapping and "(difference -0.040 [-0.091, -0.004])" in overlapping
    chance = within.verdict("thumbnails", _ci(0.55, 0.45, 0.64), headline)
    assert "not distinguishable from chance (0.5)" in chance
    assert "task 1 did not run" in within.verdict("VGG16", _ci(0.8, 0.7, 0.9), None)


def test_settings_refuse_what_cannot_be_run():
    with pytest.raises(ValueError, match="folds"):
        within.WithinSettings(folds=1)


def test_the_counts_say_who_is_in_and_who_was_left_out():
    counts = {"covid": 95, "other": 100, "patients": 120, "unknown age": 18, "lateral": 11, "younger": 1}
    assert within.counts_text(counts, 5) == ("95 COVID-19 images and 100 other images of 120 patients (18 without an age); "
                                             "left out: 11 lateral views and 1 image of younger patients; 5 folds")
