"""The numbers the reproduced studies published (``published_results.csv``, from ``../shared/reference``).

Chapters 01-03 set their results beside them and the summary (chapter 05) counts
where each published value falls against our intervals.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import pandas as pd

from xrayutils import results
from xrayutils.protocol import TrainingProtocol

#: The published study and task each modelling chapter reproduces (rows of ``published_results.csv``).
TASK_OF_CHAPTER = {
    results.TASK1: ("class-challenge", "task 1"),
    results.TASK2: ("class-challenge", "task 2"),
    results.CORONAHACK: ("coronahack", "normal vs pneumonia"),
}


def table(study: str | None = None) -> pd.DataFrame:
    """Every published result, or one study's (``class-challenge`` or ``coronahack``)."""
    with resources.files("xrayutils").joinpath("published_results.csv").open() as handle:
        rows = pd.read_csv(handle)
    return rows if study is None else rows[rows["study"] == study].reset_index(drop=True)


def chapter_rows(chapter: str, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows of ``published`` (default: :func:`table`) for the task ``chapter`` reproduces, in the file's order."""
    study, task = TASK_OF_CHAPTER[chapter]
    rows = table() if published is None else published
    return rows[(rows["study"] == study) & rows["task"].str.startswith(task)].reset_index(drop=True)


def row(published: pd.DataFrame, chapter: str, model: str) -> pd.Series | None:
    """The published result for this chapter's ``model``, if the reproduced study reported one."""
    if chapter not in TASK_OF_CHAPTER:
        return None
    rows = _naming(chapter_rows(chapter, published), model)
    return rows.iloc[0] if len(rows) else None


def _naming(rows: pd.DataFrame, model: str) -> pd.DataFrame:
    """The rows whose model description names ``model`` as a word (``ResNet34`` in ``Self-defined ResNet34 (...)``)."""
    pattern = re.compile(rf"\b{re.escape(model)}\b")
    return rows[rows["model"].map(lambda text: pattern.search(text) is not None)]


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
    setups = {
        "data": (f"{paper['dataset']} ({paper['n_test']} test)",
                 f"{len(frames['train']) + len(frames['validation'])} train / {len(frames['test'])} test"),
        "weights": (", ".join(sorted(set(rows["pretrained"]))),
                    "; ".join(sorted({w.description.split(" (")[0] for w in weights.values()}))),
        "image size": (paper["image_size"], protocol.image_size),
        "epochs": (paper["epochs"], protocol.num_epochs),
        "weights kept from": ("last epoch", "lowest validation loss"),
        "optimiser, learning rate": (f"{paper['optimizer']}, {paper['learning_rate']:g}",
                                     f"{protocol.optimizer}, {protocol.learning_rate:g}"),
        "class weights": ("none", protocol.class_weight),
        "training seeds": ("1 run", ", ".join(map(str, protocol.training_seeds))),
        "per-model settings": ("none", "; ".join(f"{model}: {changes}" for model, changes in protocol.model_settings.items()) or "none"),
        **{name.replace("_", " "): pair for name, pair in extra.items()},
    }
    return pd.DataFrame(setups, index=["published", "this run"]).T
