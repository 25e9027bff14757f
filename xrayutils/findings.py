"""What the book found and what a build is, from the results files: the start page's findings and every "this build" box.

The start page opens with the results a reader must leave with, each with its
interval, and a box that says what the build was: profile, machine and time,
weights per model, the data against the full datasets, and what was shrunk or
left out.  Each modelling chapter shows the same box for itself at its top
(:func:`setup_box`).  Nothing here is typed in: every sentence is built from
a chapter's results file (:mod:`xrayutils.results`) with :mod:`xrayutils.prose`,
so a rerun on other data or another profile rewrites it, in the direction its
numbers take.  Used by the start page and chapters 01-05.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from xrayutils import catalogue, chapters, checks, datasets, evaluate, prose, published, results
from xrayutils.protocol import TrainingProtocol


@dataclass(frozen=True)
class Finding:
    """One result a reader must leave with: a short lead and the sentences (with intervals) that carry it."""

    lead: str
    text: str

    def markdown(self) -> str:
        return f"**{self.lead}** {prose.sentence(self.text)}"


# What a build is

def data_line(dataset: str, n: Mapping[str, int]) -> str:
    """``"coronahack/two: 388 of the full dataset's 5,286 training images (the sample), 624 of 624 test images"``.

    ``n`` holds a chapter's split sizes (train, validation, test); train and
    validation together are the dataset's training split.
    """
    name, _, task = dataset.partition("/")
    train = int(n.get("train", 0)) + int(n.get("validation", 0))
    test = int(n.get("test", 0))
    full = datasets.SOURCES[name].full_size.get(task) if name in datasets.SOURCES else None
    if full is None:
        return f"{dataset}: {train:,} training and {test:,} test images"
    share = train / full["train"]
    kind = "the full data" if share > 0.95 and test >= full["test"] else "a sample" if share > 0.2 else "a small sample"
    return (f"{dataset}: {train:,} of the full dataset's {full['train']:,} training images and {test:,} of its "
            f"{full['test']:,} test images ({kind})")


def records_weights_line(records: list[dict[str, Any]]) -> str:
    """:func:`weights_line` of every model a build's chapters saved (:func:`xrayutils.results.model_records`)."""
    return weights_line({checks.label(r): bool(r.get("pretrained")) for r in records})


def weights_line(weights: Mapping[str, bool]) -> str:
    """``"every model from random weights (no ImageNet weights: not transfer learning)"``, or which models had ImageNet weights.

    >>> weights_line({"VGG16": False, "AlexNet": False})
    'every model from random weights: not transfer learning'
    """
    pretrained = [m for m, p in weights.items() if p]
    scratch = [m for m, p in weights.items() if not p]
    if not pretrained:
        return "every model from random weights: not transfer learning"
    if not scratch:
        return "every model from ImageNet weights"
    return f"ImageNet weights for {prose.join(pretrained)}; random weights for {prose.join(scratch)} (not transfer learning)"


def shrunk(chapter: str, protocol: TrainingProtocol, models_run: list[str], weights: Mapping[str, bool]) -> list[str]:
    """How a chapter's run differs from the published protocol: image size, epochs, weights, models left out, images, seeds.

    One short phrase each, for the "this build" boxes; an empty list means the run
    is the published protocol (seeds apart: the studies trained each model once).
    """
    rows = published.chapter_rows(chapter)
    said = []
    sizes = {m: protocol.for_model(m).image_size for m in models_run}
    paper_size = int(rows.iloc[0]["image_size"])
    if any(size != paper_size for size in sizes.values()):
        said.append(f"images of {prose.join(sorted({f'{s} px' for s in sizes.values()}))} (published {paper_size} px)")
    epochs = {model: (protocol.for_model(model).num_epochs, int(row["epochs"])) for model in models_run
              if (row := published.row(rows, chapter, model)) is not None}
    for (ours, theirs), names in _grouped({m: e for m, e in epochs.items() if e[0] != e[1]}).items():  # said once for models alike
        who = "every model" if len(names) == len(models_run) > 1 else prose.join(names)
        said.append(f"{who} {prose.count(ours, 'epoch')} (published {theirs})")
    paper_pretrained = {m for m in models_run if (r := published.row(rows, chapter, m)) is not None and r["pretrained"] == "imagenet"}
    random_instead = [m for m in models_run if m in paper_pretrained and not weights.get(m, False)]
    if random_instead:
        said.append(f"random instead of ImageNet weights for {prose.join(random_instead)}")
    frozen = [m for m in models_run if m in paper_pretrained and published.frozen_instead(protocol.for_model(m))]
    if frozen:
        said.append(f"frozen backbones with a trained head (linear probes) instead of fine-tuning for {prose.join(frozen)}")
    if chapter == chapters.CORONAHACK:
        published_models = [m for m in catalogue.published("coronahack") if m not in models_run]
        if published_models:
            said.append(f"{len(models_run)} of the {len(models_run) + len(published_models)} published models "
                        f"(left out: {prose.join(published_models)})")
    if protocol.max_images_per_class:
        said.append(f"at most {protocol.max_images_per_class} images per class and split")
    seeds = len(protocol.training_seeds)
    said.append(f"{prose.count(seeds, 'training seed')} per model" + (" (too few for a spread)" if seeds < 3 else ""))
    return said


