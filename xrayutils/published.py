"""The numbers the reproduced studies published (``published_results.csv``, from ``../shared/reference``).

Chapters 01-03 set their results beside them and the summary (chapter 05) counts
where each published value falls against our intervals.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import pandas as pd

from xrayutils import catalogue, chapters, datasets, evaluate, prose
from xrayutils.protocol import TrainingProtocol


def table(study: str | None = None) -> pd.DataFrame:
    """Every published result, or one study's (``class-challenge`` or ``coronahack``)."""
    with resources.files("xrayutils").joinpath("published_results.csv").open() as handle:
        rows = pd.read_csv(handle)
    return rows if study is None else rows[rows["study"] == study].reset_index(drop=True)


def chapter_rows(chapter: str, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows of ``published`` (default: :func:`table`) for the task ``chapter`` reproduces, in the file's order."""
    chapter_is = chapters.record(chapter)  # its study and the task as the study's table names it
    rows = table() if published is None else published
    chosen = (rows["study"] == chapter_is.study) & rows["task"].str.startswith(chapter_is.published_task)
    return rows[chosen].reset_index(drop=True)


def row(published: pd.DataFrame, chapter: str, model: str) -> pd.Series | None:
    """The published result for this chapter's ``model``, if the reproduced study reported one."""
    record = chapters.get(chapter)
    if record is None or not record.reproduces:
        return None
    return _first(_naming(chapter_rows(chapter, published), model))


def _naming(rows: pd.DataFrame, model: str) -> pd.DataFrame:
    """The rows whose model description names ``model`` as a word (``ResNet34`` in ``Self-defined ResNet34 (...)``)."""
    pattern = re.compile(rf"\b{re.escape(model)}\b")
    return rows[rows["model"].map(lambda text: pattern.search(text) is not None)]


def imagenet_accuracy() -> pd.DataFrame:
    """Each CoronaHack backbone's ImageNet top-1 accuracy, family and size (millions of weights, with its ImageNet classifier).

    From Keras' table of its applications (:data:`xrayutils.catalogue.KERAS_TABLE`, the ``source``), as the
    catalogue records it: what CheXtransfer (Ke et al., CHIL 2021) set against chest X-ray scores.
    """
    rows = [{"model": n.name, "family": n.family, "imagenet_top1": n.imagenet_top1, "parameters_millions": n.parameters_millions,
             "source": catalogue.KERAS_TABLE} for n in catalogue.BACKBONES.values() if n.imagenet_top1 is not None]
    return pd.DataFrame(rows).set_index("model")


def orders(board: pd.DataFrame, metric: str, chapter: str) -> pd.DataFrame:
    """Three orders of the same models side by side: ImageNet's top-1, the study's accuracy, and this run's ``metric``.

    ``board`` is :func:`xrayutils.evaluate.leaderboard`'s table (its ``rank
    interval`` where it has one); the study's rank is over the models it
    published, ours over the models this run ranked.  Rows follow the study's order.
    """
    paper = chapter_rows(chapter)
    imagenet = imagenet_accuracy()
    ours = board.reset_index().set_index("model")
    rows = []
    for model in ours.index:
        found = _first(_naming(paper, model))
        rows.append({
            "model": model,
            "family": imagenet.loc[model, "family"] if model in imagenet.index else "self-defined (no ImageNet weights)",
            "ImageNet top-1": f"{imagenet.loc[model, 'imagenet_top1']:.3f}" if model in imagenet.index else "–",
            "published accuracy": "–" if found is None else f"{found['accuracy']:.3f}",
            "published rank": "–" if found is None else int((paper["accuracy"] > found["accuracy"]).sum() + 1),
            f"{metric} here": ours.loc[model, metric],
            "rank here": ours.loc[model, "rank"],
            **({"rank interval": ours.loc[model, "rank interval"]} if "rank interval" in ours.columns else {}),
        })
    table = pd.DataFrame(rows).set_index("model")
    return table.sort_values("published rank", key=lambda ranks: pd.to_numeric(ranks, errors="coerce"), na_position="last",
                             kind="stable")


#: The dataset each study's rows were measured on (``published_results.csv`` names it in words).
DATASET = {"class-challenge": "covid-xray", "coronahack": "coronahack"}


def on_test_images(paper: pd.Series) -> bool:
    """Whether a published number was measured on test images (task 1's was a last-epoch validation accuracy)."""
    return str(paper["split"]).lower().startswith("test")


def images(paper: pd.Series) -> dict[str, int]:
    """The training and test images behind a published number: the split its dataset column names, else the full dataset's."""
    named = re.search(r"(\d+) train", str(paper["dataset"]))
    full = datasets.source(DATASET[paper["study"]]).full_size["two"]
    return {"train": int(named[1]) if named else full["train"], "test": int(paper["n_test"])}


def accuracy(paper: pd.Series) -> dict[str, float]:
    """The published accuracy with its own Wilson interval on the images it was measured on (the count rounded from the rate).

    0.75 on 36 images is 27 of 36, ``0.750 [0.589, 0.862]``: a published number is
    a measurement on few images, not a constant.
    """
    n = int(paper["n_test"])
    return {"n": n, **evaluate.proportion(round(float(paper["accuracy"]) * n), n)}


def frozen_instead(protocol: TrainingProtocol) -> bool:
    """Whether ``protocol`` freezes a backbone the study fine-tuned whole (CoronaHack's, under ``fine_tune=False``).

    The class-challenge study froze its VGG16 itself, so only CoronaHack's protocol can differ here.
    """
    return protocol.study == "coronahack" and not protocol.fine_tune


def unlike(paper: pd.Series, protocol: TrainingProtocol, *, pretrained: bool, n_train: int, n_test: int) -> list[str]:
    """Every way this model's run (``protocol`` for the model, its weights and image counts) differs from the published one.

    Empty when the two measure the same thing: same split kind, weights, image
    size, epochs, batch, optimiser and learning rate, and the same numbers of
    training and test images.  Decided from the numbers, never from the words of a page.
    """
    theirs = images(paper)
    reasons = [] if on_test_images(paper) else [f"a {paper['split']} score there"]
    if paper["pretrained"] == "imagenet" and not pretrained:
        reasons.append("ImageNet weights there, random here")
    if paper["pretrained"] == "imagenet" and frozen_instead(protocol):
        reasons.append("frozen backbone (a linear probe) here, fine-tuned whole there")

    def differ(pairs: dict[str, tuple[int, int]]) -> list[str]:
        return [f"{ours:,} {what[:-1] if ours == 1 and what.endswith('s') else what} here, {published:,} there"
                for what, (ours, published) in pairs.items() if ours != published]

    reasons += differ({"px": (protocol.image_size, int(paper["image_size"])), "epochs": (protocol.num_epochs, int(paper["epochs"])),
                       "batch": (protocol.batch_size, int(paper["batch_size"]))})
    if (protocol.optimizer.lower(), protocol.learning_rate) != (str(paper["optimizer"]).lower(), float(paper["learning_rate"])):
        reasons.append(f"{protocol.optimizer} at {protocol.learning_rate:g} here, {paper['optimizer']} at {paper['learning_rate']:g} there")
    return reasons + differ({"training images": (n_train, theirs["train"]), "test images": (n_test, theirs["test"])})


def like_for_like(reasons: list[str]) -> str:
    """The ``like for like`` cell of a table: ``"yes"``, or ``"no: "`` and every :func:`unlike` reason."""
    return "no: " + "; ".join(reasons) if reasons else "yes"


def compare(
    results: dict[str, dict[str, dict[str, float]]],
    rows: pd.DataFrame,
    metric_names: list[str],
    *,
    protocol: TrainingProtocol,
    frames: dict[str, pd.DataFrame],
    weights: dict[str, Any],
    source: str,
) -> pd.DataFrame:
    """Our models and the published ones in one table, by model name, each published accuracy with its Wilson interval.

    ``results`` maps a model name to :func:`~xrayutils.evaluate.bootstrap_metrics`
    output; ``rows`` are the chapter's rows of :func:`table`: only the metrics the
    study reported are compared (the chapter's own table has the rest), and one it
    reported for some models only shows as ``-``; ``weights`` maps model names to
    :class:`~xrayutils.models.Weights`.  The ``like for like`` column is :func:`unlike`'s verdict.
    """
    n_train, n_test = len(frames["train"]) + len(frames.get("validation", ())), len(frames["test"])
    papers = {name: paper for name in results if (paper := _first(_naming(rows, name))) is not None}
    reported = [m for m in metric_names if not papers or any(not pd.isna(p.get(m)) for p in papers.values())]
    table = []
    for name, cis in results.items():
        table.append({"model": name, "source": source, "test images": n_test,
                      **{m: evaluate.interval(cis[m]) for m in reported}, "like for like": ""})
        if name not in papers:
            continue
        paper = papers[name]
        shown = {m: "-" if pd.isna(paper.get(m)) else f"{paper[m]:.3f}" for m in reported}
        if "accuracy" in shown and not pd.isna(paper["accuracy"]):
            shown["accuracy"] = evaluate.interval(accuracy(paper))
        reasons = unlike(paper, protocol.for_model(name), pretrained=weights[name].pretrained, n_train=n_train, n_test=n_test)
        table.append({"model": name, "source": f"published ({paper['split']})", "test images": int(paper["n_test"]),
                      **shown, "like for like": like_for_like(reasons)})
    return pd.DataFrame(table)


def _first(rows: pd.DataFrame) -> pd.Series | None:
    return rows.iloc[0] if len(rows) else None


def comparable(rows: pd.DataFrame, names: list[str], metric: str) -> dict[str, float]:
    """The published values that can stand beside our ``metric``, by model name (``{}`` when none can).

    The CoronaHack study's "ROC AUC" came from hard 0/1 predictions, which makes it
    a balanced accuracy: it stands beside our balanced accuracy, and our ROC AUC
    (from probabilities) has no published counterpart.
    """
    column = {"roc_auc": None, "balanced_accuracy": "roc_auc"}.get(metric, metric)
    if column is None:
        return {}
    found = {}
    for name in names:
        matches = _naming(rows, name)
        if len(matches) and not pd.isna(matches.iloc[0][column]):
            found[name] = float(matches.iloc[0][column])
    return found


def setup_beside(
    rows: pd.DataFrame, protocol: TrainingProtocol, frames: dict[str, pd.DataFrame], weights: dict[str, Any], **extra: tuple[Any, Any]
) -> pd.DataFrame:
    """The published setup (``rows`` of one task) and this run's, side by side: data, weights, size, epochs, epoch kept.

    ``weights`` maps model names to :class:`~xrayutils.models.Weights`; ``extra``
    adds rows as ``name=(published, this run)``.
    """
    paper = rows.iloc[0]

    def per_model(setting: str) -> tuple[str, str]:  # one value, or each model's where they differ (AlexNet's epochs)
        theirs = {m: int(r[setting]) for m in weights if (r := _first(_naming(rows, m))) is not None}
        ours = {m: getattr(protocol.for_model(m), {"epochs": "num_epochs"}.get(setting, setting)) for m in weights}
        return tuple(  # type: ignore[return-value]
            f"{next(iter(v.values()))}" if len(set(v.values())) == 1 else ", ".join(f"{m} {x}" for m, x in v.items())
            for v in (theirs or {"": int(paper[setting])}, ours))

    setups = {
        "data": (f"{paper['dataset']} ({paper['n_test']} test)",
                 f"{len(frames['train']) + len(frames['validation'])} train / {len(frames['test'])} test"),
        "weights": (", ".join(sorted(set(rows["pretrained"]))),
                    "; ".join(sorted({w.description.split(" (")[0] for w in weights.values()}))),
        "image size": per_model("image_size"),
        "epochs": per_model("epochs"),
        "weights kept from": ("last epoch", "lowest validation loss"),
        "optimiser, learning rate": (f"{paper['optimizer']}, {paper['learning_rate']:g}",
                                     f"{protocol.optimizer}, {protocol.learning_rate:g}"),
        "class weights": ("none", protocol.class_weight),
        "training seeds": ("1 run", ", ".join(map(str, protocol.training_seeds))),
        "per-model settings": ("none", prose.plain(protocol.model_settings)),
        **{name.replace("_", " "): pair for name, pair in extra.items()},
    }
    return pd.DataFrame(setups, index=["published", "this run"]).T
