"""What the chapters left behind, read back: results files, test predictions, the summary table, model cards.

Every modelling chapter writes ``<output_root>/<chapter>/results.json``
(``{"provenance", "results"}``, with ``results["models"][name]`` from
:meth:`xrayutils.train.ModelRun.record`) and one ``test_predictions_<model>.csv``
per model.  Chapter 04 and the summary read only these files, so every number
they show was computed by a chapter, never typed in.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xrayutils import datasets, evaluate, train

#: The published study and task each modelling chapter reproduces (rows of ``published_results.csv``).
PUBLISHED_TASK = {
    "01_vgg16_binary": ("class-challenge", "task 1"),
    "02_vgg16_vs_alexnet": ("class-challenge", "task 2"),
    "03_coronahack_models": ("coronahack", "normal vs pneumonia"),
}


def load(output_root: str | Path, chapter: str) -> dict[str, Any]:
    """``{"provenance", "results"}`` of one chapter; a missing file says which and how to make it."""
    path = Path(output_root) / chapter / "results.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no results of chapter {chapter} at {path}: run it first "
            f"(xray-book run notebooks/{chapter}.ipynb with the same profile and --build-dir)"
        )
    return json.loads(path.read_text())


def modelling_chapters(output_root: str | Path) -> list[str]:
    """Chapters under ``output_root`` whose results file lists models, in book order."""
    found = []
    for path in sorted(Path(output_root).glob("*/results.json")):
        if "models" in json.loads(path.read_text()).get("results", {}):
            found.append(path.parent.name)
    return found


def model_records(output_root: str | Path, chapters: list[str] | None = None) -> list[dict[str, Any]]:
    """One flat record per model of every modelling chapter: where it came from, what it scored, or why it failed."""
    records = []
    for chapter in chapters if chapters is not None else modelling_chapters(output_root):
        saved = load(output_root, chapter)
        provenance, results = saved["provenance"], saved["results"]
        dataset = next(iter(provenance.get("datasets", {})), "unknown")
        for name, entry in results["models"].items():
            records.append({
                "chapter": chapter,
                "model": name,
                "dataset": dataset,
                "profile": provenance.get("profile", "unknown"),
                "settings": provenance.get("parameters", {}),  # the chapter's parameters; "parameters" counts weights
                "classes": results.get("classes", []),
                "n": results.get("n", {}),
                **entry,
            })
    return records


def best_model(records: list[dict[str, Any]], chapter: str, metric: str = "roc_auc") -> str | None:
    """The chapter's model with the highest ``metric`` among those that ran (ties: the first listed)."""
    ran = [r for r in records if r["chapter"] == chapter and "metrics" in r]
    scored = [r for r in ran if not np.isnan(r["metrics"][metric]["value"])]
    if not scored:
        return ran[0]["model"] if ran else None
    return max(scored, key=lambda r: r["metrics"][metric]["value"])["model"]


def predictions(output_root: str | Path, record: dict[str, Any]) -> pd.DataFrame:
    """The per-image test results a model's chapter wrote (``file``, ``true``, ``predicted``, ``correct``, ``p_<class>``)."""
    name = record.get("predictions_file") or f"test_predictions_{record['model'].lower()}.csv"
    return pd.read_csv(Path(output_root) / record["chapter"] / name)


