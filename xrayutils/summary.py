"""The summary chapter (05): every model in one table, a card per model, chapter 04's findings per model.

Built from the results files only (:mod:`xrayutils.results`), so no number on
the summary page was typed in.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from xrayutils import augmentations, chapters, checks, datasets, evaluate, published, within
from xrayutils.protocol import TrainingProtocol


def summary_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Every model of every chapter: its key test metrics with 95% intervals (the published numbers: :func:`published_table`).

    The metrics are those of each model's seed ensemble; ``ROC AUC, single seeds``
    is what its single seeds reached (their values below three seeds, else mean ± sd).
    Per-class metrics and F1 are in the chapters and their results files.
    """
    rows = []
    for r in records:
        row = {
            "chapter": r["chapter"][:2],
            "model": r["model"],
            "weights": "ImageNet" if r.get("pretrained") else "random",
            "test images": r.get("n", {}).get("test", "–"),
        }
        if "metrics" in r:
            m = r["metrics"]
            row.update({
                "accuracy": evaluate.interval(m["accuracy"]),
                "balanced accuracy": evaluate.interval(m["balanced_accuracy"]),
                "ROC AUC": evaluate.interval(m["roc_auc"]),
                "ROC AUC, single seeds": evaluate.spread_text(r["seed_spread"]["roc_auc"]) if "seed_spread" in r else "–",
            })
        else:
            row.update({"accuracy": f"failed: {r.get('error', 'unknown error')}"})
        rows.append(row)
    return pd.DataFrame(rows).fillna("–")


def published_table(records: list[dict[str, Any]], reported: pd.DataFrame) -> pd.DataFrame:
    """Each model the studies reported: our test accuracy, the published one with its own interval, the difference, like for like.

    Accuracy, because both studies reported it for every model (the CoronaHack
    study's "ROC AUC" came from hard labels: a balanced accuracy, in chapter 03's
    table).  The difference is ours minus the published, with Newcombe's interval
    (:func:`against_published` decides by it); ``like for like`` lists every way the
    published run differs from ours (:func:`xrayutils.published.unlike`).
    """
    rows = []
    for r in records:
        paper = published.row(reported, r["chapter"], r["model"])
        if paper is None or "metrics" not in r:
            continue
        d = _difference(r, paper)
        rows.append({"model": checks.label(r), "accuracy here": evaluate.interval(r["metrics"]["accuracy"]),
                     "published": f"{evaluate.interval(published.accuracy(paper))} ({int(paper['n_test'])} {paper['split']} images)",
                     "here minus published": f"{evaluate.signed_interval(d)}: {_verdict(d)}",
                     "like for like": _like_for_like(r, paper)})
    return pd.DataFrame(rows)


def _difference(record: dict[str, Any], paper: pd.Series) -> dict[str, float]:
    return evaluate.difference(published.accuracy(paper), record["metrics"]["accuracy"])


def _verdict(d: dict[str, float]) -> str:
    return {-1: "lower", 0: "no difference detected", 1: "higher"}[evaluate.side(d)]


def _like_for_like(record: dict[str, Any], paper: pd.Series) -> str:
    """``"yes"``, or every way a published row differs from this model's run (:func:`xrayutils.published.unlike`)."""
    n = record.get("n", {})
    protocol = TrainingProtocol(**record["protocol"]).for_model(record["model"])
    return published.like_for_like(published.unlike(paper, protocol, pretrained=bool(record.get("pretrained")),
                                                     n_train=n.get("train", 0) + n.get("validation", 0), n_test=n.get("test", 0)))


