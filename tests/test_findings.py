"""The start page's findings and the "this build" boxes: built from results files, in the direction the numbers take."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from xrayutils import chapters, evaluate, findings, models, published, results
from xrayutils.protocol import TrainingProtocol


def ci(value, low, high):
    return {"value": value, "low": low, "high": high}


def share(called, n, low, high):
    return {"called": called, "n": n, **ci(called / n, low, high)}


def _protocol(study, **changes):
    settings = dict(image_size=128, batch_size=10, num_epochs=40, optimizer="adam", learning_rate=5e-4, validation_fraction=0.2,
                    seed=42, seeds=(1, 2))
    return TrainingProtocol(study=study, **{**settings, **changes})


def _chapter(root, chapter, dataset, protocol, entries, n, truths, **extra):
    """A chapter's results.json, run_info.json and predictions files, as a chapter leaves them."""
    folder = root / chapter
    folder.mkdir(parents=True)
    for name in entries:
        pd.DataFrame({"file": [f"{i}.png" for i in range(len(truths))], "true": truths}).to_csv(
            folder / results.predictions_filename(name), index=False)
    provenance = {"chapter": chapter, "profile": "cpu", "device": "CPU (2 cores: AMD EPYC, AVX2, no AVX-512), no GPU",
                  "datasets": {dataset: {"root": "/data", "images": 1, "fingerprint": "f"}}}
    payload = {"provenance": provenance,
               "results": {"protocol": protocol.to_dict(), "models": entries, "n": n, "classes": ["a", "b"], **extra}}
    (folder / results.RESULTS_FILE).write_text(json.dumps(payload))
    (folder / "run_info.json").write_text(json.dumps({**provenance, "wall_time_s": 600.0}))


def _model(accuracy, balanced=(0.6, 0.5, 0.7), pretrained=False):
    return {"metrics": {"accuracy": ci(*accuracy), "balanced_accuracy": ci(*balanced), "roc_auc": ci(0.8, 0.7, 0.9)},
            "pretrained": pretrained, "weights": "random initialisation (weights=none)"}


@pytest.fixture
def outputs(tmp_path):
    """Chapters 01-03 of a cpu-like build (random weights, the CoronaHack sample) and chapter 04's checks."""
    _chapter(tmp_path, chapters.TASK1, "covid-xray/two", _protocol("class-challenge", image_size=224),
             {"VGG16": _model((0.90, 0.80, 0.95))}, {"train": 124, "validation": 32, "test": 62}, ["covid"] * 31 + ["normal"] * 31)
    task2 = _protocol("class-challenge", num_epochs=100, model_settings={"AlexNet": {"num_epochs": 10}})
    _chapter(tmp_path, chapters.TASK2, "covid-xray/all", task2,
             {"VGG16": _model((0.61, 0.52, 0.69)), "AlexNet": _model((0.71, 0.62, 0.78))},
             {"train": 252, "validation": 64, "test": 124}, ["covid", "normal", "pneumonia_bac", "pneumonia_vir"] * 31,
             mcnemar_vgg16_vs_alexnet={"p_value": 0.004, "only_a_correct": 3, "only_b_correct": 16})
    _chapter(tmp_path, chapters.CORONAHACK, "coronahack/two", _protocol("coronahack", image_size=96, num_epochs=10, seeds=(1,)),
             {"ResNet34": _model((0.473, 0.43, 0.51), (0.55, 0.5, 0.6)), "InceptionV3": _model((0.85, 0.82, 0.88), (0.82, 0.79, 0.85))},
             {"train": 349, "validation": 39, "test": 624}, ["pneumonia"] * 390 + ["normal"] * 234)
    trust = {
        "adults": {"models": {
            "01_vgg16_binary/VGG16": {"shares": {"own test set, not COVID-19": share(2, 31, 0.02, 0.21),
                                                 "adults, all": share(87, 100, 0.79, 0.92)}},
            "02_vgg16_vs_alexnet/AlexNet": {"shares": {"own test set, not COVID-19": share(20, 93, 0.14, 0.31),
                                                       "adults, all": share(89, 100, 0.81, 0.94)}}},
            "source": {"thumbnail": 32, "metrics": {"roc_auc": ci(0.99, 0.98, 1.0), "balanced_accuracy": ci(0.95, 0.9, 0.98)}}},
        "external": {"images": 120, "rates": {
            "01_vgg16_binary/VGG16": [{"class": "normal", "measure": "recall", "value_test": 1.0, "low_test": 0.89, "high_test": 1.0,
                                       "value_external": 0.93, "low_external": 0.84, "high_external": 0.97}],
            "02_vgg16_vs_alexnet/AlexNet": [{"class": "normal", "measure": "recall", "value_test": 0.61, "low_test": 0.44,
                                             "high_test": 0.76, "value_external": 0.33, "low_external": 0.23, "high_external": 0.46},
                                            {"class": "pneumonia_vir", "measure": "recall", "value_test": 0.81, "low_test": 0.64,
                                             "high_test": 0.91, "value_external": 0.12, "low_external": 0.07, "high_external": 0.2},
                                            {"class": "covid", "measure": "recall", "value_test": 0.9, "low_test": 0.75,
                                             "high_test": 0.97, "value_external": None, "low_external": None, "high_external": None}]}},
    }
    (tmp_path / chapters.TRUST_CHECKS).mkdir()
    (tmp_path / chapters.TRUST_CHECKS / results.RESULTS_FILE).write_text(json.dumps({"provenance": {}, "results": trust}))
    return tmp_path