def setup_box(profile: str, chapter: str, protocol: TrainingProtocol, weights: Mapping[str, Any], dataset: str,
              n: Mapping[str, int]) -> str:
    """The box at a modelling chapter's top: profile, weights per model, data against the full dataset, what was shrunk.

    ``weights`` maps a model to its :class:`~xrayutils.models.Weights`; ``n``
    holds the split sizes.  A run from random weights, or on a sample, is a
    warning box: its numbers are not the published protocol's.
    """
    pretrained = {m: w.pretrained for m, w in weights.items()}
    differences = shrunk(chapter, protocol, list(weights), pretrained)
    warn = not all(pretrained.values()) or "sample" in data_line(dataset, n)
    items = [
        f"<b>Profile</b>: <code>{html.escape(profile)}</code>",
        f"<b>Weights</b>: {html.escape(weights_line(pretrained))}"
        + "".join(f"<br>&nbsp;&nbsp;{html.escape(prose.join(names))}: {html.escape(description)}"
                  for description, names in _grouped({m: w.description for m, w in weights.items()}).items()),
        f"<b>Data</b>: {html.escape(data_line(dataset, n))}",
        f"<b>Against the published protocol</b>: {html.escape(prose.join(differences, empty='no difference'))}",
    ]
    title = f"This run ({profile} profile): " + ("not the published protocol" if warn else "the published protocol")
    return prose.admonition(title, items, "warning" if warn else "note")


def _grouped(values: Mapping[str, Any]) -> dict[Any, list[str]]:
    """Models by what they share, in order: eight backbones drawn alike are said in one line, not eight."""
    groups: dict[Any, list[str]] = {}
    for model, value in values.items():
        groups.setdefault(value, []).append(model)
    return groups


def chapter_times(output_root: str | Path) -> dict[str, float]:
    """Each chapter's wall time in seconds, from the ``run_info.json`` its stamp wrote (chapters that left none are absent)."""
    times = {}
    for folder in sorted(Path(output_root).glob("*/run_info.json")):
        try:
            times[folder.parent.name] = float(results.read_json(folder)["wall_time_s"])
        except (KeyError, ValueError, TypeError):
            continue
    return times


def build_box(output_root: str | Path, records: list[dict[str, Any]]) -> str:
    """The start page's box: what this build is (profile, machine, time, weights, data, what was shrunk), from its results files."""
    if not records:
        return prose.admonition("This build", ["No modelling chapter has left results here: run the book first (make book)."], "warning")
    saved = {chapter: results.load(output_root, chapter) for chapter in dict.fromkeys(r["chapter"] for r in records)}
    first = next(iter(saved.values()))["provenance"]
    times = chapter_times(output_root)
    items = [
        f"<b>Profile</b>: <code>{html.escape(first.get('profile', '?'))}</code>",
        f"<b>Machine</b>: {html.escape(str(first.get('device', 'unknown')))}; the chapters ran "
        f"{prose.duration(sum(times.values()))} in all" if times else f"<b>Machine</b>: {html.escape(str(first.get('device')))}",
        f"<b>Weights</b>: {html.escape(records_weights_line(records))}",
    ]
    data = _data_lines(saved)
    items.append("<b>Data</b>: " + "; ".join(html.escape(line) for line in data.values()))
    for chapter, s in saved.items():
        protocol = TrainingProtocol(**s["results"]["protocol"])
        ran = list(s["results"]["models"])
        pretrained = {m: bool(e.get("pretrained")) for m, e in s["results"]["models"].items()}
        items.append(f"<b>{html.escape(chapters.record(chapter).title)}</b>: "
                     + html.escape(prose.join(shrunk(chapter, protocol, ran, pretrained), empty="the published protocol")))
    warn = not all(r.get("pretrained") for r in records) or any("sample" in line for line in data.values())
    title = f"This build: the {first.get('profile', '?')} profile" + (", not the published protocols" if warn else "")
    return prose.admonition(title, items, "warning" if warn else "note")