def model_card(record: dict[str, Any], findings: dict[str, str] | None = None) -> str:
    """A model card (Mitchell et al., 2019) in Markdown, from the model's record and chapter 04's findings about it.

    ``findings`` maps a check's name to one sentence of what it found for this model (:func:`xrayutils.checks.findings`).
    """
    p = TrainingProtocol(**record["protocol"]).for_model(record["model"])
    dataset = record["dataset"].split("/")[0]
    n = record.get("n", {})
    augmentation = augmentations.augmentation_summary(p.augment, (record.get("history") or {}).get("cache"))
    lines = [
        f"### {record['model']} ({record['chapter']})",
        "",
        "- **Intended use:** research and teaching only. **Not for diagnosis** or any clinical decision: it was "
        "trained on a few hundred images from unrelated sources and never validated prospectively.",
        f"- **File:** `{record.get('model_file', 'not saved')}` in `{record['chapter']}`'s output folder "
        f"(classes {', '.join(record.get('classes', []))}).",
        f"- **Data:** `{record['dataset']}`, {n.get('train', '?')} train / {n.get('validation', '?')} validation / "
        f"{n.get('test', '?')} test images. {datasets.SOURCES[dataset].about if dataset in datasets.SOURCES else ''}",
        f"- **Training:** weights {record.get('weights', '?')}; {p.image_size} px, batch {p.batch_size}, {p.optimizer} at "
        f"learning rate {p.learning_rate}, {p.num_epochs} epochs, augmentation {augmentation}, weights of the "
        f"lowest validation loss kept, class weights {p.class_weight}, split seed {p.seed}, training seeds "
        f"{', '.join(map(str, p.training_seeds))} (the file holds seed {record.get('model_seed', p.training_seeds[0])}'s model, "
        f"the metrics are the seeds' ensemble); profile `{record.get('profile', '?')}`.",
    ]
    if "metrics" in record:
        m = record["metrics"]
        lines.append(
            f"- **Test metrics** (95% intervals: Wilson for accuracy, bootstrap for the others): "
            f"accuracy {evaluate.interval(m['accuracy'])}, balanced accuracy {evaluate.interval(m['balanced_accuracy'])}, "
            f"ROC AUC {evaluate.interval(m['roc_auc'])}"
            + (f"; one seed alone: ROC AUC {evaluate.spread_text(record['seed_spread']['roc_auc'])}." if "seed_spread" in record else ".")
        )
    else:
        lines.append(f"- **Failed:** {record.get('error')}")
    failures = [text for text in (findings or {}).values() if text]
    lines.append("- **Known failure modes and checks:** " + (" ".join(failures) if failures else "not checked in this run."))
    return "\n".join(lines)


def trust_table(trust: dict[str, Any]) -> pd.DataFrame:
    """Chapter 04's findings in one table: one row per check and model, with the figure that decides it."""
    rows = []
    for key, h in trust.get("gradcam", {}).get("models", {}).items():
        rows.append({"check": "explanations (Grad-CAM)", "model": key,
                     "result": checks.gradcam_text(h, trust["gradcam"]["even_map_share"])})
    for chapter, s in trust.get("shortcut", {}).items():
        for variant, m in s["metrics"].items():
            rows.append({"check": f"shortcut test: {variant}", "model": f"{chapter}/{s['model']}",
                         "result": "failed" if m is None
                         else f"ROC AUC {evaluate.interval(m['roc_auc'])}, accuracy {evaluate.interval(m['accuracy'])}"})
    for key, leak in trust.get("leakage", {}).items():
        change = "no image left" if leak["without"] is None else evaluate.signed(checks.metric_change(leak))
        rows.append({"check": "leakage: near-duplicates removed", "model": key,
                     "result": f"{leak['n_removed']} of {leak['n_all']} test images removed, accuracy change {change}"})
    for key, r in trust.get("patients", {}).items():
        rows.append({"check": "leakage: patients seen in training, lateral views", "model": key, "result": checks.patient_view_text(r)})
    for label, rates in trust.get("external", {}).get("rates", {}).items():
        for r in rates:
            if r["measure"] == "recall" and not pd.isna(r.get("value_external")):
                own = evaluate.number(r["value_test"], ".2f")
                rows.append({"check": f"external data: {r['class']} recall", "model": label,
                             "result": f"{own} own test set, {checks.rate_text(r, 'external')} external (n={int(r['n_external'])})"})
    adults = trust.get("adults", {})
    for key, a in (adults.get("models", {}) | adults.get("pneumonia_models", {})).items():
        said = checks.CALLS[a.get("called", "covid")].said
        rows.append({"check": f"adults without COVID-19: called {said}", "model": key,
                     "result": "; ".join(f"{group} {checks.share_text(share)}" for group, share in a["shares"].items())})
    if source := trust.get("adults", {}).get("source"):
        rows.append({"check": "source classifier: adult or child", "model": "logistic regression on grey thumbnails",
                     "result": f"ROC AUC {evaluate.interval(source['metrics']['roc_auc'])}, "
                               f"balanced accuracy {evaluate.interval(source['metrics']['balanced_accuracy'])}"})
    for method, w in trust.get("within", {}).get("methods", {}).items():
        rows.append({"check": "within one collection: COVID-19 against other adult findings", "model": method,
                     "result": within.metrics_text(w)})
    if skipped := trust.get("within", {}).get("skipped"):
        rows.append({"check": "within one collection: COVID-19 against other adult findings", "model": "none",
                     "result": f"not run: {skipped}"})
    for label, e in trust.get("calibration", {}).get("ece", {}).items():
        rows.append({"check": "calibration (ECE)", "model": label, "result": evaluate.interval(e)})
    return pd.DataFrame(rows, columns=["check", "model", "result"])