def test_the_start_page_leads_with_the_adults_then_external_data_then_the_published_numbers(outputs):
    found = findings.headline_findings(outputs)
    assert [f.lead for f in found] == ["Adults without COVID-19 are called COVID-19.",
                                       "Scores carry over to new patients for some models, not for one model.",
                                       "The published numbers are not reproduced like for like here."]
    adults = found[0].text
    assert "the task-1 VGG16 calls 87 of 100 (0.87 [0.79, 0.92]) of them COVID-19, against 2 of 31" in adults
    assert "ROC AUC 0.99 [0.98, 1.00]" in adults and "age and source" in adults
    external = found[1].text
    assert "the task-1 VGG16's normal recall shows no clear change" in external
    assert "the task-2 AlexNet's normal recall falls from 0.61 [0.44, 0.76]" in external
    # the larger shift is in viral pneumonia (COVID-19 has no external images: no rate there to compare)
    assert ("; its largest shift: viral pneumonia recall falls from 0.81 [0.64, 0.91] on its own test set to 0.12 [0.07, 0.20] "
            "on the external images") in external
    assert external.count("largest shift") == 1  # the task-1 VGG16's only class here is normal
    reproduction = found[2].text
    assert "a frozen, randomly initialised VGG16 base" in reproduction
    assert "AlexNet is ahead of VGG16 here (0.710 against 0.610), the reverse of the published order" in reproduction
    assert "ResNet34 (03)'s accuracy, 0.473 [0.430, 0.510], is below the 0.625 of always answering 'pneumonia'" in reproduction
    assert all("(s)" not in f.text and "1 of the other 1" not in f.text for f in found)


def test_an_adults_finding_without_the_confound_says_so():
    trust = {"adults": {"models": {"01_vgg16_binary/VGG16": {"shares": {"own test set, not COVID-19": share(5, 31, 0.07, 0.33),
                                                                          "adults, all": share(20, 100, 0.13, 0.29)}}}}}
    found = findings.adults_finding(trust)
    assert found.lead == "Adults without COVID-19 are not called COVID-19 more often than the models' own negatives."
    assert "age and source" not in found.text


def test_the_build_box_says_profile_machine_time_weights_data_and_what_was_shrunk(outputs):
    box = findings.build_box(outputs, results.model_records(outputs))
    assert "This build: the cpu profile, not the published protocols" in box and 'class="admonition warning"' in box
    assert "AMD EPYC" in box and "30 minutes in all" in box  # three chapters of 600 s
    assert "every model from random weights: not transfer learning" in box
    assert "coronahack/two: 388 of the full dataset&#x27;s 5,286 training images and 624 of its 624 test images (a small sample)" in box
    assert "images of 96 px (published 150 px)" in box and "every model 10 epochs (published 100)" in box  # said once
    assert "2 of the 9 published models (left out: Xception, VGG16, VGG19, ResNet101V2, InceptionResNetV2, EfficientNetV2S " \
           "and EfficientNetV2M)" in box
    assert "1 training seed per model (too few for a spread)" in box
    assert "AlexNet 10 epochs (published 100)" in box


