"""Sentences built from results, with their grammar right and their direction taken from the numbers.

A page that says "0 model(s)", "1 of the other 1 models" or "matches" for a
difference whose interval spans zero reads like a log.  Every sentence a chapter
builds from a result comes from here, so that each outcome (better or worse than
published, a drop or none on external data, below or above the constant answer,
one model or several) has one tested wording.  Used by chapters 01-05 and the
start page (:mod:`xrayutils.findings`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from typing import Any

from xrayutils import evaluate, results

#: Words for small counts, as a person writes them in running text.
_NUMBERS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def count(n: int, noun: str, plural: str | None = None, *, words: bool = False) -> str:
    """``"1 model"``, ``"3 models"``, ``"no model"``: ``n`` with ``noun`` in the number it needs.

    >>> count(1, "model"), count(3, "seed"), count(0, "image"), count(2, "patient", words=True)
    ('1 model', '3 seeds', 'no image', 'two patients')
    """
    many = plural or noun + "s"
    if n == 0:
        return f"no {noun}"
    shown = _NUMBERS[n] if words and n < len(_NUMBERS) else str(n)
    return f"{shown} {noun if n == 1 else many}"


def join(items: Iterable[str], *, empty: str = "none", last: str = "and") -> str:
    """``"A"``, ``"A and B"``, ``"A, B and C"``; ``empty`` for none.

    >>> join([]), join(["VGG16"]), join(["VGG16", "AlexNet"]), join("abc", last="or")
    ('none', 'VGG16', 'VGG16 and AlexNet', 'a, b or c')
    """
    items = list(items)
    if not items:
        return empty
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def plain(value: Any) -> str:
    """A parameter's value as a person writes it, not as Python prints it: lists joined, mappings as ``name: value``.

    >>> plain(["ResNet34", "InceptionV3"]), plain({"AlexNet": {"num_epochs": 10}}), plain(0.0001), plain([])
    ('ResNet34, InceptionV3', 'AlexNet: num_epochs 10', '0.0001', 'none')
    """
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {plain(v)}" if isinstance(v, Mapping) else f"{k} {plain(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple, set)):
        return ", ".join(plain(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def duration(seconds: float) -> str:
    """A wall time as a page gives it: ``"12 seconds"``, ``"3.4 minutes"``, ``"18 minutes"``, never ``"0.0 minutes"``.

    >>> duration(12.4), duration(204), duration(1090)
    ('12 seconds', '3.4 minutes', '18 minutes')
    """
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    return f"{seconds / 60:.1f} minutes" if seconds < 600 else f"{seconds / 60:.0f} minutes"


def sentence(text: str) -> str:
    """``text`` with a capital first letter and one full stop at the end.

    >>> sentence("the model holds")
    'The model holds.'
    """
    text = text.strip()
    if not text:
        return ""
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def ranking(scores: Mapping[str, Mapping[str, float]], metric: str = "accuracy") -> list[str]:
    """Model names by ``scores[name][metric]["value"]``, best first."""
    return sorted(scores, key=lambda name: -scores[name][metric]["value"])


def order_against_published(
    ours: Mapping[str, Mapping[str, float]], published: Mapping[str, float], metric: str = "accuracy", *, differ: bool | None = None
) -> str:
    """Two models' order in this build against the published order: kept, reversed, or not told apart.

    ``ours`` maps each model to its intervals (``{metric: {"value", "low", "high"}}``);
    ``differ`` says whether a paired test (McNemar) found a difference; without one
    (``None``) the two are not told apart: intervals that do not overlap are no test.

    >>> order_against_published({"A": {"accuracy": {"value": .7, "low": .6, "high": .8}},
    ...                          "B": {"accuracy": {"value": .6, "low": .5, "high": .7}}}, {"A": .36, "B": .75}, differ=True)
    'A is ahead of B here (0.700 against 0.600), the reverse of the published order (B 0.750, A 0.360)'
    """
    if len(ours) != 2 or set(ours) != set(published):
        return "the order of the models cannot be set against the published one (a model is missing)"
    first, second = ranking(ours, metric)
    a, b = ours[first][metric], ours[second][metric]
    differ = bool(differ)
    published_first = max(published, key=published.get)
    ours_text = f"({a['value']:.3f} against {b['value']:.3f})"
    paper_text = f"({published_first} {published[published_first]:.3f}, " + \
        f"{[m for m in published if m != published_first][0]} {min(published.values()):.3f})"
    if not differ:
        lead = f"{first} and {second} are not told apart here {ours_text}; the published study put {published_first} ahead {paper_text}"
        return lead
    if first == published_first:
        return f"{first} is ahead of {second} here {ours_text}, as published {paper_text}"
    return f"{first} is ahead of {second} here {ours_text}, the reverse of the published order {paper_text}"


def change(before: Mapping[str, float], after: Mapping[str, float]) -> str:
    """``"falls"``, ``"rises"`` or ``"holds"``: ``after`` against ``before``, two shares with their Wilson intervals.

    A fall or rise needs the :func:`~xrayutils.evaluate.difference` interval to
    exclude zero; otherwise "holds" (no change detected, which is not the same as
    no change).

    >>> change({"value": .9, "low": .8, "high": .95}, {"value": .3, "low": .2, "high": .45})
    'falls'
    """
    return {-1: "falls", 0: "holds", 1: "rises"}[evaluate.side(evaluate.difference(before, after))]


def external_change(model: str, measure: str, own: Mapping[str, float], external: Mapping[str, float]) -> str:
    """One clause on a model's rate on external images against its own test set, in the direction the numbers take.

    >>> external_change("AlexNet (02)", "normal recall", {"value": .61, "low": .44, "high": .76},
    ...                 {"value": .33, "low": .23, "high": .46})
    "AlexNet (02)'s normal recall falls from 0.61 [0.44, 0.76] on its own test set to 0.33 [0.23, 0.46] on the external images"
    """
    where = change(own, external)
    said = f"{evaluate.interval(own, 2)} on its own test set"
    there = f"{evaluate.interval(external, 2)} on the external images"
    if where == "holds":
        return f"{model}'s {measure} shows no clear change: {said}, {there}"
    return f"{model}'s {measure} {where} from {said} to {there}"


def against_constant(model: str, accuracy: Mapping[str, float], constant: float, answer: str) -> str:
    """A model's accuracy against always answering the largest test class (``constant`` of the images are ``answer``).

    Below it means the model has not learned the task; an interval that holds it
    means the model is not shown to do better than the constant answer.

    >>> against_constant("ResNet34", {"value": .473, "low": .43, "high": .51}, .625, "pneumonia")
    "ResNet34's accuracy, 0.473 [0.430, 0.510], is below the 0.625 of always answering 'pneumonia': it has not learned the task"
    """
    said = f"{model}'s accuracy, {evaluate.interval(accuracy)},"
    rule = f"the {constant:.3f} of always answering '{answer}'"
    if accuracy["high"] < constant:
        return f"{said} is below {rule}: it has not learned the task"
    if accuracy["low"] <= constant:
        return f"{said} is not shown to beat {rule}"
    return f"{said} is above {rule}"


def difference(name: str, diff: Mapping[str, float], digits: int = 3) -> str:
    """A difference with its interval: detected (and which way) only when the interval excludes zero; never "matches".

    >>> difference("accuracy", {"value": 0.132, "low": -0.037, "high": 0.302})
    'no difference in accuracy detected: +0.132 [-0.037, +0.302]'
    """
    text = evaluate.signed_interval(diff, digits)
    return {1: f"{name} higher by {text}", -1: f"{name} lower by {text}",
            0: f"no difference in {name} detected: {text}"}[evaluate.side(diff)]


def bullets(lines: Iterable[str]) -> str:
    """A Markdown list, one sentence per item."""
    return "\n".join(f"- {sentence(line)}" for line in lines if line)


def settings_differ(**pairs: tuple[Any, Any]) -> list[str]:
    """``"image size 128 (published 224)"`` for each setting whose two values (this run, published) differ.

    >>> settings_differ(image_size=(128, 224), epochs=(100, 100))
    ['image size 128 (published 224)']
    """
    return [f"{name.replace('_', ' ')} {ours} (published {paper})" for name, (ours, paper) in pairs.items() if ours != paper]


#: Words a column name spells as code and a reader spells otherwise.
_METRIC_WORDS = {"roc auc": "ROC AUC", "f1": "F1", "ece": "ECE"}


def header(name: Any) -> Any:
    """A column or row name as a reader writes it: ``"roc_auc"`` -> ``"ROC AUC"``, ``"01_vgg16_binary/VGG16"`` -> ``"VGG16 (01)"``.

    >>> header("roc_auc over seeds"), header("f1_macro"), header("02_vgg16_vs_alexnet/AlexNet"), header(3)
    ('ROC AUC over seeds', 'F1 macro', 'AlexNet (02)', 3)
    """
    if not isinstance(name, str) or "/" in name:
        return results.display_name(name)
    text = name.replace("_", " ")
    return re.sub(r"\b(roc auc|f1|ece)\b", lambda m: _METRIC_WORDS[m[0]], text)


def admonition(title: str, items: list[str], kind: str) -> str:
    """A box of HTML ``items`` under ``title``, with the Sphinx classes the book styles (``kind``: note, warning, tip dropdown)."""
    body = "".join(f"<li>{item}</li>" for item in items)
    return f'<div class="admonition {kind}"><p class="admonition-title">{html.escape(title)}</p><ul>{body}</ul></div>'
