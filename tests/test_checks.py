"""Chapter 04's checks: the protocol read back, the split guarded by fingerprint, re-scoring without files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xrayutils import checks, datasets, models, train


def _saved(data, chapter="01_vgg16_binary", **parameters):
    p = dict(image_size=32, batch_size=4, num_epochs=1, optimizer="adam", learning_rate=1e-3, augment=True, seed=3,
             validation_fraction=0.25, max_images_per_class=0, weights="none")
    p.update(parameters)
    return {"provenance": {"chapter": chapter, "parameters": p,
                           "datasets": {f"{data.name}/{data.task}": {"fingerprint": data.fingerprint(), "root": str(data.root)}}}}


def test_protocol_and_split_are_the_chapters(data_dir):
    data = datasets.load("covid-xray", task="two", data_dir=data_dir)
    saved = _saved(data)
    protocol = checks.training_protocol(saved, "VGG16")
    assert protocol["augment"] == train.PUBLISHED_AUGMENTATION["class-challenge"] and protocol["epochs"] == 1
    coronahack = _saved(data, chapter="03_coronahack_models", optimizer="adamax", resnet34_optimizer="sgd")
    assert checks.training_protocol(coronahack, "ResNet34")["optimizer"] == "sgd"
    assert checks.training_protocol(coronahack, "Xception")["augment"] == train.PUBLISHED_AUGMENTATION["coronahack"]
    again, frames = checks.chapter_frames(saved, data_dir)
    assert again.fingerprint() == data.fingerprint() and len(frames["test"]) == 4
    saved["provenance"]["datasets"]["covid-xray/two"]["fingerprint"] = "0" * 16
    with pytest.raises(ValueError, match="rerun 01_vgg16_binary on this data first"):
        checks.chapter_frames(saved, data_dir)


def test_builders_and_start_weights():
    assert checks.model_builder("02_vgg16_vs_alexnet", "AlexNet", 72, 4, models.resolve_weights("none"))().name == "alexnet"
    assert checks.model_builder("03_coronahack_models", "ResNet34", 32, 2, models.resolve_weights("none"))().name == "resnet34"
    with pytest.raises(ValueError, match="does not know"):
        checks.model_builder("01_vgg16_binary", "LeNet", 32, 2, models.resolve_weights("none"))
    saved = {"provenance": {"parameters": {"weights": "imagenet"}}}
    assert checks.start_weights(saved, "VGG16").pretrained and not checks.start_weights(saved, "AlexNet").pretrained


def test_shortcut_runs_train_masked_models(data_dir, tmp_path):
    data = datasets.load("covid-xray", task="two", data_dir=data_dir)
    saved = _saved(data, chapter="03_coronahack_models", augment=False)
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
    assert checks.training_protocol(saved, "VGG16")["augmented_views"] == 2
    _, frames = checks.chapter_frames(saved, data_dir)
    runs = checks.shortcut_runs(saved, "VGG16", data, frames, border_fraction=0.2, weights=models.resolve_weights("none"),
                                output_dir=tmp_path, provenance={"chapter": "04_trust_checks"})
    assert all(r.ok and r.history["cache"]["views"] == 2 for r in runs.values())


def test_without_files_rescores_on_the_rest():
    table = pd.DataFrame({
        "file": ["two/test/covid/a.png", "two/test/covid/b.png", "two/test/normal/c.png", "two/test/normal/d.png"],
        "true": ["covid", "covid", "normal", "normal"],
        "p_covid": [0.9, 0.2, 0.4, 0.1], "p_normal": [0.1, 0.8, 0.6, 0.9],
    })
    rescored = checks.without_files(table, {"b.png"}, ["covid", "normal"], n_resamples=20, seed=0)
    assert rescored["n_all"] == 4 and rescored["n_removed"] == 1
    assert rescored["all"]["accuracy"]["value"] == 0.75 and rescored["without"]["accuracy"]["value"] == 1.0
    assert checks.without_files(table, {"a.png", "b.png", "c.png", "d.png"}, ["covid", "normal"], n_resamples=5, seed=0)["without"] is None