def test_the_caveat_above_the_findings_names_random_weights_and_the_sample(outputs):
    records = results.model_records(outputs)
    assert findings.build_caveat(outputs, records) == (
        "**These are this build's numbers, not the published protocols'** (cpu profile: every model from random weights "
        "and a sample of the data; the box below the findings says what was shrunk).")
    pretrained = [{**r, "pretrained": r["model"] != "ResNet34"} for r in records]
    assert f"1 model of {len(records)} from random weights" in findings.build_caveat(outputs, pretrained)
    assert findings.build_caveat(outputs, []) == ""


def test_a_chapters_setup_box_for_the_published_protocol_is_a_note():
    protocol = _protocol("class-challenge", image_size=224, seeds=(1, 2, 3))
    weights = {"VGG16": models.Weights("imagenet", "ImageNet (weights=imagenet)")}
    box = findings.setup_box("paper", chapters.TASK1, protocol, weights, "covid-xray/two", {"train": 128, "validation": 32, "test": 62})
    assert 'class="admonition note"' in box and "the published protocol" in box and "every model from ImageNet weights" in box
    assert "3 training seeds per model" in box and "too few" not in box


def test_a_shrunk_setup_box_is_a_warning_naming_each_difference():
    protocol = _protocol("class-challenge", image_size=72, num_epochs=1, max_images_per_class=4, seeds=(1,))
    weights = {"VGG16": models.Weights(None, "random initialisation (weights=none)")}
    box = findings.setup_box("smoke", chapters.TASK1, protocol, weights, "covid-xray/two", {"train": 6, "validation": 2, "test": 8})
    assert 'class="admonition warning"' in box and "not the published protocol" in box
    for said in ("images of 72 px (published 224 px)", "VGG16 1 epoch (published 40)", "random instead of ImageNet weights for VGG16",
                 "at most 4 images per class and split", "(a small sample)"):
        assert said in box, said


def test_data_lines_tell_the_full_data_from_a_sample():
    assert findings.data_line("covid-xray/two", {"train": 124, "validation": 32, "test": 62}).endswith("(the full data)")
    assert findings.data_line("coronahack/two", {"train": 4, "validation": 1, "test": 8}).endswith("(a small sample)")
    assert findings.data_line("elsewhere/two", {"train": 4, "test": 8}) == "elsewhere/two: 4 training and 8 test images"


@pytest.mark.parametrize(("p_value", "order"), [(0.01, "the reverse of the published order"), (0.4, "not told apart")])
def test_chapter_02s_summary_discusses_a_reversal_and_names_what_differs(p_value, order):
    metrics = {"VGG16": {"accuracy": ci(0.61, 0.52, 0.69), "roc_auc": ci(0.8, 0.7, 0.9)},
               "AlexNet": {"accuracy": ci(0.71, 0.62, 0.78), "roc_auc": ci(0.85, 0.8, 0.9)}}
    spreads = {name: {"accuracy": {"n": 2, "mean": 0.6, "sd": 0.01, "min": 0.59, "max": 0.61}} for name in metrics}
    weights = {"VGG16": models.Weights(None, "random"), "AlexNet": models.Weights(None, "random")}
    protocol = _protocol("class-challenge", num_epochs=100, model_settings={"AlexNet": {"num_epochs": 10}})
    lines = findings.task2_summary(metrics, spreads, weights, {"VGG16": 0.75, "AlexNet": 0.3611},
                                   {"p_value": p_value, "only_a_correct": 1, "only_b_correct": 13}, protocol, [], 124)
    text = " ".join(lines)
    assert order in text and "0.590 and 0.610 (2 seeds)" in text and "±" not in text
    if p_value < 0.05:
        assert "VGG16: weights random (published ImageNet), image size 128 (published 224)" in text
        assert "AlexNet: image size 128 (published 224), epochs 10 (published 100)" in text
    assert "VGG16 alone is right on 1 image," in text