def against_published(records: list[dict[str, Any]], reported: pd.DataFrame) -> pd.Series:
    """Per model with a published accuracy: ours ``lower``, ``higher`` or ``no difference detected``, by the difference's interval.

    Both accuracies are proportions with Wilson intervals (the published one on
    its own images, :func:`xrayutils.published.accuracy`), so the verdict is that
    of Newcombe's interval of ours minus theirs, the rule Methods states.
    """
    verdicts = {}
    for r in records:
        paper = published.row(reported, r["chapter"], r["model"])
        if "metrics" not in r or paper is None or pd.isna(paper["accuracy"]):
            continue
        verdicts[checks.key(r)] = _verdict(_difference(r, paper))
    return pd.Series(verdicts, dtype=object)


def accuracies_beside_published(records: list[dict[str, Any]], reported: pd.DataFrame) -> tuple[dict, dict]:
    """Test accuracy of every model that ran, and the published test accuracy of those the studies reported, by label.

    The labels (``"VGG16 (01)"``) are those of the summary's leaderboard figure.
    A published number measured on validation images (task 1's) is left out:
    the figure's axis is test accuracy, and the tables give it with what it measured.
    """
    ran = {f"{r['model']} ({r['chapter'][:2]})": r for r in records if "metrics" in r}
    papers = {label: published.row(reported, r["chapter"], r["model"]) for label, r in ran.items()}
    return (
        {label: r["metrics"] for label, r in ran.items()},
        {label: paper["accuracy"] for label, paper in papers.items()
         if paper is not None and published.on_test_images(paper)},
    )


def accuracy_panels(records: list[dict[str, Any]], reported: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per modelling chapter (by its task's title): its models' test accuracies, the published ones and the constant answer's.

    The panels of :func:`xrayutils.plots.plot_accuracy_by_task`: tasks with
    different chance levels never share one axis.
    """
    from xrayutils import findings

    panels = {}
    for chapter in dict.fromkeys(r["chapter"] for r in records if "metrics" in r):
        ran = [r for r in records if r["chapter"] == chapter and "metrics" in r]
        scored, paper = accuracies_beside_published(ran, reported)
        panels[chapters.record(chapter).title] = {"scored": scored, "published": paper,
                                                  "chance": findings.constant_answer(ran[0])[1]}
    return panels


def model_cards(records: list[dict[str, Any]], findings: dict[str, dict[str, str]]) -> str:
    """Every model's :func:`model_card`, with chapter 04's findings about it (``findings`` by ``"<chapter>/<model>"``)."""
    return "\n\n".join(model_card(r, findings.get(checks.key(r))) for r in records)
