"""The summary is made from results files only: two fake files in, the right table and cards out."""

from __future__ import annotations

import json

import pytest

from xrayutils import published, results, summary
from xrayutils.protocol import TrainingProtocol


def _ci(value, low, high):
    return {"value": value, "low": low, "high": high}


def _metrics(accuracy, auc):
    m = {name: _ci(0.5, 0.4, 0.6) for name in ("balanced_accuracy", "f1_macro")}
    return {**m, "accuracy": _ci(*accuracy), "roc_auc": _ci(*auc)}


def _write(root, chapter, models, dataset, n_test):
    study = "coronahack" if dataset.startswith("coronahack") else "class-challenge"
    protocol = TrainingProtocol(study=study, image_size=128, batch_size=10, num_epochs=3, optimizer="adamax", learning_rate=1e-3,
                                validation_fraction=0.2, seed=1, resnet34_optimizer="adam")
    payload = {
        "provenance": {"chapter": chapter, "profile": "cpu", "datasets": {dataset: {"fingerprint": "abc"}}},
        "results": {"models": models, "protocol": protocol.to_dict(), "classes": ["a", "b"],
                    "n": {"train": 10, "validation": 2, "test": n_test}},
    }
    (root / chapter).mkdir(parents=True)
    (root / chapter / "results.json").write_text(json.dumps(payload))


@pytest.fixture
def outputs(tmp_path):
    """Chapter 01 with one model, chapter 03 with a good, a weak and a failed one, and chapter 00 (no models)."""
    _write(tmp_path, "01_vgg16_binary", {"VGG16": {"metrics": _metrics((0.8, 0.7, 0.9), (0.85, 0.75, 0.95)), "pretrained": True,
                                                   "weights": "ImageNet", "model_file": "vgg16.keras"}}, "covid-xray/two", 62)
    _write(tmp_path, "03_coronahack_models", {
        "Xception": {"metrics": _metrics((0.6, 0.55, 0.65), (0.7, 0.65, 0.75)), "pretrained": False, "weights": "random"},
        "ResNet34": {"metrics": _metrics((0.95, 0.93, 0.97), (0.96, 0.94, 0.98)), "pretrained": False, "weights": "random"},
        "VGG19": {"error": "ResourceExhaustedError: out of memory", "pretrained": False, "weights": "random"},
    }, "coronahack/two", 624)
    (tmp_path / "00_data_exploration").mkdir()
    (tmp_path / "00_data_exploration" / "results.json").write_text(json.dumps({"provenance": {}, "results": {"totals": {}}}))
    return tmp_path


def test_summary_table_from_two_results_files(outputs):
    assert results.modelling_chapters(outputs) == ["01_vgg16_binary", "03_coronahack_models"]
    table = summary.summary_table(results.model_records(outputs))
    assert table["model"].tolist() == ["VGG16", "Xception", "ResNet34", "VGG19"]
    vgg16 = table.iloc[0]
    assert vgg16["accuracy"] == "0.800 [0.700, 0.900]" and vgg16["ROC AUC"] == "0.850 [0.750, 0.950]"
    assert vgg16["weights"] == "ImageNet" and vgg16["test images"] == 62 and vgg16["chapter"] == "01"
    assert table.iloc[2]["weights"] == "random"
    assert table.iloc[3]["accuracy"] == "failed: ResourceExhaustedError: out of memory"
    assert not any("…" in str(v) for v in table.to_numpy().ravel())


def test_the_published_table_sets_each_reported_accuracy_beside_ours_with_the_difference_and_every_unlike_setting(outputs):
    table = summary.published_table(results.model_records(outputs), published.table()).set_index("model")
    assert list(table.index) == ["VGG16 (01)", "Xception (03)", "ResNet34 (03)"]  # the failed VGG19 has nothing to set beside
    vgg16 = table.loc["VGG16 (01)"]
    assert vgg16["published"] == "0.900 [0.699, 0.972] (20 validation (last epoch) images)"  # 18 of 20
    assert vgg16["here minus published"].endswith(": no difference detected")
    assert vgg16["like for like"] == ("no: a validation (last epoch) score there; 128 px here, 224 there; 3 epochs here, 40 there; "
                                      "adamax at 0.001 here, Adam at 0.0005 there; 12 training images here, 130 there; "
                                      "62 test images here, 20 there")
    assert table.loc["Xception (03)", "here minus published"].endswith(": lower")  # 0.60 against 570 of 624
    assert table.loc["ResNet34 (03)", "like for like"] == ("no: 128 px here, 150 there; 3 epochs here, 100 there; 10 batch here, "
                                                          "64 there; adam at 0.001 here, Adam at 0.0001 there; "
                                                          "12 training images here, 5,286 there")