def test_chapter_03s_summary_flags_the_model_below_the_constant_answer_and_one_seed():
    board = pd.DataFrame([{"rank": 1, "model": "InceptionV3", "roc_auc": "0.900 [0.87, 0.93]", "accuracy": "0.85 [..]",
                           "minus the best": "–", "told apart": "–", "rank interval": "–"},
                          {"rank": "-", "model": "ResNet34", "roc_auc": "0.61 [..]", "accuracy": "0.473 [0.43, 0.51]",
                           "minus the best": "-0.290 [-0.35, -0.22]", "told apart": "yes",
                           "rank interval": evaluate.NOT_RANKED_BELOW}]).set_index("rank")
    weights = {name: models.Weights(None, "random") for name in ("InceptionV3", "ResNet34")}
    text = " ".join(findings.coronahack_summary(board, "roc_auc", 624, ["Xception"], 1, weights))
    assert "2 models ran under one protocol, each with 1 training seed; left out: Xception" in text
    assert "InceptionV3 leads with 0.900 [0.87, 0.93] on 624 test images" in text
    assert "ResNet34 is not ranked: its accuracy, 0.473 [0.43, 0.51], is below always answering" in text
    assert "with 1 training seed per model the ranking shows no luck of training" in text
    errors = {"ResNet34": "calls 111 of 234 normal images pneumonia and misses 2 of 390 pneumonias"}
    assert "ResNet34 calls 111 of 234 normal images pneumonia" in " ".join(
        findings.coronahack_summary(board, "roc_auc", 624, [], 1, weights, errors))
    assert "told" not in text  # one ranked model: nothing to tell it from
    ranked = board.rename(index={"-": 2})
    text = " ".join(findings.coronahack_summary(ranked, "roc_auc", 624, [], 1, weights))
    assert "by ROC AUC, InceptionV3 leads" in text
    assert "the paired interval of ROC AUC tells the leader from ResNet34 (1 of the other 1 ranked model)" in text
    ranked.loc[2, "told apart"] = "no"
    assert "these two models cannot be told apart on this test set" in " ".join(
        findings.coronahack_summary(ranked, "roc_auc", 624, [], 1, weights))


def test_chapter_04s_summary_reports_every_models_external_change(outputs):
    trust = results.load(outputs, chapters.TRUST_CHECKS)["results"]
    lines = findings.trust_summary(trust)
    external = next(line for line in lines if line.startswith("external data"))
    assert "task-1 VGG16" in external and "task-2 AlexNet's normal recall falls" in external
    after_findings = findings.trust_summary(trust, besides_findings=True)
    assert not any(line.startswith(("external", "adults", "the source")) for line in after_findings)  # said once, above
    assert [line for line in lines if line.startswith(("shortcut", "leakage", "calibration"))] == after_findings
    adults = next(line for line in lines if line.startswith("adults"))
    assert adults == ("adults without COVID-19: every model with a COVID-19 class calls adults without COVID-19 'COVID-19' more "
                      "often than its own test images without it (the task-1 VGG16 87 of 100 and the task-2 AlexNet 89 of 100)")


def test_p_values_as_a_page_shows_them():
    assert findings.p_value(1.936125e-46) == "< 0.001" and findings.p_value(0.04321) == "= 0.043"


def test_every_modelling_chapter_has_a_task_title_and_published_rows():
    for chapter in chapters.MODELLING:
        assert chapters.record(chapter).title and len(published.chapter_rows(chapter))


def test_the_within_collection_finding_leads_with_what_is_left_without_the_children():
    def trust(low, high):
        inside = ci((low + high) / 2, low, high)
        return {"within": {"counts": {"covid": 95, "other": 100, "patients": 120},
                           "headline": {"roc_auc": ci(0.99, 0.97, 1.0)},
                           "methods": {"VGG16, task-1 recipe": {"metrics": {"roc_auc": inside}}},
                           "verdicts": {"VGG16": "VGG16 tells COVID-19 from other adult findings with ROC AUC ..."}}}

    lower = findings.within_finding(trust(0.70, 0.84))
    assert lower.lead == "Without the children, less is left, though more than chance."
    assert lower.text.startswith("On 95 COVID-19 and 100 other frontal images of 120 adults")
    assert findings.within_finding(trust(0.94, 0.99)).lead == "Without the children, COVID-19 is still told from other adult findings."
    assert findings.within_finding(trust(0.42, 0.61)).lead == "Without the children, COVID-19 is not told from other adult findings."
    assert findings.within_finding({}) is None
    assert any(line.startswith("within one collection, without the children: VGG16") for line in findings.trust_summary(trust(0.7, 0.8)))


def test_a_within_collection_test_that_could_not_run_is_said_and_leads_nothing():
    trust = {"within": {"skipped": "1 patient in class covid; the test needs at least 2 in each", "methods": {}, "verdicts": {}}}
    assert findings.within_finding(trust) is None
    assert "within one collection, without the children: not run (1 patient in class covid; the test needs at least 2 in each)" \
        in findings.trust_summary(trust)