def _data_lines(saved: Mapping[str, dict[str, Any]]) -> dict[str, str]:
    """Each dataset the modelling chapters (their ``saved`` results) trained on, with its :func:`data_line`."""
    data = {}
    for s in saved.values():
        dataset = next(iter(s["provenance"].get("datasets", {})), None)
        if dataset:
            data[dataset] = data_line(dataset, s["results"].get("n", {}))
    return data


def build_caveat(output_root: str | Path, records: list[dict[str, Any]]) -> str:
    """The sentence above the start page's findings when the build is not the published protocols, saying why ("" if it is).

    A reader meets the findings before the box that says what the build was; a
    number from random weights on a sample must not read as the studies' own.
    """
    if not records:
        return ""
    saved = {chapter: results.load(output_root, chapter) for chapter in dict.fromkeys(r["chapter"] for r in records)}
    profile = next(iter(saved.values()))["provenance"].get("profile", "?")
    scratch = sum(not r.get("pretrained") for r in records)
    reasons = []
    if scratch:
        reasons.append("every model from random weights" if scratch == len(records)
                       else f"{prose.count(scratch, 'model')} of {len(records)} from random weights")
    if any("sample" in line for line in _data_lines(saved).values()):
        reasons.append("a sample of the data")
    if not reasons:
        return ""
    return (f"**These are this build's numbers, not the published protocols'** ({profile} profile: "
            f"{prose.join(reasons)}; the box below the findings says what was shrunk).")


# What the book found

def constant_answer(record: dict[str, Any]) -> tuple[str, float]:
    """The largest test class of a model's chapter and its share: the accuracy of always answering it."""
    shares = results.predictions(record)["true"].value_counts(normalize=True)
    return str(shares.index[0]), float(shares.iloc[0])


def below_constant(records: list[dict[str, Any]]) -> list[str]:
    """One clause per model whose accuracy interval lies wholly below always answering the largest test class."""
    said = []
    for r in records:
        if "metrics" not in r:
            continue
        answer, rate = constant_answer(r)
        if r["metrics"]["accuracy"]["high"] < rate:
            said.append(prose.against_constant(checks.label(r), r["metrics"]["accuracy"], rate, answer))
    return said


def adults_finding(trust: Mapping[str, Any]) -> Finding | None:
    """How often the COVID-19 detectors call adults without COVID-19 "COVID-19" against their own false positives; the source classifier."""
    models = trust.get("adults", {}).get("models", {})
    if not models:
        return None
    parts = []
    for name, checked in models.items():
        adults, own = checked["shares"]["adults, all"], checked["shares"][checks.OWN_TEST]
        parts.append(f"{_model_name(name)} calls {adults['called']} of {adults['n']} ({evaluate.interval(adults, 2)}) of them "
                     f"COVID-19, against {own['called']} of {own['n']} ({evaluate.interval(own, 2)}) "
                     "of its own test images without COVID-19")
    confounded = [n for n, c in models.items() if evaluate.side(checks.adult_difference(c["shares"])) > 0]
    lead = ("Adults without COVID-19 are called COVID-19." if confounded
            else "Adults without COVID-19 are not called COVID-19 more often than the models' own negatives.")
    text = "Shown X-rays of adults without COVID-19 from the COVID-19 images' own collection, " + "; ".join(parts)
    source = trust.get("adults", {}).get("source")
    if source:
        auc = source["metrics"]["roc_auc"]
        text += (f". A logistic regression on {source['thumbnail']}x{source['thumbnail']} grey thumbnails tells adults' "
                 f"images from children's with ROC AUC {evaluate.interval(auc, 2)}")
        if confounded and auc["value"] >= checks.NEAR_PERFECT_AUC:
            text += (". The COVID-19 images here are adults' (nearly all: chapter 00 gives their ages) and every other image "
                     "a child's, so these scores measure, at least in part, age and source, not COVID-19")
    return Finding(lead, text)


