"""Chapter 04's checks: the protocol read back, the split guarded by fingerprint, re-scoring, verdicts and findings."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from xrayutils import checks, datasets, evaluate, models, results
from xrayutils.protocol import TrainingProtocol


def _saved(data, chapter="01_vgg16_binary", study="class-challenge", **settings):
    protocol = TrainingProtocol(study=study, image_size=32, batch_size=4, num_epochs=1, optimizer="adam", learning_rate=1e-3,
                                validation_fraction=0.25, seed=3, weights="none", **settings)
    return {"provenance": {"chapter": chapter,
                           "datasets": {f"{data.name}/{data.task}": {"fingerprint": data.fingerprint(), "root": str(data.root)}}},
            "results": {"protocol": protocol.to_dict()}}


def test_split_is_the_chapters_and_guarded_by_fingerprint(data_dir):
    data = datasets.load("covid-xray", task="two", data_dir=data_dir)
    saved = _saved(data)
    again, frames = checks.chapter_frames(saved, data_dir)
    assert again.fingerprint() == data.fingerprint() and len(frames["test"]) == 4
    saved["provenance"]["datasets"]["covid-xray/two"]["fingerprint"] = "0" * 16
    with pytest.raises(ValueError, match="rerun 01_vgg16_binary on this data first"):
        checks.chapter_frames(saved, data_dir)


def test_shortcut_runs_train_masked_models(data_dir, tmp_path):
    data = datasets.load("covid-xray", task="two", data_dir=data_dir)
    saved = _saved(data, chapter="03_coronahack_models", study="coronahack", augment=False)
    _, frames = checks.chapter_frames(saved, data_dir)
    runs = checks.shortcut_runs(saved, "ResNet34", data, frames, border_fraction=0.2, weights=models.resolve_weights("none"),
                                output_dir=tmp_path, provenance={"chapter": "04_trust_checks"})
    assert set(runs) == {"border", "center"} and all(r.ok for r in runs.values())
    assert runs["border"].probabilities.shape == (4, 2)
    assert (tmp_path / "resnet34-res32-covid-xray-two-border-only.keras").exists()
    assert not np.allclose(runs["border"].probabilities, runs["center"].probabilities)


def test_shortcut_runs_cache_the_frozen_base_as_their_chapter_did(data_dir, tmp_path):
    data = datasets.load("covid-xray", task="two", data_dir=data_dir)
    saved = _saved(data, cache_features=True, augmented_views=2)
    _, frames = checks.chapter_frames(saved, data_dir)
    runs = checks.shortcut_runs(saved, "VGG16", data, frames, border_fraction=0.2, weights=models.resolve_weights("none"),
                                output_dir=tmp_path, provenance={"chapter": "04_trust_checks"})
    assert all(r.ok and r.history["cache"]["views"] == 2 for r in runs.values())


def _ci(value, low, high):
    return {"value": value, "low": low, "high": high}


def test_verdict_follows_the_lungs_hidden_interval():
    record = {"model": "VGG16", "chapter": "01_vgg16_binary"}
    assert "still separates the classes" in checks.shortcut_verdict(record, {"roc_auc": _ci(0.8, 0.6, 0.9)})
    assert "no evidence of a border shortcut" in checks.shortcut_verdict(record, {"roc_auc": _ci(0.55, 0.45, 0.7)})
    assert "the test is open" in checks.shortcut_verdict(record, None)


PREDICTIONS = pd.DataFrame({
    "file": ["two/test/covid/a.png", "two/test/covid/b.png", "two/test/normal/c.png", "two/test/normal/d.png"],
    "true": ["covid", "covid", "normal", "normal"],
    "predicted": ["covid", "normal", "normal", "normal"],
    "p_covid": [0.9, 0.2, 0.4, 0.1], "p_normal": [0.1, 0.8, 0.6, 0.9],
})


def test_without_files_rescores_on_the_rest():
    rescored = checks.without_files(PREDICTIONS, {"b.png"}, ["covid", "normal"], n_resamples=20, seed=0)
    assert rescored["n_all"] == 4 and rescored["n_removed"] == 1
    assert rescored["all"]["accuracy"]["value"] == 0.75 and rescored["without"]["accuracy"]["value"] == 1.0
    assert checks.metric_change(rescored) == 0.25
    everything = {"a.png", "b.png", "c.png", "d.png"}
    assert checks.without_files(PREDICTIONS, everything, ["covid", "normal"], n_resamples=5, seed=0)["without"] is None


@pytest.fixture
def saved_chapter(tmp_path):
    """A chapter-01 results folder with one model whose predictions are :data:`PREDICTIONS`."""
    folder = tmp_path / results.TASK1
    folder.mkdir()
    PREDICTIONS.to_csv(folder / "test_predictions_vgg16.csv", index=False)
    metrics = evaluate.bootstrap_metrics(np.array([0, 0, 1, 1]), PREDICTIONS[["p_covid", "p_normal"]].to_numpy(),
                                         classes=["covid", "normal"], n_resamples=20, seed=0)
    protocol = TrainingProtocol(study="class-challenge", image_size=32, batch_size=4, num_epochs=1, optimizer="adam",
                                learning_rate=1e-3, validation_fraction=0.25, seed=3)
    saved = {"provenance": {"chapter": results.TASK1, "datasets": {"covid-xray/two": {}}},
             "results": {"protocol": protocol.to_dict(), "classes": ["covid", "normal"], "n": {"test": 4},
                         "models": {"VGG16": {"metrics": metrics, "weights": "random", "predictions_file": "test_predictions_vgg16.csv"}}}}
    (folder / "results.json").write_text(json.dumps(saved))
    return tmp_path


def test_leakage_rescores_every_model_without_its_duplicated_test_images(saved_chapter):
    records = results.model_records(saved_chapter)
    pairs = pd.DataFrame([{"dataset_a": "covid-xray", "split_a": "test", "file_a": "two/test/covid/b.png",
                           "dataset_b": "covid-xray", "split_b": "train", "file_b": "two/train/covid/z.png"}])
    leakage = checks.leakage(records, pairs, n_resamples=20, seed=0)
    assert list(leakage) == ["01_vgg16_binary/VGG16"] and leakage["01_vgg16_binary/VGG16"]["n_removed"] == 1
    table = checks.leakage_table(leakage)
    assert table.iloc[0]["accuracy change"] == 0.25 and table.iloc[0]["removed"] == 1


def test_best_records_calibration_and_findings(saved_chapter):
    records = results.model_records(saved_chapter)
    best = checks.best_records(records)
    assert list(best) == [results.TASK1] and best[results.TASK1]["model"] == "VGG16"
    assert checks.overview(records, best)["best of its chapter (ROC AUC)"].tolist() == [True]
    bins, ece = checks.calibration(best, n_bins=5, n_resamples=20, seed=0)
    assert bins["01_vgg16_binary/VGG16"]["count"].sum() == 4
    # confidences 0.9, 0.8, 0.6, 0.9 against 3 of 4 right
    assert ece["01_vgg16_binary/VGG16"]["value"] == pytest.approx(evaluate.expected_calibration_error(
        [0, 0, 1, 1], PREDICTIONS[["p_covid", "p_normal"]].to_numpy(), n_bins=5))
    rates = checks.rates_beside(PREDICTIONS, PREDICTIONS.assign(true="normal"), ["covid", "normal"])
    found = checks.findings({
        "gradcam": {"even_map_share": 0.51, "models": {"01_vgg16_binary/VGG16": {"images": 4, "border_share": 0.8}}},
        "shortcut": {results.TASK1: {"model": "VGG16", "verdict": checks.shortcut_verdict(best[results.TASK1], None)}},
        "leakage": checks.leakage(records, pd.DataFrame(columns=["dataset_a", "split_a", "file_a", "dataset_b", "split_b", "file_b"]),
                                  n_resamples=5, seed=0),
        "external": {"images": 4, "rates": {"01_vgg16_binary/VGG16": rates.to_dict("records")}},
        "calibration": {"ece": ece},
    })["01_vgg16_binary/VGG16"]
    assert set(found) == {"gradcam", "shortcut", "leakage", "external", "calibration"}
    assert "80% of its heat" in found["gradcam"] and "the test is open" in found["shortcut"]
    assert "changes its accuracy by +0.000" in found["leakage"]
    assert "normal recall is 0.75" in found["external"]  # 3 of the 4 images, all normal now, are called normal


def test_external_images_seen_in_training_are_left_out(data_dir):
    external = datasets.load("coronahack", task="all", data_dir=data_dir)
    covid_train = datasets.load("covid-xray", task="all", data_dir=data_dir).subset("train")
    candidates = external.subset("test")
    seen = candidates.iloc[0]["file"].rsplit("/", 1)[-1]
    pairs = pd.DataFrame([{"dataset_a": "coronahack", "split_a": "test", "file_a": seen,
                           "dataset_b": "covid-xray", "split_b": "train", "file_b": "x.png"}])
    unseen, counts = checks.unseen_external(external, covid_train, pairs)
    assert len(unseen) == len(candidates) - 1 and seen not in unseen["file"].tolist()
    assert counts["near-duplicate of a training image"].sum() == 1 and counts["used"].sum() == len(unseen)