@pytest.mark.parametrize(("ci", "p", "says"), [
    ({"value": 0.7, "low": 0.4, "high": 0.9}, 0.04, "ImageNet accuracy orders the backbones' scores here"),
    ({"value": 0.7, "low": 0.4, "high": 0.9}, 0.06, "no relation of ImageNet accuracy"),  # sure of the order, too few models
    ({"value": 0.7, "low": -0.1, "high": 0.9}, 0.01, "no relation of ImageNet accuracy"),  # the test set is not sure of it
    ({"value": -0.8, "low": -0.95, "high": -0.5}, 0.01, "ImageNet accuracy reverses"),
])
def test_the_imagenet_correlation_is_called_one_only_when_both_its_uncertainties_allow(ci, p, says):
    verdict = findings.imagenet_verdict(ci | {"p": p, "models": 8}, pretrained=True, frozen=True)
    assert says in verdict and "before any fine-tuning" in verdict
    random = findings.imagenet_verdict(ci | {"p": p, "models": 8}, pretrained=False, frozen=True)
    assert "ImageNet taught them nothing" in random
    assert "too few backbones" in findings.imagenet_verdict(None, pretrained=True, frozen=True).lower()


def test_the_seed_spread_is_set_beside_the_spread_between_models():
    per_seed = {"A": pd.DataFrame({"roc_auc": [0.80, 0.82, 0.84]}), "B": pd.DataFrame({"roc_auc": [0.70, 0.70, 0.70]}),
                "C": pd.DataFrame({"roc_auc": [0.5, 0.9, 0.7]})}
    said = findings.seeds_against_models(per_seed, ["A", "B"], "roc_auc")
    assert said == ("between the 2 ranked models' seed means, ROC AUC has a standard deviation of 0.085; "
                    "within one model, over its seeds, up to 0.020 (A)")
    assert "up to 0.200 (C)" in findings.seeds_against_models(per_seed, ["A", "B", "C"], "roc_auc")
    assert findings.seeds_against_models({"A": per_seed["A"].iloc[:1]}, ["A"], "roc_auc") == ""


def test_chapter_03s_summary_names_a_model_no_better_than_chance_and_what_the_frozen_probes_measure():
    board = pd.DataFrame([{"rank": 1, "model": "VGG19", "roc_auc": "0.901 [0.875, 0.924]", "accuracy": "0.8 [..]",
                           "minus the best": "–", "told apart": "–", "rank interval": "1 to 2"},
                          {"rank": 2, "model": "EfficientNetV2M", "roc_auc": "0.504 [0.454, 0.553]", "accuracy": "0.6 [..]",
                           "minus the best": "-0.397 [-0.473, -0.320]", "told apart": "yes", "rank interval": "2 to 2"}]).set_index("rank")
    weights = {name: models.Weights("f.weights.h5", "random, drawn once", drawn=True) for name in ("VGG19", "EfficientNetV2M")}
    metrics = {"VGG19": {"roc_auc": {"value": 0.901, "low": 0.875, "high": 0.924}},
               "EfficientNetV2M": {"roc_auc": {"value": 0.504, "low": 0.454, "high": 0.553}}}
    text = " ".join(findings.coronahack_summary(board, "roc_auc", 624, [], 3, weights, frozen=True, metrics=metrics))
    assert "ROC AUC no better than chance (its interval holds or lies below 0.5): EfficientNetV2M 0.504 [0.454, 0.553]" in text
    assert "VGG19 0.901" not in text.split("no better than chance")[1]
    assert "frozen backbones' scores measure what a random network of each architecture passes on" in text  # drawn: not pretrained
    assert "1 of the 2 ranked models could take more than one rank" in text


def test_the_setup_box_says_each_kind_of_weights_and_each_shrunk_epoch_count_once():
    protocol = TrainingProtocol(study="coronahack", image_size=96, batch_size=32, num_epochs=30, optimizer="adam", learning_rate=0.01,
                                validation_fraction=0.1, seed=42, model_settings={"ResNet34": {"num_epochs": 10}})
    drawn = models.Weights("f.weights.h5", "random initialisation, drawn once (seed 42) for every training seed", drawn=True)
    weights = {"VGG16": drawn, "VGG19": drawn, "ResNet34": models.Weights(None, "random initialisation (weights=none)")}
    box = findings.setup_box("cpu", chapters.CORONAHACK, protocol, weights, "coronahack/two", {"train": 388, "test": 624})
    assert box.count("drawn once (seed 42)") == 1 and "VGG16 and VGG19: random initialisation, drawn once" in box
    assert "VGG16 and VGG19 30 epochs (published 100)" in box and "ResNet34 10 epochs (published 100)" in box