def within_finding(trust: Mapping[str, Any]) -> Finding | None:
    """What is left without the children: the within-collection test's methods against task 1's ROC AUC on covid-xray."""
    within = trust.get("within", {})
    if not within.get("methods"):
        return None
    first = next(iter(within["methods"].values()))["metrics"]["roc_auc"]
    headline = within.get("headline", {}).get("roc_auc")
    lower = headline is not None and evaluate.side(evaluate.difference(headline, first)) < 0
    if first["low"] > 0.5:
        lead = "Without the children, less is left, though more than chance." if lower else \
            "Without the children, COVID-19 is still told from other adult findings."
    else:
        lead = "Without the children, COVID-19 is not told from other adult findings."
    counts = within.get("counts", {})
    who = (f"{counts.get('covid', '?')} COVID-19 and {counts.get('other', '?')} other frontal images of "
           f"{counts.get('patients', '?')} adults from the COVID-19 images' own collection, in folds split by patient")
    return Finding(lead, f"On {who}: " + "; ".join(within.get("verdicts", {}).values()))


#: How a sentence names a class of the data.
CLASS_WORDS = {"covid": "COVID-19", "normal": "normal", "pneumonia": "pneumonia", "pneumonia_bac": "bacterial pneumonia",
               "pneumonia_vir": "viral pneumonia"}


def external_clauses(rates: Mapping[str, Any]) -> tuple[list[str], int]:
    """One clause per model on its normal recall, own test set against the external images, and how many fall.

    Where another class's recall moved more than normal's, the clause says that
    too: the external images hold pneumonia as well, and its shift can be the larger.
    ``rates`` maps a model (:func:`xrayutils.checks.key`) to its
    :func:`~xrayutils.checks.rates_beside` table or that table's records.
    """
    clauses, falls = [], 0
    for name, rows in rates.items():
        shifts = recall_shifts(pd.DataFrame(rows))
        own, external = shifts["normal"]
        falls += prose.change(own, external) == "falls"
        clause = prose.external_change(_model_name(name), "normal recall", own, external)
        largest = max(shifts, key=lambda c: abs(shifts[c][1]["value"] - shifts[c][0]["value"]))
        if largest != "normal":
            moved = prose.external_change("", f"{CLASS_WORDS.get(largest, largest)} recall", *shifts[largest]).removeprefix("'s ")
            clause += f"; its largest shift: {moved}"
        clauses.append(clause)
    return clauses, falls


def recall_shifts(table: pd.DataFrame) -> dict[str, tuple[dict[str, float], dict[str, float]]]:
    """Each class's recall on the own test set and on the external images (both defined), by class."""
    shifts = {}
    for row in table[table["measure"] == "recall"].to_dict("records"):
        own, external = checks.rate_at(row, "test"), checks.rate_at(row, "external")
        if not (pd.isna(own["value"]) or pd.isna(external["value"])):
            shifts[row["class"]] = (own, external)
    return shifts


def external_finding(trust: Mapping[str, Any]) -> Finding | None:
    """Every covid-xray model's normal recall on its own test set against new patients' images (chapter 04's external check)."""
    rates = trust.get("external", {}).get("rates", {})
    if not rates:
        return None
    clauses, falls = external_clauses(rates)
    n = trust["external"].get("images")
    if falls == len(clauses):
        lead = "Scores do not carry over to new patients."
    elif falls:
        lead = f"Scores carry over to new patients for some models, not for {prose.count(falls, 'model', words=True)}."
    else:
        lead = "Normal recall holds on new patients' images."
    where = f"On {n} normal and pneumonia images of new patients from a second copy of the children's data" if n else "On external images"
    return Finding(lead, f"{where}: " + "; ".join(clauses))


def adults_short(models: Mapping[str, Any]) -> str:
    """How many COVID-19 detectors call adults without COVID-19 "COVID-19" more often than their own negatives, in one clause."""
    if not models:
        return "no model with a COVID-19 class was shown the adults without COVID-19"
    more = [n for n, c in models.items() if evaluate.side(checks.adult_difference(c["shares"])) > 0]
    shares = prose.join(f"{_model_name(n)} {c['shares']['adults, all']['called']} of {c['shares']['adults, all']['n']}"
                        for n, c in models.items())
    if len(more) == len(models):
        said = ("every model with a COVID-19 class" if len(models) > 1 else "the one model with a COVID-19 class") + \
            " calls adults without COVID-19 'COVID-19' more often than its own test images without it"
    elif more:
        said = (f"{len(more)} of the {len(models)} models with a COVID-19 class "
                f"{'calls' if len(more) == 1 else 'call'} adults without COVID-19 'COVID-19' more often than "
                f"{'its' if len(more) == 1 else 'their'} own test images without it")
    else:
        said = "no model calls adults without COVID-19 'COVID-19' clearly more often than its own test images without it"
    return f"{said} ({shares})"