def probabilities(table: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """The ``p_<class>`` columns of a predictions table as an ``(n, n_classes)`` array."""
    return table[[f"p_{c}" for c in classes]].to_numpy()


def published_row(published: pd.DataFrame, chapter: str, model: str) -> pd.Series | None:
    """The published result for this chapter's ``model``, if the reproduced study reported one."""
    if chapter not in PUBLISHED_TASK:
        return None
    study, task = PUBLISHED_TASK[chapter]
    rows = published[
        (published["study"] == study)
        & published["task"].str.startswith(task)
        & published["model"].map(lambda text: re.search(rf"\b{re.escape(model)}\b", text) is not None)
    ]
    return rows.iloc[0] if len(rows) else None


def summary_table(records: list[dict[str, Any]], published: pd.DataFrame) -> pd.DataFrame:
    """Every model of every chapter: test metrics with 95% intervals, and the published numbers beside them.

    The CoronaHack study's "ROC AUC" came from hard labels, so it stands beside our
    balanced accuracy, not beside our ROC AUC from probabilities (neither study
    reported one from probabilities).
    """
    def fmt(value: Any) -> str:
        return "–" if value is None or pd.isna(value) else f"{value:.3f}"

    rows = []
    for r in records:
        paper = published_row(published, r["chapter"], r["model"])
        row = {
            "chapter": r["chapter"],
            "model": r["model"],
            "data": r["dataset"],
            "weights": "ImageNet" if r.get("pretrained") else "random",
            "test n": r.get("n", {}).get("test", ""),
        }
        if "metrics" in r:
            m = r["metrics"]
            row.update({
                "accuracy": evaluate.interval(m["accuracy"]),
                "balanced accuracy": evaluate.interval(m["balanced_accuracy"]),
                "ROC AUC": evaluate.interval(m["roc_auc"]),
                "macro F1": evaluate.interval(m["f1_macro"]),
            })
        else:
            row.update({"accuracy": f"FAILED: {r.get('error', 'unknown error')}"})
        hard_auc = paper is not None and "hard labels" in str(paper["note"])
        row.update({
            "published accuracy": fmt(None if paper is None else paper["accuracy"]),
            "published balanced accuracy": fmt(paper["roc_auc"] if hard_auc else None),
            "published test n": "–" if paper is None else int(paper["n_test"]),
        })
        rows.append(row)
    return pd.DataFrame(rows).fillna("–")


def model_card(record: dict[str, Any], checks: dict[str, str] | None = None) -> str:
    """A model card (Mitchell et al., 2019) in Markdown, from the model's record and chapter 04's findings about it.

    ``checks`` maps a check's name to one sentence of what it found for this model.
    """
    p = record.get("settings", {})
    dataset = record["dataset"].split("/")[0]
    n = record.get("n", {})
    augmentation = train.augmentation_summary(bool(p.get("augment")), (record.get("history") or {}).get("cache"))
    lines = [
        f"### {record['model']} ({record['chapter']})",
        "",
        "- **Intended use:** research and teaching only. **Not for diagnosis** or any clinical decision: it was "
        "trained on a few hundred images from unrelated sources and never validated prospectively.",
        f"- **File:** `{record.get('model_file', 'not saved')}` in `{record['chapter']}`'s output folder "
        f"(classes {', '.join(record.get('classes', []))}).",
        f"- **Data:** `{record['dataset']}`, {n.get('train', '?')} train / {n.get('validation', '?')} validation / "
        f"{n.get('test', '?')} test images. {datasets.SOURCES.get(dataset, '')}",
        f"- **Training:** weights {record.get('weights', '?')}; {p.get('image_size', '?')} px, batch "
        f"{p.get('batch_size', '?')}, {p.get('optimizer', '?')} at learning rate {p.get('learning_rate', '?')}, "
        f"{p.get('num_epochs', '?')} epochs, augmentation {augmentation}, weights of the "
        f"lowest validation loss kept, seed {p.get('seed', '?')}; profile `{record.get('profile', '?')}`.",
    ]
    if "metrics" in record:
        m = record["metrics"]
        lines.append(
            f"- **Test metrics** (95% bootstrap intervals): accuracy {evaluate.interval(m['accuracy'])}, balanced "
            f"accuracy {evaluate.interval(m['balanced_accuracy'])}, ROC AUC {evaluate.interval(m['roc_auc'])}."
        )
    else:
        lines.append(f"- **Failed:** {record.get('error')}")
    failures = [text for text in (checks or {}).values() if text]
    lines.append("- **Known failure modes and checks:** " + (" ".join(failures) if failures else "not checked in this run."))
    return "\n".join(lines)


def trust_table(checks: dict[str, Any]) -> pd.DataFrame:
    """Chapter 04's findings in one table: one row per check and model, with the figure that decides it."""
    rows = []
    for key, h in checks.get("gradcam", {}).get("models", {}).items():
        rows.append({"check": "explanations (Grad-CAM)", "model": key,
                     "result": f"{h['border_share']:.2f} of the heat in the border (an even map: {checks['gradcam']['even_map_share']:.2f})"})
    for chapter, s in checks.get("shortcut", {}).items():
        for variant, m in s["metrics"].items():
            rows.append({"check": f"shortcut test: {variant}", "model": f"{chapter}/{s['model']}",
                         "result": "failed" if m is None else f"ROC AUC {evaluate.interval(m['roc_auc'])}, accuracy {evaluate.interval(m['accuracy'])}"})
    for key, leak in checks.get("leakage", {}).items():
        change = "no image left" if leak["without"] is None else f"{leak['without']['accuracy']['value'] - leak['all']['accuracy']['value']:+.3f}"
        rows.append({"check": "leakage: near-duplicates removed", "model": key,
                     "result": f"{leak['n_removed']} of {leak['n_all']} test images removed, accuracy change {change}"})
    for label, rates in checks.get("external", {}).get("rates", {}).items():
        for r in rates:
            if r["measure"] == "recall" and not pd.isna(r.get("value_external")):
                rows.append({"check": f"external data: {r['class']} recall", "model": label,
                             "result": f"{r['value_test']:.2f} own test set, {r['value_external']:.2f} [{r['low_external']:.2f}, "
                                       f"{r['high_external']:.2f}] external (n={int(r['n_external'])})"})
    for label, e in checks.get("calibration", {}).get("ece", {}).items():
        rows.append({"check": "calibration (ECE)", "model": label, "result": evaluate.interval(e)})
    return pd.DataFrame(rows, columns=["check", "model", "result"])


def published_position(records: list[dict[str, Any]], published: pd.DataFrame, metric: str = "accuracy") -> pd.Series:
    """Per model with a published ``metric``: is the published value ``below``, ``inside`` or ``above`` our 95% interval."""
    where = {}
    for r in records:
        paper = published_row(published, r["chapter"], r["model"])
        if "metrics" not in r or paper is None or pd.isna(paper[metric]):
            continue
        ci = r["metrics"][metric]
        where[f"{r['chapter']}/{r['model']}"] = "below" if paper[metric] < ci["low"] else "above" if paper[metric] > ci["high"] else "inside"
    return pd.Series(where, dtype=object)
