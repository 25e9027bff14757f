"""Chapter 04's trust checks: explanations, the shortcut test, leakage, external data and calibration.

Everything starts from what the modelling chapters saved (:mod:`xrayutils.results`):
their :class:`~xrayutils.protocol.TrainingProtocol` says how to retrain a model,
their data fingerprint guards "the same split", their test predictions are
re-scored.  Each check returns plain results for the results file;
:func:`findings` turns them into one sentence per check and model for the model
cards of chapter 05.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from xrayutils import audit, datasets, evaluate, explain, jobs, models, predict, prose, results, train, within
from xrayutils.protocol import TrainingProtocol

#: The shortcut test's variants: what the retrained model sees, by the region it keeps.
SHORTCUT_VARIANTS = {"border": "lungs hidden", "center": "border hidden"}


def key(record: dict[str, Any]) -> str:
    """How results and findings name a model: ``"<chapter>/<model>"``."""
    return f"{record['chapter']}/{record['model']}"


def label(record: dict[str, Any]) -> str:
    """How figures name a model, short: ``"VGG16 (01)"``."""
    return f"{record['model']} ({record['chapter'][:2]})"


def best_records(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each chapter's best model (:func:`xrayutils.results.best_model`, by test ROC AUC), as its record."""
    chapters = dict.fromkeys(r["chapter"] for r in records)
    best = {chapter: results.best_model(records, chapter) for chapter in chapters}
    return {r["chapter"]: r for r in records if best[r["chapter"]] == r["model"]}