def trust_summary(trust: Mapping[str, Any], *, besides_findings: bool = False) -> list[str]:
    """Chapter 04's findings as a summary list, every model's included: shortcut, leakage, external data, adults, calibration.

    ``besides_findings`` leaves out what :func:`headline_findings` says (external
    data, the adults and the source classifier, the within-collection test), for a list that follows them:
    a verdict is said once.
    """
    lines = [f"shortcut test: {s['verdict']}" for s in trust.get("shortcut", {}).values()]
    leakage = trust.get("leakage", {})
    if leakage:
        moved = max(abs(checks.metric_change(r)) for r in leakage.values() if r.get("without") is not None) \
            if any(r.get("without") is not None for r in leakage.values()) else float("nan")
        removed = max(r["n_removed"] for r in leakage.values())
        lines.append("leakage: no chapter's test set had a near-duplicated image to remove" if not removed else
                     f"leakage: at most {prose.count(removed, 'near-duplicated test image')} of a chapter removed; "
                     f"no accuracy moved by more than {evaluate.number(moved)}")
    for name, r in trust.get("patients", {}).items():
        lines.append(f"patients and views ({results.display_name(name)}): {checks.patient_view_text(r)}")
    for name, a in trust.get("adults", {}).get("pneumonia_models", {}).items():
        lines.append(f"adults without COVID-19 ({results.display_name(name)}): it {a['verdict']}")
    if besides_findings:
        return lines + _calibration(trust)
    clauses, _ = external_clauses(trust.get("external", {}).get("rates", {}))
    if clauses:
        lines.append("external data (normal recall): " + "; ".join(clauses))
    adults = trust.get("adults", {})
    if "models" in adults:
        lines.append("adults without COVID-19: " + adults_short(adults["models"]))
    if source := adults.get("source"):
        lines.append(f"the source classifier tells adults from children with ROC AUC {evaluate.interval(source['metrics']['roc_auc'], 2)}")
    for verdict in trust.get("within", {}).get("verdicts", {}).values():
        lines.append(f"within one collection, without the children: {verdict}")
    if skipped := trust.get("within", {}).get("skipped"):
        lines.append(f"within one collection, without the children: not run ({skipped})")
    return lines + _calibration(trust)


def _calibration(trust: Mapping[str, Any]) -> list[str]:
    ece = trust.get("calibration", {}).get("ece", {})
    if not ece:
        return []
    worst = max(ece, key=lambda k: ece[k]["value"])
    return [f"calibration: the least calibrated best model is {worst}, ECE {evaluate.interval(ece[worst])}"]


def reproduction_finding(records: list[dict[str, Any]], reported: pd.DataFrame, mcnemar: Mapping[str, Any] | None = None) -> Finding | None:
    """The published numbers against this build's: task 1, task 2's order, CoronaHack's best, any model below the constant answer."""
    ran = [r for r in records if "metrics" in r]
    if not ran:
        return None
    clauses = []
    task1 = [r for r in ran if r["chapter"] == chapters.TASK1]
    for r in task1:
        paper = published.row(reported, r["chapter"], r["model"])
        base = "an ImageNet-trained" if r.get("pretrained") else "a frozen, randomly initialised"
        clauses.append(f"task 1 ({base} VGG16 base with a trained head): accuracy {evaluate.interval(r['metrics']['accuracy'])}, "
                       f"ROC AUC {evaluate.interval(r['metrics']['roc_auc'])}"
                       + (f" (published: {paper['accuracy']:.2f}, a validation accuracy on {int(paper['n_test'])} images)"
                          if paper is not None else ""))
    task2 = {r["model"]: r["metrics"] for r in ran if r["chapter"] == chapters.TASK2}
    paper2 = published.comparable(published.chapter_rows(chapters.TASK2, reported), list(task2), "accuracy")
    if len(task2) == 2 and len(paper2) == 2:
        differ = None if not mcnemar else mcnemar["p_value"] < 0.05
        clauses.append("task 2: " + prose.order_against_published(task2, paper2, differ=differ)
                       + ("" if not mcnemar else f" (McNemar's p {p_value(mcnemar['p_value'])})"))
    hack = [r for r in ran if r["chapter"] == chapters.CORONAHACK]
    if hack:
        best = max(hack, key=lambda r: r["metrics"]["balanced_accuracy"]["value"])
        clauses.append(f"CoronaHack: of {prose.count(len(hack), 'model')} trained, {best['model']} has the highest balanced "
                       f"accuracy, {evaluate.interval(best['metrics']['balanced_accuracy'])}")
    clauses += below_constant(ran)
    random = not any(r.get("pretrained") for r in ran)
    lead = ("The published numbers are not reproduced like for like here." if random
            else "Beside the published numbers.")
    return Finding(lead, "; ".join(clauses))