def test_best_model_skips_failed_ones_and_each_accuracy_is_set_against_the_published_by_their_difference(outputs):
    records = results.model_records(outputs)
    assert results.best_model(records, "03_coronahack_models") == "ResNet34"
    assert results.best_model(records, "02_vgg16_vs_alexnet") is None
    verdicts = summary.against_published(records, published.table())
    # 0.80 [0.70, 0.90] against 18/20 = 0.90 [0.70, 0.97]: -0.10, interval about [-0.27, +0.09]; 0.60 against 570/624 = 0.913:
    # lower; 0.95 [0.93, 0.97] against 583/624 = 0.934 [0.913, 0.951]: +0.016, interval about [-0.01, +0.04]
    assert verdicts.to_dict() == {"01_vgg16_binary/VGG16": "no difference detected", "03_coronahack_models/Xception": "lower",
                                  "03_coronahack_models/ResNet34": "no difference detected"}


def test_model_card_states_use_data_protocol_metrics_and_findings(outputs):
    record = results.model_records(outputs, ["01_vgg16_binary"])[0]
    card = summary.model_card(record, {"shortcut": "Shortcut test: separates the classes without the lungs."})
    assert "Not for diagnosis" in card and "Kermany" in card and "128 px" in card and "adamax" in card
    assert "accuracy 0.800 [0.700, 0.900]" in card and "separates the classes without the lungs" in card
    resnet = [r for r in results.model_records(outputs) if r["model"] == "ResNet34"][0]
    assert "adam at learning rate" in summary.model_card(resnet)  # the study trained its ResNet34 with Adam
    failed = [r for r in results.model_records(outputs) if r["model"] == "VGG19"][0]
    assert "**Failed:** ResourceExhaustedError" in summary.model_card(failed)
    assert "not checked in this run" in summary.model_card(failed)


def test_trust_table_has_a_row_per_check_and_model():
    checks = {
        "gradcam": {"even_map_share": 0.51, "models": {"01/VGG16": {"images": 10, "border_share": 0.8}}},
        "shortcut": {"01": {"model": "VGG16", "metrics": {"full image": _metrics((0.9, 0.8, 1), (0.9, 0.8, 1)), "lungs hidden": None}}},
        "leakage": {"01/VGG16": {"n_all": 62, "n_removed": 3, "all": _metrics((0.9, 0.8, 1), (0.9, 0.8, 1)),
                                 "without": _metrics((0.85, 0.8, 1), (0.9, 0.8, 1))}},
        "external": {"rates": {"VGG16": [{"class": "normal", "measure": "recall", "value_test": 0.9, "value_external": 0.4,
                                          "low_external": 0.3, "high_external": 0.5, "n_external": 200}]}},
        "adults": {"models": {"01/VGG16": {"shares": {"own test set, not COVID-19": {"called": 1, "n": 31, **_ci(0.03, 0.01, 0.16)},
                                                      "adults, all": {"called": 70, "n": 100, **_ci(0.7, 0.6, 0.78)}}}},
                   "source": {"metrics": {"roc_auc": _ci(0.99, 0.98, 1.0), "balanced_accuracy": _ci(0.95, 0.9, 0.98)}}},
        "calibration": {"ece": {"VGG16": _ci(0.1, 0.05, 0.2)}},
    }
    table = summary.trust_table(checks)
    assert set(checks) <= {"gradcam", "shortcut", "leakage", "external", "adults", "calibration"}
    assert table["check"].tolist() == [
        "explanations (Grad-CAM)", "shortcut test: full image", "shortcut test: lungs hidden",
        "leakage: near-duplicates removed", "external data: normal recall", "adults without COVID-19: called COVID-19",
        "source classifier: adult or child", "calibration (ECE)",
    ]
    assert table.iloc[5]["result"] == "own test set, not COVID-19 1/31 = 0.03 [0.01, 0.16]; adults, all 70/100 = 0.70 [0.60, 0.78]"
    assert table.iloc[6]["result"] == "ROC AUC 0.990 [0.980, 1.000], balanced accuracy 0.950 [0.900, 0.980]"
    assert table.iloc[2]["result"] == "failed"
    assert "accuracy change -0.050" in table.iloc[3]["result"]
    assert "0.40 [0.30, 0.50] external (n=200)" in table.iloc[4]["result"]


def test_leaderboard_figure_gets_published_accuracy_only_where_reported(outputs):
    scored, reported = summary.accuracies_beside_published(results.model_records(outputs), published.table())
    assert list(scored) == ["VGG16 (01)", "Xception (03)", "ResNet34 (03)"]  # the failed VGG19 is not scored
    # task 1's published 0.90 is a validation accuracy: not on an axis of test accuracy
    assert reported == {"Xception (03)": 0.9135, "ResNet34 (03)": 0.9343}
