"""Chapter 04's checks: the protocol read back, the split guarded by fingerprint, re-scoring, verdicts and findings."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xrayutils import chapter_models, chapters, checks, datasets, evaluate, jobs, models, results
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
    runs = checks.shortcut_runs(saved, "ResNet34", data, frames, mask=chapter_models.masked, border_fraction=0.2,
                                weights=models.resolve_weights("none"),
                                output_dir=tmp_path, provenance={"chapter": "04_trust_checks"})
    assert set(runs) == {"border", "center"} and all(r.ok for r in runs.values())
    assert runs["border"].probabilities.shape == (4, 2)
    assert (tmp_path / "resnet34-res32-covid-xray-two-border-only.keras").exists()
    assert not np.allclose(runs["border"].probabilities, runs["center"].probabilities)


def test_shortcut_runs_cache_the_frozen_base_as_their_chapter_did(data_dir, tmp_path):
    data = datasets.load("covid-xray", task="two", data_dir=data_dir)
    saved = _saved(data, cache_features=True, augmented_views=2)
    _, frames = checks.chapter_frames(saved, data_dir)
    runs = checks.shortcut_runs(saved, "VGG16", data, frames, mask=chapter_models.masked, border_fraction=0.2,
                                weights=models.resolve_weights("none"),
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
    folder = tmp_path / chapters.TASK1
    folder.mkdir()
    PREDICTIONS.to_csv(folder / "test_predictions_vgg16.csv", index=False)
    metrics = evaluate.bootstrap_metrics(np.array([0, 0, 1, 1]), PREDICTIONS[["p_covid", "p_normal"]].to_numpy(),
                                         classes=["covid", "normal"], n_resamples=20, seed=0)
    protocol = TrainingProtocol(study="class-challenge", image_size=32, batch_size=4, num_epochs=1, optimizer="adam",
                                learning_rate=1e-3, validation_fraction=0.25, seed=3)
    saved = {"provenance": {"chapter": chapters.TASK1, "datasets": {"covid-xray/two": {}}},
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
    assert table.iloc[0]["accuracy change"] == 0.25 and table.iloc[0]["removed"] == "1 of 4"
    all_four = leakage["01_vgg16_binary/VGG16"]["all"]["accuracy"]["value"]
    assert table.iloc[0]["accuracy without duplicates"].startswith(f"{all_four + 0.25:.3f} [")


def test_best_records_calibration_and_findings(saved_chapter):
    records = results.model_records(saved_chapter)
    best = checks.best_records(records)
    assert list(best) == [chapters.TASK1] and best[chapters.TASK1]["model"] == "VGG16"
    assert checks.overview(records, best)["best of its chapter (ROC AUC)"].tolist() == [True]
    bins, ece = checks.calibration(best, n_bins=5, n_resamples=20, seed=0)
    assert bins["01_vgg16_binary/VGG16"]["count"].sum() == 4
    # Confidences 0.9 and 0.9 (both right) fall in (0.8, 1], 0.8 (wrong) in (0.6, 0.8], 0.6 (right) in (0.4, 0.6]:
    # ECE = (2 * |0.9 - 1| + 1 * |0.8 - 0| + 1 * |0.6 - 1|) / 4 = 0.35.
    assert ece["01_vgg16_binary/VGG16"]["value"] == pytest.approx(0.35)
    rates = checks.rates_beside(PREDICTIONS, PREDICTIONS.assign(true="normal"), ["covid", "normal"])
    found = checks.findings({
        "gradcam": {"even_map_share": 0.51, "models": {"01_vgg16_binary/VGG16": {"images": 4, "border_share": 0.8}}},
        "shortcut": {chapters.TASK1: {"model": "VGG16", "verdict": checks.shortcut_verdict(best[chapters.TASK1], None)}},
        "leakage": checks.leakage(records, pd.DataFrame(columns=["dataset_a", "split_a", "file_a", "dataset_b", "split_b", "file_b"]),
                                  n_resamples=5, seed=0),
        "external": {"images": 4, "rates": {"01_vgg16_binary/VGG16": rates.to_dict("records")}},
        "adults": {"models": {"01_vgg16_binary/VGG16": {"verdict": "says COVID-19 for 1/4 = 0.25 [0.05, 0.70] of the adults without it"}}},
        "calibration": {"ece": ece},
    })["01_vgg16_binary/VGG16"]
    assert set(found) == {"gradcam", "shortcut", "leakage", "external", "adults", "calibration"}
    assert found["adults"] == "Adults without COVID-19: it says COVID-19 for 1/4 = 0.25 [0.05, 0.70] of the adults without it."
    assert "80% of its heat" in found["gradcam"] and "the test is open" in found["shortcut"]
    assert "changes its accuracy by 0.000" in found["leakage"]
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


def _always(cls_index: int, image_size: int = 32) -> keras.Model:
    """A model that answers class ``cls_index`` of two for every image, whatever it shows."""
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    bias = [4.0, 0.0] if cls_index == 0 else [0.0, 4.0]
    outputs = keras.layers.Dense(2, activation="softmax", kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(bias))(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("answer, called", [(0, True), (1, False)])
def test_adult_calls_count_covid_calls_of_the_same_model_on_adults_and_on_its_own_test_images(data_dir, tmp_path, answer, called):
    task1 = datasets.load("covid-xray", task="two", data_dir=data_dir)
    test = task1.subset("test")
    evaluate.predictions_frame(test, np.full((len(test), 2), 0.5), task1.classes).to_csv(tmp_path / "predictions.csv", index=False)
    jobs.save_model(_always(answer), tmp_path / "model.keras", classes=task1.classes, history={}, provenance={})
    record = {"folder": str(tmp_path), "model_file": "model.keras", "predictions_file": "predictions.csv",
              "data_root": str(task1.root), "protocol": _saved(task1)["results"]["protocol"]}
    adults = datasets.load(datasets.ADULTS, data_dir=data_dir).subset("test")
    shares, table = checks.adult_calls(record, adults)
    assert list(shares) == [checks.OWN_TEST, "adults, no finding", "adults, other finding", "adults, all"]
    assert [shares[g]["n"] for g in shares] == [2, 2, 2, 4]  # the two normal test images; the adults by finding
    assert all(s["called"] == (s["n"] if called else 0) for s in shares.values())
    assert sorted(table["finding"]) == ["No Finding", "No Finding", "SARS", "Streptococcus"]
    by_finding = checks.calls_by_finding({"m": table})
    assert by_finding.loc[("no_finding", "No Finding")].tolist() == [2, 2 if called else 0]


def _share(called, n):
    return {"called": called, "n": n, **evaluate.proportion(called, n)}


def test_the_adult_verdict_says_which_way_the_numbers_go():
    own = _share(2, 93)
    confounded = checks.adult_verdict({"adults, all": _share(60, 100), checks.OWN_TEST: own})
    assert confounded.startswith("says COVID-19 for 60/100 = 0.60 [0.50, 0.69] of the adults without it, against 2/93 = 0.02")
    assert "answers to what the adults' images share (age, source)" in confounded
    unclear = checks.adult_verdict({"adults, all": _share(4, 100), checks.OWN_TEST: own})
    assert "no difference detected" in unclear and "no proof against" in unclear
    fewer = checks.adult_verdict({"adults, all": _share(0, 100), checks.OWN_TEST: _share(30, 93)})
    assert "fewer" in fewer


def test_a_source_classifier_reads_an_obvious_source_and_keeps_patients_together(data_dir):
    adults = datasets.load(datasets.ADULTS, data_dir=data_dir).subset("test")
    children = datasets.load("covid-xray", task="all", data_dir=data_dir).subset("train")
    for path in adults["path"]:  # the adults' images made much brighter: a source no classifier can miss
        image = Image.open(path).convert("L")
        Image.eval(image, lambda v: 200 + v // 5).save(path, format="JPEG")
    source = checks.source_classifier(adults, children, thumbnail=8, folds=5, n_resamples=50, seed=0)
    assert source["folds"] == 4  # the adults have 4 patients: one fold per patient at most
    assert source["images"] == {"adults": 4, "children": 12}
    assert source["metrics"]["roc_auc"]["value"] == 1.0
    assert "near perfect" in checks.source_verdict(source) and "could explain the published accuracies" in checks.source_verdict(source)
    weaker = {**source, "metrics": {**source["metrics"], "roc_auc": _ci(0.7, 0.6, 0.8)}}
    assert "below 0.95" in checks.source_verdict(weaker)
    assert checks.source_table(source).iloc[0]["folds"] == 4


def test_gradcam_text_says_when_maps_are_flat():
    assert checks.gradcam_text({"images": 30, "flat_maps": 0, "border_share": 0.8}, 0.51) == (
        "Grad-CAM puts 80% of its heat in the image border (an even map: 51%).")
    assert "of its 26 maps that are not flat (4 flat)" in checks.gradcam_text(
        {"images": 30, "flat_maps": 4, "border_share": 0.8}, 0.51)
    assert checks.gradcam_text({"images": 30, "flat_maps": 30, "border_share": None}, 0.51) == (
        "Grad-CAM gives no explanation: all 30 of its maps are flat.")
    # InceptionV3 at 96 px: one cell of feature map, so every map is flat whatever the model learned
    one_cell = {"images": 30, "flat_maps": 30, "border_share": None, "feature_map": [1, 1]}
    assert "flat by construction" in checks.gradcam_text(one_cell, 0.51)
    table = checks.gradcam_table({"03/InceptionV3": one_cell, "03/ResNet34": {**one_cell, "feature_map": [3, 3]}}, 0.15)
    assert table["feature map (cells)"].tolist() == ["1 × 1: flat by construction", "3 × 3"]


def test_leakage_by_patient_and_view_leaves_out_seen_patients_and_laterals(data_dir, tmp_path):
    path = data_dir / datasets.ADULTS / "metadata.csv"
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    extra = pd.DataFrame([("9", "60", "F", "COVID-19", "PA", "covid-train-1.jpg"), ("9", "60", "F", "COVID-19", "PA", "covid-test-0.jpg"),
                          ("8", "50", "M", "COVID-19", "L", "covid-test-1.jpg")],
                         columns=["patientid", "age", "sex", "finding", "view", "filename"]).assign(modality="X-ray")
    pd.concat([table, extra], ignore_index=True).to_csv(path, index=False)
    task1 = datasets.load("covid-xray", task="two", data_dir=data_dir)
    test = task1.subset("test")
    proba = np.where(test["class_name"].to_numpy()[:, None] == "covid", [0.9, 0.1], [0.2, 0.8])
    proba[test["file"].str.contains("covid-test-0")] = [0.1, 0.9]  # the seen patient's image is the one mistake
    evaluate.predictions_frame(test, proba, task1.classes).to_csv(tmp_path / "predictions.csv", index=False)
    record = {"chapter": chapters.TASK1, "model": "VGG16", "dataset": "covid-xray/two", "data_root": str(task1.root),
              "classes": task1.classes, "folder": str(tmp_path), "predictions_file": "predictions.csv", "metrics": {}}
    rescored = checks.patient_view_leakage([record], n_resamples=20, seed=0)["01_vgg16_binary/VGG16"]
    seen, lateral = (rescored[s] for s in checks.PATIENT_VIEW_SUBSETS)
    assert rescored["metadata"] and seen["n_removed"] == 1 and lateral["n_removed"] == 1
    assert seen["all"]["accuracy"]["value"] == 0.75 and seen["without"]["accuracy"]["value"] == 1.0
    assert lateral["without"]["accuracy"]["value"] == pytest.approx(2 / 3)
    text = checks.patient_view_text(rescored)
    assert text.startswith("without the 1 test image of patients seen in training accuracy is 1.000")
    assert "without the 1 test image of lateral views" in text
    table = checks.patient_view_table({"m": rescored})
    assert table["test images"].tolist() == ["all", "without patients seen in training", "without lateral views"]
    assert table["images"].tolist() == [4, 3, 3]


@pytest.mark.parametrize("answer, called", [(1, True), (0, False)])
def test_pneumonia_detectors_are_counted_on_adults_with_no_finding_against_their_own_normals(data_dir, tmp_path, answer, called):
    hack = datasets.load("coronahack", task="two", data_dir=data_dir)
    test = hack.subset("test")
    evaluate.predictions_frame(test, np.full((len(test), 2), 0.5), hack.classes).to_csv(tmp_path / "predictions.csv", index=False)
    jobs.save_model(_always(answer), tmp_path / "model.keras", classes=hack.classes, history={}, provenance={})
    record = {"folder": str(tmp_path), "model_file": "model.keras", "predictions_file": "predictions.csv", "chapter": chapters.CORONAHACK,
              "model": "ResNet34", "data_root": str(hack.root), "classes": hack.classes, "metrics": {},
              "protocol": _saved(hack, chapter=chapters.CORONAHACK, study="coronahack")["results"]["protocol"]}
    adults = datasets.load(datasets.ADULTS, data_dir=data_dir).subset("test")
    checked, _ = checks.adult_checks([record], adults, checks.CALLS["pneumonia"])
    shares = checked["03_coronahack_models/ResNet34"]["shares"]
    assert list(shares) == [checks.OWN_NORMAL, "adults, no finding", "adults, other finding", "adults, all"]
    assert shares[checks.OWN_NORMAL]["n"] == 2  # the two normal TEST images
    assert all(s["called"] == (s["n"] if called else 0) for s in shares.values())
    verdict = checks.adult_verdict({"adults, no finding": _share(15, 19), checks.OWN_NORMAL: _share(20, 234)}, checks.CALLS["pneumonia"])
    assert verdict.startswith("says pneumonia for 15/19 = 0.79 [0.57, 0.91] of the no finding adults, against 20/234")
    assert "of its normal test images" in verdict and "not to pneumonia alone" in verdict
    assert "no difference detected" in checks.adult_verdict({"adults, no finding": _share(2, 19), checks.OWN_NORMAL: _share(20, 234)},
                                                            checks.CALLS["pneumonia"])


def test_the_adult_verdict_decides_by_the_interval_of_the_difference_not_by_overlap():
    # InceptionV3 in a cpu build: "pneumonia" for 10 of 19 adults with no finding, 65 of 234 of its own normal children.
    # The two Wilson intervals overlap (0.32-0.72 and 0.23-0.34), Newcombe's interval of the difference does not hold zero.
    adults, own = _share(10, 19), _share(65, 234)
    assert adults["low"] < own["high"]
    verdict = checks.adult_verdict({"adults, no finding": adults, checks.OWN_NORMAL: own}, checks.CALLS["pneumonia"])
    assert "(difference +0.249 [+0.031, +0.456])" in verdict and "more often" in verdict and "not to pneumonia alone" in verdict