def _model_name(key: str) -> str:
    """``"01_vgg16_binary/VGG16"`` as a reader names it: ``"the task-1 VGG16"``."""
    chapter, _, model = key.partition("/")
    record = chapters.get(chapter)
    return record.model_words(model) if record else model


def headline_findings(output_root: str | Path) -> list[Finding]:
    """The start page's findings, most important first, from whatever results files this build has."""
    records = results.model_records(output_root)
    try:
        trust = results.load(output_root, chapters.TRUST_CHECKS)["results"]
    except FileNotFoundError:
        trust = {}
    try:
        mcnemar = results.load(output_root, chapters.TASK2)["results"].get("mcnemar_vgg16_vs_alexnet")
    except FileNotFoundError:
        mcnemar = None
    found = [adults_finding(trust), within_finding(trust), external_finding(trust),
             reproduction_finding(records, published.table(), mcnemar)]
    return [f for f in found if f is not None]


def missing_chapters(output_root: str | Path) -> list[str]:
    """The chapters whose results the start page reads and this build folder does not hold."""
    needed = chapters.record(chapters.START).needs
    return [c for c in needed if not (Path(output_root) / c / results.RESULTS_FILE).is_file()]


# Each modelling chapter's summary

def base_phrase(weights: Any) -> str:
    """How a summary names chapter 01/02's VGG16: ``"a frozen, randomly initialised VGG16 base"`` when that is what ran."""
    return ("a frozen, ImageNet-trained VGG16 base with a trained head (transfer learning)" if weights.pretrained
            else "a frozen, randomly initialised VGG16 base with a trained head (not transfer learning)")


def task1_summary(metrics: Mapping[str, Any], spread: Mapping[str, Any], weights: Any, paper: pd.Series | None,
                  n_test: int, n_seeds: int) -> list[str]:
    """Chapter 01's summary list: the finding with its intervals, how it stands to the published number, what it does not show."""
    lines = [
        f"{base_phrase(weights)} reaches, on {n_test} test images, an accuracy of {evaluate.interval(metrics['accuracy'])} "
        f"and a ROC AUC of {evaluate.interval(metrics['roc_auc'])} (the ensemble of {prose.count(n_seeds, 'training seed')}); "
        f"single seeds: accuracy {evaluate.spread_text(spread['accuracy'])}, ROC AUC {evaluate.spread_text(spread['roc_auc'])}",
    ]
    if paper is not None:
        why = [] if weights.pretrained else ["its base had ImageNet weights and this one random weights"]
        why.append(f"it is the last epoch's validation accuracy on {int(paper['n_test'])} images, not a test score")
        lines.append(f"the published {paper['accuracy']:.2f} cannot be set beside it like for like: {prose.join(why)}")
    lines.append("it does not show that the model recognises COVID-19: the COVID-19 images are adults' from one collection, "
                 "the normal ones children's from one hospital (chapter 00), and chapter 04 finds what that does")
    return lines