def overview(records: list[dict[str, Any]], best: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Every model found: chapter, data, weights, whether it ran and whether it is its chapter's best."""
    return pd.DataFrame([
        {"chapter": r["chapter"], "model": r["model"], "data": r["dataset"], "weights": r["weights"],
         "status": "ok" if "metrics" in r else f"FAILED: {r['error']}",
         "best of its chapter (ROC AUC)": best.get(r["chapter"], {}).get("model") == r["model"]}
        for r in records
    ])


# 1. Explanations

def even_border_share(border_fraction: float) -> float:
    """The share of an image's area in its border: what a heat map spread evenly would put there."""
    return 1 - (1 - 2 * border_fraction) ** 2


def gradcam(
    best: dict[str, dict[str, Any]], data_dir: str | Path | None, *, heatmap_images: int, border_fraction: float, seed: int
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Grad-CAM of each chapter's best model: examples to show (by :func:`label`) and heat in the border (by :func:`key`).

    The border share is averaged over ``heatmap_images`` test images drawn with
    ``seed`` (0: all of them), less their flat maps (:func:`xrayutils.explain.flat_maps`),
    which are counted instead: ``border_share`` is ``None`` when every map is flat.
    ``feature_map`` is the explained map's height and width in cells: at 1 x 1
    (InceptionV3 at 96 px) every map is flat by construction.
    """
    shown, heat = {}, {}
    for record in best.values():
        model, classes = predict.load_model(results.model_path(record))
        table = results.predictions(record)
        root = datasets.locate(record["dataset"].split("/")[0], data_dir)
        shown[label(record)] = explain.examples(model, explain.pick_examples(table, classes, seed=seed), root, classes)
        sample = table.sample(min(heatmap_images or len(table), len(table)), random_state=seed)
        maps = explain.examples(model, sample, root, classes)["heatmaps"]
        share = pd.Series(explain.border_share(maps, border_fraction)).mean()
        heat[key(record)] = {"images": len(sample), "flat_maps": int(explain.flat_maps(maps).sum()),
                             "border_share": None if pd.isna(share) else float(share),
                             "feature_map": [int(n) for n in explain.feature_map_layer(model).input.shape[1:3]]}
    return shown, heat


def gradcam_table(heat: dict[str, dict[str, Any]], border_fraction: float) -> pd.DataFrame:
    """The measured border shares (of the maps that are not flat) beside an even map's, and each explained map's size."""
    table = pd.DataFrame(heat).T.assign(even_map=even_border_share(border_fraction))
    if "feature_map" in table:
        table["feature_map"] = [feature_map_text(size) for size in table["feature_map"]]
    return table.rename(
        columns={"border_share": "heat in the border (maps not flat)", "images": "test images",
                 "flat_maps": "flat maps (no explanation)", "even_map": "an even map", "feature_map": "feature map (cells)"}
    )


def feature_map_text(size: list[int] | None) -> str:
    """``"3 × 3"``, or ``"1 × 1: flat by construction"`` for a map of one cell, which Grad-CAM cannot localise within."""
    if not size:
        return "–"
    return f"{size[0]} × {size[1]}" + (": flat by construction" if list(size) == [1, 1] else "")


def gradcam_text(h: dict[str, Any], even: float) -> str:
    """What one model's Grad-CAM maps show, in a sentence: the border share, or that its maps are flat (and why, where it must be)."""
    flat = h.get("flat_maps", 0)
    if h.get("feature_map") == [1, 1]:
        return ("Grad-CAM cannot explain it at this image size: its last feature map is a single cell, so every map is flat "
                "by construction (a larger image gives the map cells to localise with).")
    if h["border_share"] is None:
        return f"Grad-CAM gives no explanation: all {h['images']} of its maps are flat."
    of = f" of its {h['images'] - flat} maps that are not flat ({flat} flat)" if flat else ""
    return f"Grad-CAM puts {h['border_share']:.0%} of its heat in the image border{of} (an even map: {even:.0%})."


# 2. The shortcut test

def chapter_frames(saved: dict[str, Any], data_dir: str | Path | None) -> tuple[datasets.XrayDataset, dict[str, pd.DataFrame]]:
    """The dataset and train/validation/test split a chapter used, loaded again and checked by fingerprint.

    A different fingerprint means other images (or labels) than the chapter saw, so
    a retrained model could not be set beside the chapter's: that is an error.
    """
    provenance = saved["provenance"]
    dataset, recorded = next(iter(provenance["datasets"].items()))
    data, frames = train.load_split(*dataset.split("/"), TrainingProtocol.from_results(saved), data_dir)
    if data.fingerprint() != recorded["fingerprint"]:
        raise ValueError(
            f"{dataset} now has fingerprint {data.fingerprint()}, but {provenance['chapter']} trained on "
            f"{recorded['fingerprint']} ({recorded['root']}): rerun {provenance['chapter']} on this data first"
        )
    return data, frames


def shortcut_runs(
    saved: dict[str, Any],
    model: str,
    data: datasets.XrayDataset,
    frames: dict[str, pd.DataFrame],
    *,
    mask: Callable[[keras.Model, str, float], keras.Model],
    border_fraction: float,
    weights: models.Weights,
    output_dir: Path,
    provenance: dict[str, Any],
) -> dict[str, jobs.ModelRun]:
    """Train ``model`` again, as its chapter did, on images whose centre (``"border"`` kept) or border (``"center"`` kept) is black.

    ``mask(model, keep, border_fraction)`` puts the chapter's model behind the
    mask (chapter 04 writes it on its page: :func:`xrayutils.chapter_models.masked`).
    ``data`` and ``frames`` come from :func:`chapter_frames`, ``weights`` from
    :func:`xrayutils.models.starting_weights` with the chapter's ``weights``.  Returns
    ``{"border": run, "center": run}``; the test images are masked the same way,
    because the mask is the model's first layer.  Each variant trains once, with
    the chapter's first training seed.
    """
    protocol = TrainingProtocol.from_results(saved).for_model(model)
    protocol = protocol.for_seed(protocol.training_seeds[0])  # the seed of the chapter's saved model
    stem = Path(jobs.model_filename(model, protocol.image_size, data.name, data.task)).stem

    def masked(keep: str) -> keras.Model:
        plain = models.build(protocol.study, model, protocol.input_shape, len(data.classes), weights, fine_tune=protocol.fine_tune)
        return mask(plain, keep, border_fraction)

    return {
        keep: jobs.train_and_test(
            f"{model} ({keep} only)", partial(masked, keep), frames, protocol, path=output_dir / f"{stem}-{keep}-only.keras",
            classes=data.classes, provenance=provenance, keep_model=False, architecture=model,
        )
        for keep in SHORTCUT_VARIANTS
    }


@dataclass
class ShortcutTest:
    """One chapter's best model retrained on part of each image, scored beside the full-image model."""

    record: dict[str, Any]
    data: datasets.XrayDataset
    weights: models.Weights
    runs: dict[str, jobs.ModelRun]
    metrics: dict[str, dict[str, Any] | None] = dataclasses.field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return shortcut_verdict(self.record, self.metrics.get("lungs hidden"))

    def to_dict(self, border_fraction: float) -> dict[str, Any]:
        """The entry of the results file's ``shortcut`` section."""
        return {"model": self.record["model"], "border_fraction": border_fraction, "metrics": self.metrics,
                "verdict": self.verdict, "errors": {k: run.error for k, run in self.runs.items() if not run.ok}}


def shortcut_tests(
    best: dict[str, dict[str, Any]],
    chapters: list[str],
    data_dir: str | Path | None,
    *,
    mask: Callable[[keras.Model, str, float], keras.Model],
    border_fraction: float,
    n_resamples: int,
    seed: int,
    output_dir: Path,
    provenance: dict[str, Any],
) -> dict[str, ShortcutTest]:
    """Retrain the best model of each of ``chapters`` (those with results) both ways and score it on the test split.

    ``mask`` as :func:`shortcut_runs` takes it.
    """
    tests = {}
    for chapter in [c for c in chapters if c in best]:
        record = best[chapter]
        saved = results.load(Path(record["folder"]).parent, chapter)
        data, frames = chapter_frames(saved, data_dir)
        weights = models.starting_weights(record["model"], TrainingProtocol.from_results(saved).weights)
        runs = shortcut_runs(saved, record["model"], data, frames, mask=mask, border_fraction=border_fraction, weights=weights,
                             output_dir=output_dir, provenance=provenance)
        y_test = results.true_labels(results.predictions(record), record["classes"])
        score = partial(evaluate.bootstrap_metrics, classes=record["classes"], n_resamples=n_resamples, seed=seed)
        metrics = {"full image": record["metrics"]}
        metrics.update({name: score(y_test, runs[keep].probabilities) if runs[keep].ok else None
                        for keep, name in SHORTCUT_VARIANTS.items()})
        tests[chapter] = ShortcutTest(record, data, weights, runs, metrics)
    return tests


def shortcut_table(tests: dict[str, ShortcutTest]) -> pd.DataFrame:
    """Accuracy and ROC AUC of each variant, with a chance row per chapter."""
    rows = []
    for chapter, test in tests.items():
        errors = {SHORTCUT_VARIANTS[keep]: run.error for keep, run in test.runs.items()}
        for variant, m in test.metrics.items():
            rows.append({"chapter": chapter, "model": test.record["model"], "images": variant,
                         "accuracy": evaluate.interval(m["accuracy"]) if m else f"FAILED: {errors[variant]}",
                         "ROC AUC": evaluate.interval(m["roc_auc"]) if m else ""})
        chance = results.predictions(test.record)["true"].value_counts(normalize=True).max()
        rows.append({"chapter": chapter, "model": "chance", "images": "", "accuracy": f"{chance:.3f}", "ROC AUC": "0.500"})
    return pd.DataFrame(rows)


def shortcut_scores(tests: dict[str, ShortcutTest]) -> dict[str, dict[str, Any]]:
    """Each retrained model's test metrics by variant, by :func:`label`: ``{"VGG16 (01)": {"lungs hidden": metrics, ...}}``.

    A variant that failed to train is left out (the table and the verdict say so).
    """
    return {label(test.record): {variant: m for variant, m in test.metrics.items() if m} for test in tests.values()}


def shortcut_verdict(record: dict[str, Any], hidden: dict[str, Any] | None) -> str:
    """What the lungs-hidden model's ROC AUC interval says: the border alone separates the classes, or no evidence of it."""
    model, chapter = record["model"], f"chapter {record['chapter'][:2]}"
    if hidden is None:
        return f"the lungs-hidden {model} of {chapter} failed to train, so the test is open"
    auc = evaluate.interval(hidden["roc_auc"])
    if hidden["roc_auc"]["low"] > 0.5:
        return (f"the {model} of {chapter} that never saw the lungs still separates the classes (ROC AUC {auc}, above chance): "
                "its task can be solved from the image border alone, so its full-image score may rest on shortcuts")
    return (f"the {model} of {chapter} that never saw the lungs does no better than chance by its interval "
            f"(ROC AUC {auc}): no evidence of a border shortcut at this training budget")


# 3. Leakage

def without_files(table: pd.DataFrame, files: set[str], classes: list[str], *, n_resamples: int, seed: int) -> dict[str, Any]:
    """Test metrics of a predictions table with the images named in ``files`` left out, beside those of all of them."""
    names = table["file"].map(lambda f: Path(f).name)
    kept = table[~names.isin(files)]
    score = partial(evaluate.bootstrap_metrics, classes=classes, n_resamples=n_resamples, seed=seed)
    return {
        "n_all": len(table),
        "n_removed": int(len(table) - len(kept)),
        "all": score(results.true_labels(table, classes), results.probabilities(table, classes)),
        "without": score(results.true_labels(kept, classes), results.probabilities(kept, classes)) if len(kept) else None,
    }


def leakage(records: list[dict[str, Any]], pairs: pd.DataFrame, *, n_resamples: int, seed: int) -> dict[str, dict[str, Any]]:
    """Every model that ran, re-scored without its test images that have a near-duplicate in train or elsewhere in test."""
    rescored = {}
    for r in [r for r in records if "metrics" in r]:
        dataset = r["dataset"].split("/")[0]
        duplicated = audit.near_duplicate_files(pairs, dataset=dataset, split="test", partners={(dataset, "train"), (dataset, "test")})
        rescored[key(r)] = without_files(results.predictions(r), duplicated, r["classes"], n_resamples=n_resamples, seed=seed)
    return rescored


def metric_change(rescored: dict[str, Any], metric: str = "accuracy") -> float:
    """How much removing the duplicated images moved ``metric`` (NaN when no image was left)."""
    if rescored["without"] is None:
        return float("nan")
    return round(rescored["without"][metric]["value"] - rescored["all"][metric]["value"], 3)


def leakage_table(rescored: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Per model: how many of its test images were removed, accuracy and ROC AUC without them, and how far each moved.

    The scores on every test image are the chapters' own (their leaderboards):
    left out here so that a dozen models fit the page's column.
    """
    rows = []
    for name, r in rescored.items():
        row = {"model": name, "removed": f"{r['n_removed']} of {r['n_all']}"}
        for metric in ("accuracy", "roc_auc"):
            row[f"{metric} without duplicates"] = evaluate.interval(r["without"][metric]) if r["without"] else "no image left"
            row[f"{metric} change"] = metric_change(r, metric)
        rows.append(row)
    return pd.DataFrame(rows)


def patient_view_leakage(records: list[dict[str, Any]], *, n_resamples: int, seed: int) -> dict[str, dict[str, Any]]:
    """Every covid-xray model that ran, re-scored without the test images of patients seen in training, and without lateral views.

    Patients and views are the collection's metadata where it names the image
    (covid-xray's COVID-19 images: :func:`xrayutils.sources.adults.join_collection`),
    else what the file name tells.  ``metadata`` says whether the metadata was
    there; each of :data:`PATIENT_VIEW_SUBSETS` holds :func:`without_files`' result.
    """
    rescored = {}
    for r in [r for r in records if "metrics" in r and r["dataset"].startswith("covid-xray/")]:
        name, task = r["dataset"].split("/")
        data = datasets.load(name, task=task, root=r["data_root"], check_images=False)
        test, seen = data.subset("test"), set(data.subset("train")["patient_id"])
        left_out = {PATIENT_VIEW_SUBSETS[0]: test[test["patient_id"].isin(seen)], PATIENT_VIEW_SUBSETS[1]: test[test["view"] == "lateral"]}
        table = results.predictions(r)
        rescored[key(r)] = {"metadata": bool(data.metadata["in_collection"].any())} | {
            subset: without_files(table, set(rows["file"].map(lambda f: Path(f).name)), r["classes"], n_resamples=n_resamples, seed=seed)
            for subset, rows in left_out.items()
        }
    return rescored


#: What :func:`patient_view_leakage` leaves out, in turn.
PATIENT_VIEW_SUBSETS = ("patients seen in training", "lateral views")


def patient_view_table(rescored: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Per model and test set (all, without patients seen in training, without lateral views): images, accuracy, ROC AUC."""
    rows = []
    for name, r in rescored.items():
        first = r[PATIENT_VIEW_SUBSETS[0]]
        rows.append({"model": name, "test images": "all", "images": first["n_all"],
                     **{label: evaluate.interval(first["all"][m]) for m, label in (("accuracy", "accuracy"), ("roc_auc", "ROC AUC"))}})
        for subset in PATIENT_VIEW_SUBSETS:
            kept = r[subset]["without"]
            rows.append({"model": name, "test images": f"without {subset}", "images": r[subset]["n_all"] - r[subset]["n_removed"],
                         **{label: evaluate.interval(kept[m]) if kept else "no image left"
                            for m, label in (("accuracy", "accuracy"), ("roc_auc", "ROC AUC"))}})
    return pd.DataFrame(rows)


def patient_view_text(r: dict[str, Any]) -> str:
    """One clause per left-out subset of :func:`patient_view_leakage`: how many images, and the accuracy without them beside all."""
    def clause(subset: str) -> str:
        part = r[subset]
        if not part["n_removed"]:
            return f"no test image is of {subset}" if subset == PATIENT_VIEW_SUBSETS[0] else "no test image is a lateral view"
        if part["without"] is None:
            return f"every test image is of {subset}"
        return (f"without the {prose.count(part['n_removed'], 'test image')} of {subset} accuracy is "
                f"{evaluate.interval(part['without']['accuracy'])} (all {part['n_all']}: {part['all']['accuracy']['value']:.3f})")

    return "; ".join(clause(s) for s in PATIENT_VIEW_SUBSETS)


# 4. External data

def unseen_external(external: datasets.XrayDataset, covid_train: pd.DataFrame, pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test images of ``external`` that no covid-xray model trained on: neither a near-duplicate nor a patient of its training split.

    Used for CoronaHack's TEST split and for the adults without COVID-19.
    Returns the images kept and a table of how many of each class were found, left out (and why) and used.
    """
    candidates = external.subset("test")
    seen_image = candidates["file"].map(lambda f: f.rsplit("/", 1)[-1]).isin(
        audit.near_duplicate_files(pairs, dataset=external.name, split="test", partners={("covid-xray", "train")})
    )
    seen_patient = candidates["patient_id"].isin(set(covid_train["patient_id"]))
    unseen = candidates[~seen_image & ~seen_patient].reset_index(drop=True)
    counts = pd.DataFrame({
        "images": candidates["class_name"].value_counts(),
        "near-duplicate of a training image": candidates[seen_image]["class_name"].value_counts(),
        "patient seen in training": candidates[seen_patient]["class_name"].value_counts(),
        "used": unseen["class_name"].value_counts(),
    }).fillna(0).astype(int)
    return unseen, counts


def external_predictions(model: keras.Model, frame: pd.DataFrame, classes: list[str], batch_size: int) -> pd.DataFrame:
    """A saved model's predictions on images from another dataset (``frame`` rows), as a predictions table.

    Streamed as ``xray-book predict`` streams them (:func:`xrayutils.predict.probabilities`).
    The true class may be one the model never learned (pneumonia for the task-1 model).
    """
    proba, errors = predict.probabilities(model, list(frame["path"]), batch_size=batch_size)
    if errors:  # a dataset's loader has left out what it cannot decode, so this is a file changed since
        unread = "; ".join(f"{frame['path'].iloc[i]}: {why}" for i, why in errors.items())
        raise ValueError(f"{len(errors)} of {len(frame)} images could not be read: {unread}")
    return evaluate.predictions_frame(frame, proba, classes)


def rates_beside(inside: pd.DataFrame, outside: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Recall and specificity of each class on the chapter's own test set and on external images, side by side."""
    a = evaluate.class_rates(inside["true"], inside["predicted"], classes)
    b = evaluate.class_rates(outside["true"], outside["predicted"], classes)
    return a.merge(b, on=["class", "measure"], how="outer", suffixes=("_test", "_external"))


def external_rates(records: list[dict[str, Any]], unseen: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Each covid-xray model's predictions on ``unseen`` and its class rates beside its own test set's, by :func:`key`."""
    outside, rates = {}, {}
    for r in [r for r in records if r["dataset"].startswith("covid-xray/") and "metrics" in r]:
        model, classes = predict.load_model(results.model_path(r))
        outside[key(r)] = external_predictions(model, unseen, classes, TrainingProtocol(**r["protocol"]).batch_size)
        rates[key(r)] = rates_beside(results.predictions(r), outside[key(r)], classes)
        del model
    return outside, rates


def crosstabs(outside: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every model's external images by true class (rows) and predicted class (columns), one block per model."""
    return pd.concat({name: pd.crosstab(table["true"], table["predicted"]) for name, table in outside.items()}).fillna(0).astype(int)


def class_rate(rates: pd.DataFrame, cls: str, measure: str = "recall") -> dict[str, float]:
    """One row of :func:`rates_beside` (``value_test``, ``value_external``, ``low_external``, ...)."""
    return rates[(rates["class"] == cls) & (rates["measure"] == measure)].iloc[0].to_dict()


def rate_at(rate: dict[str, float], where: str) -> dict[str, float]:
    """A :func:`class_rate` on the model's own test set (``where="test"``) or on ``"external"`` images, as ``{"value", "low", "high"}``."""
    return {part: rate[f"{part}_{where}"] for part in ("value", "low", "high")}


def rate_text(rate: dict[str, float], where: str) -> str:
    """``"0.90 [0.80, 0.95]"``: :func:`rate_at` as a page gives it."""
    return evaluate.interval(rate_at(rate, where), 2)


# 5. Adults without COVID-19

#: How the adults' classes are reported.
ADULT_GROUPS = {"no_finding": "adults, no finding", "pneumonia": "adults, other finding"}
#: Where a model's calls of its own test set's images without COVID-19 are reported.
OWN_TEST = "own test set, not COVID-19"
#: Where a CoronaHack model's calls of its own normal test images are reported.
OWN_NORMAL = "own test set, normal"


@dataclass(frozen=True)
class Call:
    """What an adults' check counts: images called ``cls`` (said as ``said``), against the model's own test images of ``own``.

    ``compared`` is the adults' group whose share decides the verdict: for a
    COVID-19 detector every adult here is a false positive; for a pneumonia
    detector only those with no finding are.
    """

    cls: str
    said: str
    own: str
    compared: str


#: The two checks: the COVID-19 detectors (chapters 01, 02) and the pneumonia detectors (chapter 03).
CALLS = {"covid": Call("covid", "COVID-19", OWN_TEST, "adults, all"),
         "pneumonia": Call("pneumonia", "pneumonia", OWN_NORMAL, ADULT_GROUPS["no_finding"])}


def called(table: pd.DataFrame, cls: str = "covid") -> dict[str, float]:
    """How many images of a predictions table are called ``cls``: ``called``, ``n`` and the share with its Wilson interval."""
    n = int((table["predicted"] == cls).sum())
    return {"called": n, "n": len(table), **evaluate.proportion(n, len(table))}


def adult_calls(
    record: dict[str, Any], adults: pd.DataFrame, call: Call = CALLS["covid"]
) -> tuple[dict[str, dict[str, float]], pd.DataFrame]:
    """The share of images a model calls ``call.cls``: its own test images of other classes, and the adults.

    The saved model (the chapter's first training seed) predicts both sets, so
    that the two shares come from one model; the chapter's own figures are its
    seed ensemble's.  Returns the shares by group (``call.own``, then
    :data:`ADULT_GROUPS` and ``"adults, all"``) and the adults' predictions.
    """
    model, classes = predict.load_model(results.model_path(record))
    batch_size = TrainingProtocol(**record["protocol"]).batch_size
    own = results.predictions(record)
    own = own[own["true"] != call.cls].assign(class_name=lambda t: t["true"])
    own["path"] = [str(Path(record["data_root"]) / f) for f in own["file"]]
    shares = {call.own: called(external_predictions(model, own, classes, batch_size), call.cls)}
    table = external_predictions(model, adults, classes, batch_size)
    shares |= {group: called(table[table["true"] == cls], call.cls) for cls, group in ADULT_GROUPS.items()}
    shares["adults, all"] = called(table, call.cls)
    return shares, table.assign(finding=adults["finding"].to_numpy())


def adult_difference(shares: dict[str, dict[str, float]], call: Call = CALLS["covid"]) -> dict[str, float]:
    """How much more often adults (``call.compared``) are called ``call.cls`` than own test images, with Newcombe's interval."""
    return evaluate.difference(shares[call.own], shares[call.compared])


def adult_verdict(shares: dict[str, dict[str, float]], call: Call = CALLS["covid"]) -> str:
    """One sentence from :func:`adult_calls`' shares: are adults (``call.compared``) called ``call.cls`` more often than own test images?

    "More often" means Newcombe's interval of the difference of the two shares
    (:func:`~xrayutils.evaluate.difference`) lies above zero, as Methods states;
    an interval holding zero does not show the model is free of the confound,
    only that this check could not tell.
    """
    adults, own = shares[call.compared], shares[call.own]
    who = "the adults without it" if call.compared == "adults, all" else f"the {call.compared.removeprefix('adults, ')} adults"
    mine = "its own test images without it" if call.own == OWN_TEST else f"its {call.own.removeprefix('own test set, ')} test images"
    d = adult_difference(shares, call)
    said = (f"says {call.said} for {share_text(adults)} of {who}, against {share_text(own)} of {mine} "
            f"(difference {evaluate.signed_interval(d)})")
    if evaluate.side(d) > 0:
        return f"{said}: more often, so it answers to what the adults' images share (age, source), not to {call.said} alone"
    if evaluate.side(d) < 0:
        return f"{said}: fewer, so the adults' age and source do not by themselves make it say {call.said}"
    return (f"{said}: no difference detected at this number of images, so this check finds no sign, "
            "and no proof against, that age or source drive it")


def adult_checks(
    records: list[dict[str, Any]], adults: pd.DataFrame, call: Call = CALLS["covid"]
) -> tuple[dict[str, dict[str, Any]], dict[str, pd.DataFrame]]:
    """Every model with a ``call.cls`` class that ran, by :func:`key`: its :func:`adult_calls` shares and verdict, and its predictions."""
    checked, predictions = {}, {}
    for record in [r for r in records if call.cls in r["classes"] and "metrics" in r]:
        shares, predictions[key(record)] = adult_calls(record, adults, call)
        checked[key(record)] = {"shares": shares, "verdict": adult_verdict(shares, call), "called": call.cls}
    return checked, predictions


def adult_verdicts(checked: dict[str, dict[str, Any]]) -> str:
    """Every checked model's verdict (:func:`adult_checks`) in one sentence, as chapters 04 and 05 say it."""
    return "; ".join(f"{name} {c['verdict']}" for name, c in checked.items()) or "no model with a COVID-19 class was checked"


def share_text(share: dict[str, float]) -> str:
    """``"12/19 = 0.63 [0.41, 0.81]"``: a :func:`called` share with its interval."""
    return f"{share['called']}/{share['n']} = {evaluate.interval(share, 2)}"


def calls_by_finding(predictions: dict[str, pd.DataFrame], cls: str = "covid") -> pd.DataFrame:
    """Per class and finding of the adults: how many images, and how many of them each model (by :func:`key`) calls ``cls``."""
    def calls(table: pd.DataFrame) -> pd.Series:
        return table.assign(hit=table["predicted"] == cls).groupby(["true", "finding"])["hit"].sum()

    images = next(iter(predictions.values())).groupby(["true", "finding"]).size().rename("images")
    return pd.concat([images, *(calls(t).rename(name) for name, t in predictions.items())], axis=1).sort_values("images", ascending=False)


#: A source classifier at or above this ROC AUC tells adults from children almost without error.
NEAR_PERFECT_AUC = 0.95


def source_classifier(
    adults: pd.DataFrame, children: pd.DataFrame, *, thumbnail: int, folds: int, n_resamples: int, seed: int
) -> dict[str, Any]:
    """How well the source (adult or child) can be read from the pixels alone: a cross-validated logistic regression.

    Each image becomes its ``thumbnail`` x ``thumbnail`` grey pixels; ``folds``
    (fewer when a source has fewer patients) keep a patient's images together (:class:`~sklearn.model_selection.StratifiedGroupKFold`),
    and every image is scored by the model of the fold it was left out of.  The
    classifier is deliberately small: if even it separates the sources, a CNN
    trained on COVID-19 (adults) against normal or pneumonia (children) can too.

    Returns
    -------
    dict
        ``images`` per source, ``thumbnail``, ``folds``, and out-of-fold ``metrics``
        (accuracy, balanced accuracy, ROC AUC) with bootstrap intervals.
    """
    frame = pd.concat([children.assign(adult=0), adults.assign(adult=1)], ignore_index=True)
    try:
        fold = within.grouped_folds(frame, folds, seed, target="adult")  # every fold needs both sources
    except ValueError:
        raise ValueError("the source classifier needs at least two patients of each source") from None
    proba = within.thumbnail_out_of_fold(frame, fold, thumbnail, target="adult")
    folds = len(np.unique(fold))
    metrics = evaluate.bootstrap_metrics(frame["adult"].to_numpy(), proba, classes=["child", "adult"], n_resamples=n_resamples, seed=seed)
    return {"images": {"adults": len(adults), "children": len(children)}, "thumbnail": thumbnail, "folds": folds,
            "metrics": {m: metrics[m] for m in ("accuracy", "balanced_accuracy", "roc_auc")}}


def source_table(source: dict[str, Any]) -> pd.DataFrame:
    """The source classifier's images, folds and out-of-fold scores with their 95% bootstrap intervals, in one row."""
    row = {**{f"{who} images": n for who, n in source["images"].items()}, "folds": source["folds"],
           **{metric: evaluate.interval(ci) for metric, ci in source["metrics"].items()}}
    return pd.DataFrame([row], index=[f"logistic regression, {source['thumbnail']}x{source['thumbnail']} grey pixels"])


def source_verdict(source: dict[str, Any]) -> str:
    """One sentence from :func:`source_classifier`'s score: is the source (age) near perfectly readable from the pixels?"""
    auc, balanced = source["metrics"]["roc_auc"], source["metrics"]["balanced_accuracy"]
    said = (f"a logistic regression on {source['thumbnail']}x{source['thumbnail']} grey thumbnails tells adults from "
            f"children with ROC AUC {evaluate.interval(auc, 2)} (balanced accuracy {evaluate.interval(balanced, 2)})")
    if auc["value"] >= NEAR_PERFECT_AUC:
        return (f"{said}: near perfect. Since every COVID-19 image is an adult's and no other is, age or source "
                "alone could explain the published accuracies")
    return (f"{said}: below {NEAR_PERFECT_AUC}, so the source is not trivially readable from the raw pixels, "
            "though a CNN may still find it")


def adults_table(checked: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per model of :func:`adult_checks`, one column per group: images called its class, with share and 95% Wilson interval."""
    return pd.DataFrame({name: {group: share_text(share) for group, share in c["shares"].items()} for name, c in checked.items()}).T


# 6. Calibration

def calibration(
    best: dict[str, dict[str, Any]], *, n_bins: int, n_resamples: int, seed: int
) -> tuple[dict[str, pd.DataFrame], dict[str, dict[str, float]]]:
    """Reliability bins of each chapter's best model and its expected calibration error with a bootstrap interval, by :func:`key`."""
    bins, ece = {}, {}
    for record in best.values():
        table = results.predictions(record)
        y_true, proba = results.true_labels(table, record["classes"]), results.probabilities(table, record["classes"])
        bins[key(record)] = evaluate.reliability_bins(y_true, proba, n_bins=n_bins)
        ece[key(record)] = evaluate.bootstrap_statistic(
            partial(evaluate.expected_calibration_error, n_bins=n_bins), y_true, proba, n_resamples=n_resamples, seed=seed,
        )
    return bins, ece


def calibration_table(bins: dict[str, pd.DataFrame], ece: dict[str, dict[str, float]]) -> pd.DataFrame:
    """ECE with its interval, mean confidence and accuracy of each model."""
    def weighted(b: pd.DataFrame, column: str) -> str:
        return f"{(b[column] * b['count']).sum() / b['count'].sum():.3f}"

    return pd.DataFrame({name: {"ECE [95% CI]": evaluate.interval(e), "mean confidence": weighted(bins[name], "confidence"),
                                "accuracy": weighted(bins[name], "accuracy")} for name, e in ece.items()}).T


# What the checks found, per model

def findings(checks: dict[str, Any]) -> dict[str, dict[str, str]]:
    """One sentence per check and model (by :func:`key`) from chapter 04's results, for the model cards."""
    found: dict[str, dict[str, str]] = {}

    def say(name: str, check: str, text: str) -> None:
        found.setdefault(name, {})[check] = text

    even = checks.get("gradcam", {}).get("even_map_share")
    for name, h in checks.get("gradcam", {}).get("models", {}).items():
        say(name, "gradcam", gradcam_text(h, even))
    for chapter, s in checks.get("shortcut", {}).items():
        say(f"{chapter}/{s['model']}", "shortcut", f"Shortcut test: {s['verdict']}.")
    for name, r in checks.get("leakage", {}).items():
        change = evaluate.signed(metric_change(r))
        say(name, "leakage", f"Removing {r['n_removed']} near-duplicated test images changes its accuracy by {change}.")
    images = checks.get("external", {}).get("images")
    for name, rows in checks.get("external", {}).get("rates", {}).items():
        n = class_rate(pd.DataFrame(rows), "normal")
        say(name, "external", f"On {images} external CoronaHack TEST images, normal recall is {rate_text(n, 'external')} "
                              f"against {n['value_test']:.2f} on its own test set.")
    for name, r in checks.get("patients", {}).items():
        say(name, "patients", f"Patients and views: {patient_view_text(r)}.")
    adults = checks.get("adults", {})
    for name, a in (adults.get("models", {}) | adults.get("pneumonia_models", {})).items():
        say(name, "adults", f"Adults without COVID-19: it {a['verdict']}.")
    for name, e in checks.get("calibration", {}).get("ece", {}).items():
        say(name, "calibration", f"Expected calibration error {evaluate.interval(e)}.")
    return found
