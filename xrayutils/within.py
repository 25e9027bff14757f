"""COVID-19 against other findings within one collection: the test without the children.

Every COVID-19 image of covid-xray is an adult's from the collection of Cohen et
al.; every other image a child's from one hospital.  Chapter 04 shows the models
answer to that.  Here the children are gone: the collection's own adults, frontal
views only, COVID-19 against every other finding it holds (no finding, other
pneumonias, ARDS).  Images are split by patient (:func:`grouped_folds`): no
patient is on both sides of a fold.  Two methods score every image out of fold:

- :func:`vgg16_out_of_fold`, the task-1 recipe: chapter 01's protocol (frozen
  VGG16 base, its weights, its head, epochs and optimiser), with the base's
  features cached once, one head per fold and training seed, and the seeds'
  ensemble;
- :func:`thumbnail_out_of_fold`, a logistic regression on a few grey pixels per
  image: what the pixels give without any network.

What it can show: how well COVID-19 is told from other adult lung findings of
the same collection, without age as a cue.  What it cannot: the collection still
mixes hospitals, journal figures and web sources, so source is not gone, and 100
or so images per class give wide intervals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from xrayutils import audit, constraints, datasets, evaluate, progress, prose
from xrayutils.protocol import TrainingProtocol

if TYPE_CHECKING:
    from xrayutils import models

#: The task of the collection this test uses, and its classes (COVID-19 first).
TASK = "covid"
CLASSES = datasets.classes(datasets.ADULTS, TASK)
#: The metrics the test reports, by the names :func:`xrayutils.evaluate.point_metrics` gives them.
METRICS = {"roc_auc": "ROC AUC", "balanced_accuracy": "balanced accuracy", "recall_covid": "sensitivity",
           "recall_other": "specificity"}


@dataclass(frozen=True)
class WithinSettings:
    """How the within-collection test is run: who is in it, how it is split, how it is scored.

    ``min_age`` leaves out images of patients younger than this (an image
    without an age stays in, and is counted); ``folds`` is the number of
    patient-grouped folds (fewer when a class has fewer patients);
    ``thumbnail`` the side of the baseline's grey thumbnails.
    """

    folds: int = 5
    min_age: float = 18.0
    thumbnail: int = 32
    n_resamples: int = 1000
    seed: int = 42

    def __post_init__(self) -> None:
        constraints.check("within_folds", self.folds)  # the chapter's parameter that sets it
        if self.thumbnail < 2:
            raise ValueError(f"thumbnail must be at least 2, got {self.thumbnail}")


def adult_images(collection: datasets.XrayDataset, min_age: float) -> tuple[pd.DataFrame, dict[str, int]]:
    """The collection's frontal images of patients ``min_age`` or older (or of unknown age), and what was left out.

    ``collection`` is :func:`xrayutils.datasets.load` of the adults' collection
    with ``task="covid"``.  Returns the images and the counts: ``lateral``
    views and ``younger`` patients left out, ``unknown age`` kept.
    """
    if collection.name != datasets.ADULTS or collection.task != TASK:
        raise ValueError(f"the within-collection test needs {datasets.ADULTS} loaded with task={TASK!r}, "
                         f"got {collection.name}/{collection.task}")
    frame = collection.metadata
    lateral = frame["view"] == "lateral"
    younger = frame["age"] < min_age  # NaN compares False: an unknown age stays in
    kept = frame[~lateral & ~younger].reset_index(drop=True)
    counts = {"lateral": int(lateral.sum()), "younger": int((younger & ~lateral).sum()), "unknown age": int(kept["age"].isna().sum()),
              **{cls: int((kept["class_name"] == cls).sum()) for cls in CLASSES},
              "patients": int(kept["patient_id"].nunique())}
    return kept, counts


def untestable(frame: pd.DataFrame) -> str | None:
    """Why :func:`adult_images`' ``frame`` cannot be split by patient into folds that each hold both classes, or ``None``.

    An older download of the collection holds no COVID-19 image, and a shrunk
    run may keep a single patient of a class: the chapter then says so instead
    of failing with every other check of the chapter.
    """
    patients = frame.groupby("class_name")["patient_id"].nunique() if len(frame) else pd.Series(dtype=int)
    short = [f"{prose.count(int(patients.get(cls, 0)), 'patient')} in class {cls}" for cls in CLASSES if patients.get(cls, 0) < 2]
    return f"{prose.join(short)}; the test needs at least 2 in each" if short else None


def grouped_folds(frame: pd.DataFrame, folds: int, seed: int, target: str = "label") -> np.ndarray:
    """The fold (0 to ``folds`` - 1) of each row: stratified by ``target``, every patient's images in one fold.

    scikit-learn's :class:`~sklearn.model_selection.StratifiedGroupKFold` with
    ``patient_id`` as the group; fewer folds when a class has fewer patients
    than ``folds`` (every fold must hold both classes to be scored).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    folds = min(folds, int(frame.groupby(target)["patient_id"].nunique().min()))
    if folds < 2:
        raise ValueError("a patient-grouped split needs at least two patients in every class")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold = np.full(len(frame), -1)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(frame)), frame[target], groups=frame["patient_id"])):
        fold[test] = k
    return fold