def task2_summary(metrics: Mapping[str, Any], spreads: Mapping[str, Any], weights: Mapping[str, Any],
                  paper_accuracy: Mapping[str, float], mcnemar: Mapping[str, Any] | None, protocol: TrainingProtocol,
                  one_class: list[str], n_test: int) -> list[str]:
    """Chapter 02's summary list: both models' scores, their order against the published one and why they may differ."""
    lines = [f"on {n_test} test images in four classes, " + prose.join(
        [f"{name} reaches an accuracy of {evaluate.interval(m['accuracy'])} (ROC AUC {evaluate.interval(m['roc_auc'])}; "
         f"single seeds: {evaluate.spread_text(spreads[name]['accuracy'])})" for name, m in metrics.items()])]
    if "VGG16" in weights:
        lines.append(f"VGG16 is {base_phrase(weights['VGG16'])}; AlexNet trains whole from random weights, as published")
    if mcnemar:
        differ = mcnemar["p_value"] < 0.05
        lines.append(f"McNemar's exact test on the same images: VGG16 alone is right on {prose.count(mcnemar['only_a_correct'], 'image')}, "
                     f"AlexNet alone on {mcnemar['only_b_correct']}, p {p_value(mcnemar['p_value'])}: "
                     + ("the two accuracies differ by more than chance" if differ else "these images cannot tell the two apart"))
        order = prose.order_against_published(metrics, dict(paper_accuracy), differ=differ)
        reversed_ = "reverse" in order
        lines.append(order + ("." if not reversed_ else
                              ". What differs from the published run may explain it: " + prose.join(
                                  task2_differences(protocol, weights)) + ". With a random base, VGG16's frozen "
                              "features are random projections, and a network trained whole can beat them"))
    lines += [f"{name} gives every test image the same class: it has learned nothing a test can rank" for name in one_class]
    return lines


def task2_differences(protocol: TrainingProtocol, weights: Mapping[str, Any]) -> list[str]:
    """How chapter 02's run differs from the published one, per model: weights, image size, epochs."""
    rows = published.chapter_rows(chapters.TASK2)
    said = []
    for name in weights:
        row = published.row(rows, chapters.TASK2, name)
        if row is None:
            continue
        p = protocol.for_model(name)
        pretrained = "ImageNet" if weights[name].pretrained else "random"
        paper_weights = "ImageNet" if row["pretrained"] == "imagenet" else "random"
        pairs = {"weights": (pretrained, paper_weights), "image size": (p.image_size, int(row["image_size"])),
                 "epochs": (p.num_epochs, int(row["epochs"]))}
        differ = prose.settings_differ(**{k.replace(" ", "_"): v for k, v in pairs.items()})
        if differ:
            said.append(f"{name}: {', '.join(differ)}")
    return said


def p_value(p: float) -> str:
    """``"= 0.032"``, ``"< 0.001"``: a p-value as a page shows it."""
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def seeds_against_models(per_seed: Mapping[str, pd.DataFrame], ranked: list[str], metric: str) -> str:
    """How far ``metric`` moves between the ranked models beside how far it moves within one over its training seeds.

    A gap between two models smaller than one model's own seed spread is luck of
    training as much as architecture.  Empty with fewer than two ranked models or seeds.
    """
    spreads = {name: evaluate.seed_spread(per_seed[name])[metric] for name in ranked if name in per_seed}
    within = {name: s["sd"] for name, s in spreads.items() if s["sd"] is not None}
    if len(spreads) < 2 or not within:
        return ""
    between = float(pd.Series([s["mean"] for s in spreads.values()]).std(ddof=1))
    widest = max(within, key=within.get)
    return (f"between the {len(spreads)} ranked models' seed means, {prose.header(metric)} has a standard deviation of "
            f"{between:.3f}; within one model, over its seeds, up to {within[widest]:.3f} ({widest})")


def imagenet_verdict(correlation: Mapping[str, float] | None, *, pretrained: bool, frozen: bool) -> str:
    """What the rank correlation of ImageNet top-1 with the score here says, by the rule chapter 03 states, and what it can mean.

    The correlation is told from none when both its interval over test images
    and seeds excludes zero and its p-value over the models is below 0.05: the
    first says this test set is sure of the order, the second that so few models could not give it by chance.
    """
    if correlation is None:
        return "Too few backbones with an ImageNet accuracy ran here for a rank correlation (it needs three)."
    told = evaluate.side(correlation) != 0 and correlation["p"] < 0.05
    rho = (f"Spearman's rho is {evaluate.signed(correlation['value'], 2)} "
           f"[{evaluate.signed(correlation['low'], 2)}, {evaluate.signed(correlation['high'], 2)}] over test images and seeds "
           f"(p = {correlation['p']:.2f} over {correlation['models']} models)")
    said = (f"{rho}: ImageNet accuracy {'orders' if correlation['value'] > 0 else 'reverses'} the backbones' scores here"
            if told else f"{rho}: by chapter 03's rule (the interval excludes zero and p < 0.05) no relation of ImageNet "
                         "accuracy to the score here is shown, as CheXtransfer found none on CheXpert")
    if not pretrained:
        said += (". These backbones started from random weights, so ImageNet taught them nothing: the question answered is whether "
                 "the architectures that do well on ImageNet pass on more useful random features, not whether ImageNet training helps")
    elif frozen:
        said += ". The backbones were frozen: this is the order of their ImageNet features as they are, before any fine-tuning"
    return said + "."


