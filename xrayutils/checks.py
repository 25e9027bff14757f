"""Chapter 04's trust checks: retrain a chapter's model on part of each image, re-score without duplicates, score elsewhere.

Everything starts from what a modelling chapter saved (:mod:`xrayutils.results`):
its parameters give the protocol, its data fingerprint guards "the same split",
its test predictions are re-scored.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from xrayutils import datasets, evaluate, models, pipeline, results, train


def training_protocol(saved: dict[str, Any], model: str) -> dict[str, Any]:
    """The :func:`xrayutils.train.train_and_test` options ``model``'s chapter trained it with, from its results file."""
    p = saved["provenance"]["parameters"]
    study, _ = results.PUBLISHED_TASK[saved["provenance"]["chapter"]]
    return {
        "image_size": p["image_size"],
        "batch_size": p["batch_size"],
        "epochs": p["num_epochs"],
        "optimizer": p["resnet34_optimizer"] if model == "ResNet34" and "resnet34_optimizer" in p else p["optimizer"],
        "learning_rate": p["learning_rate"],
        "augment": train.PUBLISHED_AUGMENTATION[study] if p.get("augment", True) else None,
        "seed": p["seed"],
        # older results files predate these switches: their chapters ran without them
        "cache_features": p.get("cache_features", False),
        "augmented_views": p.get("augmented_views", 1),
        "mixed_precision": p.get("mixed_precision", False),
        "jit_compile": p.get("jit_compile", "auto"),
    }


def model_builder(chapter: str, model: str, image_size: int, num_classes: int, weights: models.Weights) -> Callable[[], keras.Model]:
    """A function building a fresh, untrained copy of ``chapter``'s ``model`` (chapters 01-03 name them differently)."""
    shape = (image_size, image_size, 3)
    if chapter == "03_coronahack_models":
        return partial(models.coronahack_model, model, shape, num_classes, weights)
    if model == "VGG16":
        return partial(models.vgg16_transfer, shape, num_classes=num_classes, weights=weights)
    if model == "AlexNet":
        return partial(models.alexnet, shape, num_classes=num_classes)
    raise ValueError(f"chapter 04 does not know how {chapter} built {model!r}")


def chapter_frames(saved: dict[str, Any], data_dir: str | Path | None) -> tuple[datasets.XrayDataset, dict[str, pd.DataFrame]]:
    """The dataset and train/validation/test split a chapter used, loaded again and checked by fingerprint.

    A different fingerprint means other images (or labels) than the chapter saw, so
    a retrained model could not be set beside the chapter's: that is an error.
    """
    provenance = saved["provenance"]
    key, recorded = next(iter(provenance["datasets"].items()))
    name, task = key.split("/")
    p = provenance["parameters"]
    data = datasets.load(name, task=task, data_dir=data_dir, max_images_per_class=p.get("max_images_per_class") or None, seed=p["seed"])
    if data.fingerprint() != recorded["fingerprint"]:
        raise ValueError(
            f"{key} now has fingerprint {data.fingerprint()}, but {provenance['chapter']} trained on "
            f"{recorded['fingerprint']} ({recorded['root']}): rerun {provenance['chapter']} on this data first"
        )
    return data, pipeline.split_frames(data, validation_fraction=p["validation_fraction"], seed=p["seed"])


def start_weights(saved: dict[str, Any], model: str) -> models.Weights:
    """The weights a chapter's ``model`` started from, resolved again from the chapter's ``weights`` parameter.

    AlexNet and ResNet34 always start from random weights, as published.
    """
    if model in ("AlexNet", "ResNet34"):
        return models.resolve_weights("none")
    return models.resolve_weights(saved["provenance"]["parameters"]["weights"], architecture=model)


def shortcut_runs(
    saved: dict[str, Any],
    model: str,
    data: datasets.XrayDataset,
    frames: dict[str, pd.DataFrame],
    *,
    border_fraction: float,
    weights: models.Weights,
    output_dir: Path,
    provenance: dict[str, Any],
) -> dict[str, train.ModelRun]:
    """Train ``model`` again, as its chapter did, on images whose centre (``"border"`` kept) or border (``"center"`` kept) is black.

    ``data`` and ``frames`` come from :func:`chapter_frames`.  Returns
    ``{"border": run, "center": run}``; the test images are masked the same way,
    because the mask is the model's first layer.
    """
    chapter = saved["provenance"]["chapter"]
    protocol = training_protocol(saved, model)
    build = model_builder(chapter, model, protocol["image_size"], len(data.classes), weights)
    stem = Path(train.model_filename(model, protocol["image_size"], data.name, data.task)).stem
    runs = {}
    for keep in ("border", "center"):
        runs[keep] = train.train_and_test(
            f"{model} ({keep} only)",
            partial(lambda keep: models.with_region_mask(build(), keep=keep, border_fraction=border_fraction), keep),
            frames,
            **protocol,
            path=output_dir / f"{stem}-{keep}-only.keras",
            classes=data.classes,
            provenance=provenance,
            keep_model=False,
        )
    return runs


def without_files(table: pd.DataFrame, files: set[str], classes: list[str], *, n_resamples: int, seed: int) -> dict[str, Any]:
    """Test metrics of a predictions table with the images named in ``files`` left out, beside those of all of them."""
    names = table["file"].map(lambda f: Path(f).name)
    kept = table[~names.isin(files)]
    y_all = table["true"].map(classes.index).to_numpy()
    y_kept = kept["true"].map(classes.index).to_numpy()
    score = partial(evaluate.bootstrap_metrics, classes=classes, n_resamples=n_resamples, seed=seed)
    return {
        "n_all": len(table),
        "n_removed": int(len(table) - len(kept)),
        "all": score(y_all, results.probabilities(table, classes)),
        "without": score(y_kept, results.probabilities(kept, classes)) if len(kept) else None,
    }


def external_predictions(model: keras.Model, frame: pd.DataFrame, classes: list[str], image_size: int, batch_size: int) -> pd.DataFrame:
    """A saved model's predictions on images from another dataset (``frame`` rows), as a predictions table.

    The true class may be one the model never learned (pneumonia for the task-1 model).
    """
    images = pipeline.make_dataset(frame["path"], np.zeros(len(frame)), image_size=(image_size, image_size), batch_size=batch_size, cache=False)
    proba, _ = evaluate.predict_proba(model, images)
    return evaluate.predictions_frame(frame, proba, classes)


def rates_beside(inside: pd.DataFrame, outside: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Recall and specificity of each class on the chapter's own test set and on external images, side by side."""
    a = evaluate.class_rates(inside["true"], inside["predicted"], classes)
    b = evaluate.class_rates(outside["true"], outside["predicted"], classes)
    return a.merge(b, on=["class", "measure"], how="outer", suffixes=("_test", "_external"))