def grouped_validation(frame: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of ``frame``'s rows held out for validation: about ``fraction`` of its patients, all their images."""
    patients = np.sort(frame["patient_id"].unique())
    rng = np.random.default_rng(seed)
    held = rng.choice(patients, size=max(1, int(round(fraction * len(patients)))), replace=False)
    return frame["patient_id"].isin(held).to_numpy()


def thumbnail_out_of_fold(frame: pd.DataFrame, fold: np.ndarray, thumbnail: int, target: str = "label") -> np.ndarray:
    """P(class 1) of each row from a logistic regression on ``thumbnail`` x ``thumbnail`` grey pixels, trained without its fold.

    Also the source classifier of chapter 04 (adults against children).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import PredefinedSplit, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pixels = np.stack([audit.gray_pixels(p, thumbnail).ravel() for p in frame["path"]])
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    return cross_val_predict(classifier, pixels, frame[target], cv=PredefinedSplit(fold), method="predict_proba")[:, 1]


def vgg16_out_of_fold(
    frame: pd.DataFrame, fold: np.ndarray, protocol: TrainingProtocol, weights: models.Weights, *,
    on_step: Callable[[str], None] = progress.report,
) -> tuple[dict[int, np.ndarray], dict[str, Any]]:
    """P(class 1) of each row, per training seed, from the task-1 recipe trained without the row's fold.

    The frozen VGG16 base of chapter 01 (:func:`xrayutils.chapter_models.vgg16_transfer`), started from
    ``weights`` (the protocol's, as :func:`xrayutils.models.resolve_weights` gives
    them), encodes every image once plainly and, when the protocol augments,
    ``augmented_views`` times augmented; the views are drawn once and shared by
    the seeds.  For each seed and fold a fresh head (the seed's initial weights)
    trains on the fold's other patients with :func:`xrayutils.train.fit`
    (validation: a tenth or so of those patients, ``validation_fraction``; the
    best epoch kept) and predicts the fold.

    ``on_step`` hears where it is (by default the runner's progress line).
    Returns the probabilities by seed and what ran: weights, views, seconds.
    """
    import time

    import keras

    from xrayutils import augmentations, caching, devices, models, pipeline, precision, train

    started = time.perf_counter()
    train.set_seed(protocol.seed, protocol.jit_compile)
    policy = devices.set_precision(protocol.mixed_precision, model="VGG16", work=precision.FROZEN_FORWARD)
    model = models.build("class-challenge", "VGG16", protocol.input_shape, len(CLASSES), weights)
    encoder, head = caching.split_frozen(model)
    images = pipeline.make_dataset(frame["path"], frame["label"], image_size=(protocol.image_size,) * 2,
                                   batch_size=protocol.batch_size, cache=False)
    on_step(f"within the collection: encoding {len(frame)} images")
    plain, labels = caching.encode(encoder, images)
    layer = augmentations.augmentation_for(protocol)
    views = protocol.augmented_views if layer is not None else 1
    augmented, augmented_labels = caching.encode(encoder, images, views=views, augmentation=layer) if layer is not None else (plain, labels)
    encode_seconds = time.perf_counter() - started
    by_seed = {}
    for seed in protocol.training_seeds:
        run = dataclasses.replace(protocol.for_seed(seed), cache_features=False, augment=False)
        proba = np.full(len(frame), np.nan)
        for k in np.unique(fold):
            on_step(f"within the collection: seed {seed}, fold {k + 1} of {len(np.unique(fold))}")
            rest = np.flatnonzero(fold != k)
            held = grouped_validation(frame.iloc[rest], protocol.validation_fraction, seed + k)
            fit_on, validate_on = rest[~held], rest[held]
            train.set_seed(seed, protocol.jit_compile)
            fresh = keras.models.clone_model(head)  # the seed's initial weights
            batches = dict(batch_size=protocol.batch_size, seed=seed)
            train.fit(fresh, caching.feature_dataset(augmented[:, fit_on], augmented_labels[:, fit_on], shuffle=True, **batches),
                      caching.feature_dataset(plain[:, validate_on], labels[:, validate_on], shuffle=False, **batches), run,
                      class_weight=run.class_weights(frame["label"].to_numpy()[fit_on], len(CLASSES)), verbose=0)
            test = np.flatnonzero(fold == k)
            proba[test] = fresh.predict(plain[0, test], batch_size=protocol.batch_size, verbose=0).reshape(-1)
        by_seed[seed] = proba
    return by_seed, {"weights": weights.description, "pretrained": weights.pretrained, "views": views, "precision": policy,
                     "encode_seconds": round(encode_seconds, 1), "seconds": round(time.perf_counter() - started, 1)}


def scores(frame: pd.DataFrame, by_seed: dict[int, np.ndarray], *, n_resamples: int, seed: int) -> dict[str, Any]:
    """The metrics of :data:`METRICS` with 95% intervals, for the seeds' ensemble (their mean probability), and each seed's."""
    y_true = frame["label"].to_numpy()
    ensemble = np.mean(list(by_seed.values()), axis=0)
    metrics = evaluate.bootstrap_metrics(y_true, ensemble, classes=CLASSES, n_resamples=n_resamples, seed=seed)
    per_seed = evaluate.seed_metrics(y_true, by_seed, classes=CLASSES)
    return {"metrics": {m: metrics[m] for m in METRICS}, "seeds": sorted(by_seed),
            "spread": {m: s for m, s in evaluate.seed_spread(per_seed).items() if m in METRICS}}


def metrics_text(scored: dict[str, Any]) -> str:
    """``"ROC AUC 0.81 [0.74, 0.87], balanced accuracy ..."``: a :func:`scores` result in a clause, with the seeds' spread."""
    m = scored["metrics"]
    text = ", ".join(f"{label} {evaluate.interval(m[k], 2)}" for k, label in METRICS.items())
    if len(scored.get("seeds", [])) > 1:
        text += f"; one seed alone: ROC AUC {evaluate.spread_text(scored['spread']['roc_auc'], 2)}"
    return text


def verdict(method: str, inside: dict[str, float], headline: dict[str, float] | None) -> str:
    """One sentence: ``method``'s ROC AUC within the collection (``inside``) against chance and task 1's on covid-xray (``headline``).

    "Lower" and "higher" only where the interval of the difference of the two
    (:func:`~xrayutils.evaluate.difference`, from their bootstrap intervals: separate
    test sets) excludes zero; against chance, where ``inside``'s interval excludes 0.5.
    """
    said = f"{method} tells COVID-19 from other adult findings with ROC AUC {evaluate.interval(inside, 2)}"
    chance = ("above chance" if inside["low"] > 0.5 else "below chance" if inside["high"] < 0.5
              else "not distinguishable from chance (0.5)")
    if headline is None:
        return f"{said}, {chance}; task 1 did not run, so there is no headline to set it beside"
    beside = f"task 1's {evaluate.interval(headline, 2)} on covid-xray, where the children are the other class"
    d = evaluate.difference(headline, inside)
    by = f"(difference {evaluate.signed_interval(d)})"
    if evaluate.side(d) < 0:
        return (f"{said}, {chance}, and lower than {beside} {by}: part of task 1's score came from what separates the children "
                "from the adults, not from COVID-19")
    if evaluate.side(d) > 0:
        return f"{said}, {chance}, and higher than {beside} {by}"
    return f"{said}, {chance}, with no difference from {beside} detected at this number of images {by}"


def table(methods: dict[str, dict[str, Any]], headline: dict[str, dict[str, float]], headline_label: str,
          headline_other: str = "normal") -> pd.DataFrame:
    """One row per method (:func:`scores`), and task 1's own test metrics (``headline``) below: each metric with its 95% interval.

    Task 1's specificity is the recall of its other class, ``headline_other``.
    """
    rows = {name: {label: evaluate.interval(m["metrics"][k]) for k, label in METRICS.items()} for name, m in methods.items()}
    names = {k: k.replace("recall_other", f"recall_{headline_other}") for k in METRICS}
    rows[headline_label] = {label: evaluate.interval(headline[names[k]]) if names[k] in headline else "–" for k, label in METRICS.items()}
    return pd.DataFrame(rows).T


def counts_text(counts: dict[str, int], folds: int) -> str:
    """Who is in the test and who was left out (:func:`adult_images`' counts), in a clause."""
    return (f"{prose.count(counts['covid'], 'COVID-19 image')} and {prose.count(counts['other'], 'other image')} of "
            f"{prose.count(counts['patients'], 'patient')} ({counts['unknown age']} without an age); left out: "
            f"{prose.count(counts['lateral'], 'lateral view')} and {prose.count(counts['younger'], 'image')} of younger patients; "
            f"{prose.count(folds, 'fold')}")