def coronahack_summary(board: pd.DataFrame, metric: str, n_test: int, left_out: list[str], n_seeds: int,
                       weights: Mapping[str, Any], errors: Mapping[str, str] | None = None, *, frozen: bool = False,
                       spread: str = "", imagenet: str | None = None,
                       metrics: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None) -> list[str]:
    """Chapter 03's summary list: the leader, who is below the constant answer, each model's errors, what one seed cannot show.

    ``errors`` maps a model to :func:`xrayutils.evaluate.error_counts`' sentence:
    a ranking says nothing of which way a model is wrong, a clinician needs both.
    ``frozen`` says the backbones were linear probes; ``spread`` is :func:`seeds_against_models`'
    sentence and ``imagenet`` :func:`imagenet_verdict`'s.  With ``metrics`` (each model's
    intervals) a model whose ROC AUC interval holds 0.5 is named: it is not shown to tell the classes apart at all.
    """
    ranked = board[board.index != "-"]
    lines = [f"{prose.count(len(board), 'model')} ran under one protocol, each with {prose.count(n_seeds, 'training seed')}"
             + (f"; left out: {prose.join(left_out)}" if left_out else "")]
    if weights and not any(w.pretrained for w in weights.values()):
        lines.append("every model started from random weights: none of these numbers is the published fine-tuning of ImageNet models"
                     + ("; the frozen backbones' scores measure what a random network of each architecture passes on" if frozen else ""))
    elif frozen:
        lines.append("the backbones were frozen, each with a trained head: this ranks their ImageNet features, not their fine-tuning")
    if len(ranked):
        leader = ranked.iloc[0]
        lines.append(f"by {prose.header(metric)}, {leader['model']} leads with {leader[metric]} on {n_test} test images")
        others = ranked.iloc[1:]
        apart = others[others["told apart"] == "yes"]["model"].tolist()
        name = prose.header(metric)
        if len(others) and not apart:
            lines.append(f"these {prose.count(len(ranked), 'model', words=True)} cannot be told apart on this test set: the paired "
                         f"interval of each one's {name} minus the leader's holds zero")
        elif len(others):
            lines.append(f"on the same test images, the paired interval of {name} tells the leader from {prose.join(apart)} "
                         f"({len(apart)} of the other {prose.count(len(others), 'ranked model')}), not from the rest")
    if "rank interval" in ranked.columns and len(ranked) > 1:
        wide = [text for text in ranked["rank interval"] if len(set(text.split(" to "))) > 1]
        which = (f"every one of the {len(ranked)} ranked models" if len(wide) == len(ranked)
                 else f"{len(wide)} of the {len(ranked)} ranked models")
        lines.append(f"{which} could take more than one rank over redraws of the test images and seeds (the leaderboard's rank "
                     "intervals)")
    chance = [f"{name} {evaluate.interval(m['roc_auc'])}" for name, m in (metrics or {}).items()
              if "roc_auc" in m and evaluate.side(m["roc_auc"], 0.5) <= 0]
    if chance:
        lines.append(f"ROC AUC no better than chance (its interval holds or lies below 0.5): {prose.join(chance)}")
    lines += [spread] if spread else []
    if imagenet:
        lines.append(imagenet.rstrip("."))
    lines += [f"{name} {said}" for name, said in (errors or {}).items()]
    for _, row in board[board.index == "-"].iterrows():
        lines.append(f"{row['model']} is not ranked: " + ("it gives every test image the same class"
                                                          if row.get("rank interval") == evaluate.NOT_RANKED_ONE_CLASS
                                                          else f"its accuracy, {row['accuracy']}, is below always answering the "
                                                               "largest test class: it has not learned the task"))
    if n_seeds < 3:
        lines.append(f"with {prose.count(n_seeds, 'training seed')} per model the ranking shows no luck of training: "
                     "a model's score can move by more than the gaps between models when only its seed changes")
    return lines
