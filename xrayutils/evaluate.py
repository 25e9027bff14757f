"""Test-set metrics with honest uncertainty: plain arrays in, plain numbers and dicts out.

The test sets here are small (62 and 124 images in the covid-xray sample, 18 and
36 in the published study), so every metric comes with a 95% interval (Wilson's
for proportions, the percentile bootstrap's for the rest), and ROC AUC is computed
from probabilities, never from hard labels.
For the modelling chapters (01-04).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics
from sklearn.manifold import TSNE


def as_probabilities(y_prob: np.ndarray) -> np.ndarray:
    """``(n, n_classes)`` probabilities; a 1-D array is P(class 1) of a binary model."""
    y_prob = np.asarray(y_prob, dtype=float)
    if y_prob.ndim == 1 or y_prob.shape[1] == 1:
        positive = y_prob.reshape(-1)
        return np.stack([1.0 - positive, positive], axis=1)
    return y_prob


def predicted_classes(y_prob: np.ndarray) -> np.ndarray:
    """The most probable class of each image (a 1-D array is P(class 1) of a binary model).

    >>> predicted_classes([0.2, 0.7]).tolist()
    [0, 1]
    """
    return as_probabilities(y_prob).argmax(axis=1)


def roc_auc(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """ROC AUC from probabilities: binary, or one-vs-rest macro average for more classes.

    Computed from ranks (the Mann-Whitney statistic, ties counted half), which is
    what scikit-learn's ``roc_auc_score`` gives, without its input checks: the
    bootstrap calls it thousands of times per chapter.  ``nan`` unless every class
    is present in ``y_true``.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y_true = np.asarray(y_true)
    proba = as_probabilities(y_prob)
    columns = [1] if proba.shape[1] == 2 else range(proba.shape[1])
    aucs = []
    for k in columns:
        positive = y_true == k
        n_pos = int(positive.sum())
        n_neg = len(y_true) - n_pos
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        ranks = stats.rankdata(proba[:, k])
        aucs.append((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(aucs))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class): rows are true classes, as in scikit-learn's ``confusion_matrix``."""
    return np.bincount(n_classes * np.asarray(y_true) + np.asarray(y_pred), minlength=n_classes**2).reshape(n_classes, n_classes)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b`` with 0 where ``b`` is 0 (scikit-learn's ``zero_division=0``)."""
    return np.divide(a, b, out=np.zeros(len(a)), where=b > 0)


def point_metrics(y_true: np.ndarray, y_prob: np.ndarray, *, classes: list[str]) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro and weighted precision/recall/F1, per-class precision/recall/F1, ROC AUC.

    Per-class keys are ``"<metric>_<class>"``.  Balanced accuracy is ``nan`` when the
    test set holds one class, ROC AUC when it lacks one (they are undefined then).
    Computed from the confusion matrix with scikit-learn's definitions
    (``zero_division=0``; tests hold them equal): the bootstrap calls this a thousand
    times per model, and scikit-learn's input checks made that 50 times slower.
    """
    y_true = np.asarray(y_true)
    proba = as_probabilities(y_prob)
    if proba.shape[1] != len(classes):
        raise ValueError(f"{proba.shape[1]} probability columns but {len(classes)} classes")
    counts = confusion(y_true, proba.argmax(axis=1), len(classes))
    hits, support, predicted = np.diag(counts), counts.sum(axis=1), counts.sum(axis=0)
    precision, recall, f1 = _ratio(hits, predicted), _ratio(hits, support), _ratio(2 * hits, support + predicted)
    present = support > 0
    result = {
        "accuracy": hits.sum() / len(y_true),
        # for two classes this is the ROC AUC of hard 0/1 predictions, what the CoronaHack study reported
        "balanced_accuracy": recall[present].mean() if present.sum() > 1 else float("nan"),
    }
    measures = {"precision": precision, "recall": recall, "f1": f1}
    result.update({f"{m}_macro": v.mean() for m, v in measures.items()})
    result.update({f"{m}_weighted": (v * support).sum() / support.sum() for m, v in measures.items()})
    result.update({f"{m}_{c}": v[i] for i, c in enumerate(classes) for m, v in measures.items()})
    result["roc_auc"] = roc_auc(y_true, proba) if present.all() else float("nan")
    return {k: float(v) for k, v in result.items()}


def bootstrap_metrics(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    *,
    classes: list[str],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Every metric of :func:`point_metrics` with a 95% interval: Wilson's for proportions, the percentile bootstrap's for the rest.

    Accuracy and each class's precision and recall are proportions of counted
    images (:data:`PROPORTIONS`): they get Wilson score intervals (:func:`proportion`),
    which never shrink to zero width at 0 or 1 as a bootstrap does (``1.000 [1.000,
    1.000]`` on 31 images would read as certainty).  For the others (balanced
    accuracy, F1, macro and weighted averages, ROC AUC) test images are resampled
    with replacement ``n_resamples`` times; a resample that lacks a class still
    counts for the metrics defined without it (its AUC is skipped).

    Returns
    -------
    dict
        ``{metric: {"value": v, "low": lo, "high": hi}}``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    y_true = np.asarray(y_true)
    proba = as_probabilities(y_prob)
    cis = _bootstrap(
        lambda idx: point_metrics(y_true[idx], proba[idx], classes=classes),
        point_metrics(y_true, proba, classes=classes),
        len(y_true),
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
        skip_nan=True,
    )
    return cis | proportions(y_true, proba, classes=classes, confidence=confidence)


#: The metrics of :func:`point_metrics` that are proportions of images, and so get Wilson intervals.
PROPORTIONS = ("accuracy", "precision_<class>", "recall_<class>")


def proportions(y_true: np.ndarray, y_prob: np.ndarray, *, classes: list[str], confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """Accuracy and each class's precision and recall as counts over images, with Wilson intervals (:func:`proportion`).

    A class never predicted has no precision: its value is 0 (scikit-learn's
    ``zero_division=0``, as :func:`point_metrics` has it) and its interval undefined.
    """
    counts = confusion(np.asarray(y_true), as_probabilities(y_prob).argmax(axis=1), len(classes))
    hits, support, predicted = np.diag(counts), counts.sum(axis=1), counts.sum(axis=0)
    out = {"accuracy": proportion(int(hits.sum()), int(counts.sum()), confidence)}
    for i, name in enumerate(classes):
        out[f"recall_{name}"] = proportion(int(hits[i]), int(support[i]), confidence)
        out[f"precision_{name}"] = proportion(int(hits[i]), int(predicted[i]), confidence)
        if predicted[i] == 0:
            out[f"precision_{name}"]["value"] = 0.0
        if support[i] == 0:
            out[f"recall_{name}"]["value"] = 0.0
    return out


def bootstrap_each(
    y_true: np.ndarray, probabilities: dict[str, np.ndarray], *, classes: list[str], n_resamples: int = 1000, seed: int = 0
) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`bootstrap_metrics` of each model's probabilities on the same test images, by model name.

    Every model is scored on the same resamples (same ``seed``), so their intervals are comparable.
    """
    return {name: bootstrap_metrics(y_true, proba, classes=classes, n_resamples=n_resamples, seed=seed)
            for name, proba in probabilities.items()}


def _bootstrap(
    statistics: Callable[[np.ndarray], dict[str, float]],
    point: dict[str, float],
    n: int,
    *,
    n_resamples: int,
    confidence: float,
    seed: int,
    skip_nan: bool,
) -> dict[str, dict[str, float]]:
    """``{name: {"value", "low", "high"}}``: each of ``point`` with the percentile interval of its resampled values.

    The one resampling loop of :func:`bootstrap_metrics` and
    :func:`bootstrap_statistic`, so that both draw the same resamples for a
    given ``seed``: ``statistics(idx)`` is called on ``n_resamples`` sets of
    ``n`` indices drawn with replacement.

    Parameters
    ----------
    skip_nan : bool
        Leave a value that is undefined on a resample (ROC AUC of a resample
        lacking a class) out of its interval, which is NaN only when no
        resample defines it.  Without it any NaN draw makes the interval NaN,
        so that an opaque statistic's failures are not hidden.
    """
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in point}
    for _ in range(n_resamples):
        for name, value in statistics(rng.integers(0, n, n)).items():
            draws[name].append(value)
    tail = (1 - confidence) / 2 * 100
    out = {}
    for name, value in point.items():
        values = np.asarray(draws[name])
        if skip_nan:
            values = values[~np.isnan(values)]
        low, high = np.percentile(values, [tail, 100 - tail]) if len(values) else (np.nan, np.nan)
        out[name] = {"value": value, "low": float(low), "high": float(high)}
    return out


def mcnemar_test(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, float]:
    """Exact McNemar test of two classifiers on the same test images.

    Only the discordant images count: ``b`` where only A is right, ``c`` where only
    B is right; under the null hypothesis of equal accuracy ``b ~ Binomial(b + c, 1/2)``.

    >>> mcnemar_test([1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1])["only_a_correct"]
    3
    """
    y_true, pred_a, pred_b = map(np.asarray, (y_true, pred_a, pred_b))
    if not len(y_true) == len(pred_a) == len(pred_b):
        raise ValueError(f"lengths differ: {len(y_true)}, {len(pred_a)}, {len(pred_b)}")
    a_right, b_right = pred_a == y_true, pred_b == y_true
    b = int(np.sum(a_right & ~b_right))
    c = int(np.sum(~a_right & b_right))
    p_value = 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)
    return {"only_a_correct": b, "only_b_correct": c, "p_value": p_value}


def predict_proba(model, images) -> tuple[np.ndarray, float]:
    """Class probabilities ``(n, n_classes)`` of a Keras model over a batched dataset, and seconds per image.

    ``images`` yields batches of images or ``(images, labels)``; a one-unit sigmoid
    output becomes two columns ``[P(class 0), P(class 1)]``.
    """
    started = time.perf_counter()
    raw = model.predict(images, verbose=0)
    seconds = time.perf_counter() - started
    return as_probabilities(raw), seconds / max(len(raw), 1)


def embed_tsne(features: np.ndarray, *, seed: int, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE of ``features`` ``(n, d)``; the perplexity is lowered for small ``n`` (it must stay below ``n``)."""
    features = np.asarray(features, dtype=float).reshape(len(features), -1)
    if len(features) < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {len(features)}")
    perplexity = min(perplexity, (len(features) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)


def number(value: float | None, spec: str = ".3f", *, missing: str = "n/a") -> str:
    """``value`` formatted, or ``missing`` when it is undefined (NaN, or ``null`` as results files hold it).

    >>> number(0.5, ".2f"), number(None), number(float("nan"), missing="–")
    ('0.50', 'n/a', '–')
    """
    return missing if pd.isna(value) else format(value, spec)


def interval(ci: dict[str, float], digits: int = 3) -> str:
    """``"0.871 [0.790, 0.935]"`` from ``{"value", "low", "high"}``; ``n/a`` for an undefined part.

    >>> interval({"value": 0.5, "low": 0.25, "high": 0.75}, digits=2)
    '0.50 [0.25, 0.75]'
    """
    value, low, high = (number(ci[part], f".{digits}f") for part in ("value", "low", "high"))
    return f"{value} [{low}, {high}]"


def signed_interval(ci: dict[str, float], digits: int = 3) -> str:
    """A difference with its interval, each number signed: ``"+0.25 [+0.03, +0.46]"``; a zero shows as ``0`` never ``-0``.

    >>> signed_interval({"value": -0.0001, "low": -0.2, "high": 0.1}, digits=2)
    '0.00 [-0.20, +0.10]'
    """
    return f"{signed(ci['value'], digits)} [{signed(ci['low'], digits)}, {signed(ci['high'], digits)}]"


def signed(x: float, digits: int = 3) -> str:
    """A change with its sign, ``"+0.012"``; one that rounds to zero is ``"0.000"``, never ``"-0.000"``.

    >>> signed(0.0123), signed(-0.00004), signed(float("nan"))
    ('+0.012', '0.000', 'n/a')
    """
    text = number(x, f"+.{digits}f")
    return text[1:] if text[0] in "+-" and text[1:].strip("0.") == "" else text


def metrics_table(results: dict[str, dict[str, dict[str, float]]], metric_names: list[str]) -> pd.DataFrame:
    """One row per model, one column per metric, each cell ``value [low, high]``.

    ``results`` maps a model name to :func:`bootstrap_metrics` output.
    """
    return pd.DataFrame(
        {name: {metric: interval(cis[metric]) for metric in metric_names} for name, cis in results.items()}
    ).T.rename_axis("model")


def predictions_frame(frame: pd.DataFrame, y_prob: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Per-image results: ``file``, ``true``, ``predicted``, ``correct`` and ``p_<class>`` for each class."""
    proba = as_probabilities(y_prob)
    table = pd.DataFrame({"file": frame["file"].to_numpy(), "true": frame["class_name"].to_numpy()})
    table["predicted"] = np.asarray(classes)[proba.argmax(axis=1)]
    table["correct"] = table["true"] == table["predicted"]
    for i, name in enumerate(classes):
        table[f"p_{name}"] = proba[:, i]
    return table


def confusions(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """The mistakes, most frequent first: ``true``, ``predicted``, ``count`` and ``share`` of that true class.

    >>> confusions([0, 0, 1], [1, 1, 1], ["a", "b"]).to_dict("records")
    [{'true': 'a', 'predicted': 'b', 'count': 2, 'share': 1.0}]
    """
    matrix = confusion(y_true, y_pred, len(classes))
    rows = [
        {"true": classes[i], "predicted": classes[j], "count": int(matrix[i, j]), "share": matrix[i, j] / matrix[i].sum()}
        for i in range(len(classes)) for j in range(len(classes)) if i != j and matrix[i, j]
    ]
    table = pd.DataFrame(rows, columns=["true", "predicted", "count", "share"])
    return table.sort_values("count", ascending=False, kind="stable").reset_index(drop=True)


def most_frequent_mistakes(y_true: np.ndarray, probabilities: dict[str, np.ndarray], classes: list[str]) -> dict[str, pd.DataFrame]:
    """:func:`confusions` of each model's predicted classes (the most probable), by model name."""
    return {name: confusions(y_true, predicted_classes(proba), classes) for name, proba in probabilities.items()}


def mistakes_sentence(y_true: np.ndarray, mistakes: dict[str, pd.DataFrame], classes: list[str]) -> str:
    """Each model's most frequent mistake in words: ``"VGG16 calls 5 of the 31 covid images normal"``."""
    y_true = np.asarray(y_true)

    def one(name: str, table: pd.DataFrame) -> str:
        if not len(table):
            return f"{name} makes none"
        top = table.iloc[0]
        n_true = int((y_true == classes.index(top["true"])).sum())
        return f"{name} calls {top['count']} of the {n_true} {top['true']} images {top['predicted']}"

    return "; ".join(one(name, table) for name, table in mistakes.items())


def classification_reports(y_true: np.ndarray, probabilities: dict[str, np.ndarray], classes: list[str]) -> str:
    """scikit-learn's classification report of each model's predicted classes, one after another under its name."""
    def report(proba: np.ndarray) -> str:
        return metrics.classification_report(y_true, predicted_classes(proba), labels=np.arange(len(classes)),
                                              target_names=classes, digits=3, zero_division=0)

    return "\n".join(f"{name}\n{report(proba)}" for name, proba in probabilities.items())


def predicts_one_class(y_prob: np.ndarray) -> bool:
    """Whether every image gets the same most probable class: a model that decides nothing, whatever its accuracy."""
    return len(np.unique(predicted_classes(y_prob))) == 1


def seed_metrics(y_true: np.ndarray, by_seed: dict[int, np.ndarray], *, classes: list[str]) -> pd.DataFrame:
    """Each training seed's :func:`point_metrics` on the same test images, one row per seed (index ``seed``)."""
    rows = {seed: point_metrics(y_true, proba, classes=classes) for seed, proba in by_seed.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("seed")


def seed_spread(table: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Per metric of a :func:`seed_metrics` table: ``n`` seeds, ``mean``, ``sd`` (n - 1; ``None`` for one seed), ``min``, ``max``.

    ``None`` also stands for a metric no seed defines, so the results file holds no NaN.
    """
    def number(value: float) -> float | None:
        return None if pd.isna(value) else float(value)

    return {
        metric: {"n": int(values.notna().sum()), "mean": number(values.mean()), "sd": number(values.std(ddof=1)),
                 "min": number(values.min()), "max": number(values.max())}
        for metric, values in table.items()
    }


def spread_text(spread: dict[str, float | None], digits: int = 3, *, counted: bool = True) -> str:
    """What single seeds reached: ``"0.712 ± 0.034 (mean ± sd of 3 seeds)"``, or each value where there are too few for a spread.

    A standard deviation of two values says little: below three seeds the values
    themselves are given.  ``counted=False`` leaves out "(mean ± sd of N seeds)",
    for a table whose column header says it once.

    >>> spread_text({"n": 3, "mean": 0.7, "sd": 0.05, "min": 0.65, "max": 0.75}, digits=2)
    '0.70 ± 0.05 (mean ± sd of 3 seeds)'
    >>> spread_text({"n": 2, "mean": 0.7, "sd": 0.07, "min": 0.65, "max": 0.75}, digits=2)
    '0.65 and 0.75 (2 seeds)'
    """
    if spread["mean"] is None:
        return "-"
    if spread["sd"] is None or spread["n"] == 1:
        return f"{spread['mean']:.{digits}f} (1 seed)"
    if spread["n"] == 2:
        return f"{spread['min']:.{digits}f} and {spread['max']:.{digits}f} (2 seeds)"
    return f"{spread['mean']:.{digits}f} ± {spread['sd']:.{digits}f}" + (f" (mean ± sd of {spread['n']} seeds)" if counted else "")


def spread_table(per_seed: dict[str, pd.DataFrame], metric_names: list[str]) -> pd.DataFrame:
    """One row per model, one column per metric, each cell what its single seeds reached (:func:`spread_text`)."""
    spreads = {name: seed_spread(table) for name, table in per_seed.items()}
    return pd.DataFrame({name: {m: spread_text(s[m]) for m in metric_names} for name, s in spreads.items()}).T.rename_axis("model")


def ranking_score(
    results: dict[str, dict[str, dict[str, float]]], per_seed: dict[str, pd.DataFrame] | None, name: str, metric: str
) -> float:
    """What ranks model ``name``: the mean of ``metric`` over its seeds (``per_seed``), else its value in ``results``; -inf if undefined.

    The leaderboard table and its figure (:func:`xrayutils.plots.plot_leaderboard`) rank by it alike.
    """
    value = per_seed[name][metric].mean() if per_seed and name in per_seed else results[name][metric]["value"]
    return -np.inf if pd.isna(value) else float(value)


def error_counts(y_true: np.ndarray, y_prob: np.ndarray, classes: list[str]) -> str:
    """Which way a binary model is wrong, in counts: ``"calls 111 of 234 normal images pneumonia and misses 102 of 390 pneumonias"``.

    >>> error_counts([0, 0, 1, 1, 1], [0.9, 0.2, 0.1, 0.8, 0.7], ["normal", "pneumonia"])
    'calls 1 of 2 normal images pneumonia and misses 1 of 3 pneumonias'
    """
    counts = confusion(np.asarray(y_true), predicted_classes(y_prob), len(classes))
    negative, positive = classes[0], classes[1]
    return (f"calls {counts[0, 1]} of {counts[0].sum()} {negative} images {positive} and misses "
            f"{counts[1, 0]} of {counts[1].sum()} {positive}s")


def _balanced_accuracy(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    counts = confusion(np.asarray(y_true), predicted_classes(y_prob), as_probabilities(y_prob).shape[1])
    support = counts.sum(axis=1)
    return float(np.mean(np.diag(counts)[support > 0] / support[support > 0]))


#: The leaderboard metrics as functions of ``(y_true, y_prob)``, for paired comparisons on resampled images.
STATISTICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "roc_auc": roc_auc,
    "accuracy": lambda y_true, y_prob: float(np.mean(predicted_classes(y_prob) == np.asarray(y_true))),
    "balanced_accuracy": _balanced_accuracy,
}


def paired_difference(
    metric: str, y_true: np.ndarray, proba_a: np.ndarray, proba_b: np.ndarray, *,
    n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> dict[str, float]:
    """``metric`` of model a minus model b on the same test images, with a paired percentile bootstrap interval.

    Each resample draws the same images for both models, so what they share (how
    hard the drawn images are) cancels, which two separate intervals cannot do.
    For ROC AUC this is the paired bootstrap DeLong's test approximates.

    >>> y = np.array([0, 1] * 20)
    >>> d = paired_difference("accuracy", y, y.astype(float), 1.0 - y, n_resamples=200)
    >>> d["value"], d["low"] > 0
    (1.0, True)
    """
    statistic, y = STATISTICS[metric], np.asarray(y_true)
    a, b = as_probabilities(proba_a), as_probabilities(proba_b)
    return _bootstrap(lambda idx: {"d": statistic(y[idx], a[idx]) - statistic(y[idx], b[idx])},
                      {"d": statistic(y, a) - statistic(y, b)}, len(y),
                      n_resamples=n_resamples, confidence=confidence, seed=seed, skip_nan=True)["d"]


def _over_seeds(
    y: np.ndarray, by_seed: dict[str, dict[int, np.ndarray]], names: list[str], statistic: Callable
) -> tuple[dict[str, list[np.ndarray]], dict[str, float]]:
    """Each of ``names``' seeds' probabilities as :func:`as_probabilities` gives them, and ``statistic``'s mean over its seeds."""
    runs = {name: [as_probabilities(p) for p in by_seed[name].values()] for name in names}
    return runs, {name: float(np.mean([statistic(y, p) for p in proba])) for name, proba in runs.items()}


def _scores(y: np.ndarray, probabilities: dict[str, list[np.ndarray]], idx: np.ndarray, statistic: Callable, pick) -> dict[str, float]:
    """Each model's ``statistic`` on the images ``idx``, from one of its seeds' probabilities (``pick(n)`` chooses which)."""
    return {name: statistic(y[idx], runs[pick(len(runs))][idx]) for name, runs in probabilities.items()}


def _ranks(scores: dict[str, float]) -> dict[str, float]:
    """1 for the highest score, ties sharing the better rank; all NaN when a score is undefined."""
    values = np.array(list(scores.values()), dtype=float)
    if np.isnan(values).any():
        return dict.fromkeys(scores, float("nan"))
    return dict(zip(scores, stats.rankdata(-values, method="min").astype(float)))


def rank_intervals(
    y_true: np.ndarray, by_seed: dict[str, dict[int, np.ndarray]], metric: str, *,
    n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Each model's rank by ``metric`` (1 the best) with a percentile interval over test images and training seeds.

    A bare order hides how easily it would change: each resample draws the test
    images with replacement (the same ones for every model) and, for every model,
    one of its training seeds, and ranks the models on that draw.  A model whose
    interval spans most ranks has no place in the order this test set can give.
    The point value is the rank of the mean over seeds, as :func:`leaderboard` ranks.

    >>> y = np.array([0, 1] * 50)
    >>> good, noise = y * 0.8 + 0.1, np.random.default_rng(0).random(100)
    >>> r = rank_intervals(y, {"good": {1: good}, "noise": {1: noise}}, "roc_auc", n_resamples=100)
    >>> r["good"]["high"], r["noise"]["low"]
    (1.0, 2.0)
    """
    statistic, y = STATISTICS[metric], np.asarray(y_true)
    runs, mean = _over_seeds(y, by_seed, list(by_seed), statistic)
    point = _ranks(mean)
    pick = np.random.default_rng([seed, 1]).integers
    return _bootstrap(lambda idx: _ranks(_scores(y, runs, idx, statistic, pick)), point, len(y),
                      n_resamples=n_resamples, confidence=confidence, seed=seed, skip_nan=True)


def rank_correlation(
    reference: dict[str, float], y_true: np.ndarray, by_seed: dict[str, dict[int, np.ndarray]], metric: str, *,
    n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> dict[str, float]:
    """Spearman's rank correlation of ``reference`` (a number per model) with each model's ``metric`` here, and its intervals.

    ``value`` uses the mean over seeds; ``low`` and ``high`` are the percentile
    interval over test images and seeds (drawn as :func:`rank_intervals` draws
    them): how sure this test set is of the order it gives.  ``p`` is
    scipy's test that the correlation is zero across these models, which is the
    other uncertainty: with eight models, only a strong correlation is told from none.
    """
    names = [name for name in by_seed if name in reference]
    if len(names) < 3:
        raise ValueError(f"a rank correlation needs at least 3 models with a reference value, got {names}")
    statistic, y = STATISTICS[metric], np.asarray(y_true)
    runs, mean = _over_seeds(y, by_seed, names, statistic)
    ref = [reference[name] for name in names]

    def rho(scores: dict[str, float]) -> float:
        values = [scores[name] for name in names]
        return float("nan") if np.isnan(values).any() or np.ptp(values) == 0 else float(stats.spearmanr(ref, values).statistic)

    pick = np.random.default_rng([seed, 2]).integers
    ci = _bootstrap(lambda idx: {"rho": rho(_scores(y, runs, idx, statistic, pick))}, {"rho": rho(mean)}, len(y),
                    n_resamples=n_resamples, confidence=confidence, seed=seed, skip_nan=True)["rho"]
    return ci | {"p": float(stats.spearmanr(ref, [mean[name] for name in names]).pvalue), "models": len(names)}


#: Why a model has no rank, in its ``rank interval`` cell (:func:`leaderboard`): short, so that nine rows fit the page's column.
NOT_RANKED_ONE_CLASS = "not ranked: one class for all"
NOT_RANKED_BELOW = "not ranked: below the constant answer"


def leaderboard(
    results: dict[str, dict[str, dict[str, float]]],
    probabilities: dict[str, np.ndarray],
    y_true: np.ndarray,
    *,
    metric: str,
    columns: list[str],
    per_seed: dict[str, pd.DataFrame] | None = None,
    seed_probabilities: dict[str, dict[int, np.ndarray]] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Models ranked by ``metric`` (best first), each column ``value [low, high]``, and each one set against the best by ``metric``.

    ``probabilities`` holds each model's class probabilities on the same test
    images (a 1-D array: P(class 1)).  ``minus the best`` is :func:`paired_difference`
    of ``metric``, model minus the best, on the same images; with several models
    its interval is Bonferroni-corrected for the comparisons made (each at
    ``1 - 0.05 / comparisons``), and ``told apart`` says whether it excludes zero.
    The metric that ranks is the metric that tests.  With ``per_seed`` (each model's :func:`seed_metrics`)
    ``results`` and ``probabilities`` are the seed ensembles', the ranking is by
    the mean over seeds, and ``metric`` gets a ``"<metric> over seeds"`` twin
    (mean ± sd; "over 3 seeds (mean ± sd)" in the header when every model had the
    same three or more).  A model whose every prediction is one class is not ranked
    (rank ``-``, listed last, its ``rank interval`` cell says why): its accuracy is the class
    share, not a skill.  Nor is a model whose accuracy interval lies wholly below
    that share (always answering the largest test class): it has not learned the
    task, however its ROC AUC ranks.  With ``seed_probabilities`` (each model's
    probabilities by training seed) a ranked model's ``rank interval`` is
    :func:`rank_intervals`' among the ranked models.
    """
    if metric not in columns:
        raise ValueError(f"metric {metric!r} must be one of the columns {columns}")
    spreads = {name: seed_spread(table) for name, table in (per_seed or {}).items()}
    constant = float(np.bincount(np.asarray(y_true)).max() / len(y_true))
    one_class = {name for name, proba in probabilities.items() if predicts_one_class(proba)}
    below = {name for name in results if name not in one_class and results[name]["accuracy"]["high"] < constant}
    unranked = one_class | below
    order = sorted(results, key=lambda name: (name in unranked, -ranking_score(results, per_seed, name, metric)))
    best = order[0]
    confidence = 1 - 0.05 / max(1, len(order) - 1)
    ranked = [name for name in order if name not in unranked]
    ranks = (rank_intervals(y_true, {name: seed_probabilities[name] for name in ranked}, metric, n_resamples=n_resamples, seed=seed)
             if seed_probabilities and len(ranked) > 1 else {})
    counts = {spreads[name][metric]["n"] for name in spreads}
    n_seeds = counts.pop() if len(counts) == 1 and min(counts) >= 3 else None  # one count for all: said once, in the header
    seeds_column = f"{metric} over {n_seeds} seeds (mean ± sd)" if n_seeds else f"{metric} over seeds"
    rows = []
    for rank, name in enumerate(order, start=1):
        row = {"rank": "-" if name in unranked else rank, "model": name}
        if ranks or unranked:
            row["rank interval"] = (f"{ranks[name]['low']:.0f} to {ranks[name]['high']:.0f}" if name in ranks
                                    else NOT_RANKED_ONE_CLASS if name in one_class else NOT_RANKED_BELOW if name in below else "–")
        for c in columns:
            row[c] = interval(results[name][c])
            if name in spreads and c == metric:
                row[seeds_column] = spread_text(spreads[name][c], counted=not n_seeds)
        d = None if name == best else paired_difference(metric, y_true, probabilities[name], probabilities[best],
                                                        n_resamples=n_resamples, confidence=confidence, seed=seed)
        row["minus the best"] = "–" if d is None else signed_interval(d)
        row["told apart"] = "–" if d is None else "yes" if side(d) else "no"
        rows.append(row)
    return pd.DataFrame(rows).set_index("rank")


# Trust checks (chapter 04): calibration, and recall/specificity on data from elsewhere.

def reliability_bins(y_true: np.ndarray, y_prob: np.ndarray, *, n_bins: int = 10) -> pd.DataFrame:
    """Top-label reliability: per confidence bin, how many images, their mean confidence and their accuracy.

    Confidence is the probability of the predicted class, so bins start at
    ``1 / n_classes``; equal-width bins over ``[0, 1]``, empty bins left out.
    """
    y_true = np.asarray(y_true)
    proba = as_probabilities(y_prob)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    rows = [
        {"low": edges[b], "high": edges[b + 1], "count": int(np.sum(which == b)),
         "confidence": float(confidence[which == b].mean()), "accuracy": float(correct[which == b].mean())}
        for b in range(n_bins) if np.any(which == b)
    ]
    return pd.DataFrame(rows, columns=["low", "high", "count", "confidence", "accuracy"])


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, *, n_bins: int = 10) -> float:
    """ECE: the count-weighted mean gap between confidence and accuracy over :func:`reliability_bins`.

    >>> expected_calibration_error([1, 1, 0, 0], [0.9, 0.9, 0.9, 0.9], n_bins=10)
    0.4
    """
    bins = reliability_bins(y_true, y_prob, n_bins=n_bins)
    return float(np.sum(bins["count"] * (bins["confidence"] - bins["accuracy"]).abs()) / bins["count"].sum())


def bootstrap_statistic(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    y_true: np.ndarray,
    y_prob: np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """``{"value", "low", "high"}`` of ``statistic(y_true, y_prob)`` with a percentile bootstrap interval.

    Resamples as :func:`bootstrap_metrics` does (the same images for the same
    ``seed``); a resample on which ``statistic`` is NaN makes the interval NaN.
    """
    y_true, proba = np.asarray(y_true), as_probabilities(y_prob)
    return _bootstrap(
        lambda idx: {"statistic": statistic(y_true[idx], proba[idx])},
        {"statistic": float(statistic(y_true, proba))},
        len(y_true),
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
        skip_nan=False,
    )["statistic"]


def proportion(successes: int, n: int, confidence: float = 0.95) -> dict[str, float]:
    """``successes / n`` with a Wilson score interval (well behaved at 0 and 1, unlike the normal one).

    >>> round(proportion(0, 20)["high"], 3)
    0.161
    """
    if n == 0:
        return {"value": float("nan"), "low": float("nan"), "high": float("nan")}
    ci = stats.binomtest(successes, n).proportion_ci(confidence, method="wilson")
    return {"value": successes / n, "low": float(ci.low), "high": float(ci.high)}


def side(ci: dict[str, float], at: float = 0.0) -> int:
    """Where the interval ``ci`` lies against ``at``: ``1`` wholly above, ``-1`` wholly below, ``0`` holding it (or undefined).

    The one rule behind every "higher", "lower", "falls" and "told apart" of the book.

    >>> side({"low": 0.1, "high": 0.3}), side({"low": -0.1, "high": 0.1}), side({"low": 0.4, "high": 0.6}, at=0.5)
    (1, 0, 0)
    """
    return 1 if ci["low"] > at else -1 if ci["high"] < at else 0


def difference(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """``after - before`` of two independent estimates, with an interval built from their own two intervals.

    For two proportions with Wilson intervals this is Newcombe's (1998) method 10;
    for other estimates (two ROC AUCs on separate test sets, each with its
    bootstrap interval) the same square-root combination is Zou and Donner's
    (2008) MOVER.  The verdicts of the book ("more often", "lower") rest on this
    interval excluding zero, never on whether the two intervals overlap: two
    intervals can overlap while their difference is clear.

    >>> d = difference(proportion(65, 234), proportion(10, 19))  # 10 of 19 adults against 65 of 234 children
    >>> round(d["value"], 2), round(d["low"], 2), round(d["high"], 2)
    (0.25, 0.03, 0.46)
    """
    p1, l1, u1 = before["value"], before["low"], before["high"]
    p2, l2, u2 = after["value"], after["low"], after["high"]
    d = p2 - p1
    return {"value": d, "low": d - ((p2 - l2) ** 2 + (u1 - p1) ** 2) ** 0.5, "high": d + ((u2 - p2) ** 2 + (p1 - l1) ** 2) ** 0.5}


def class_rates(true: np.ndarray, predicted: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Recall and specificity of each of the model's ``classes``, with Wilson intervals.

    ``true`` and ``predicted`` are class *names*; ``true`` may hold classes the model
    does not know (external data). Recall of a class needs images of it;
    specificity (images of the other classes not called this class) needs the others.
    """
    true, predicted = np.asarray(true), np.asarray(predicted)
    rows = []
    for name in classes:
        positive = true == name
        for measure, members, hits in (
            ("recall", positive, predicted[positive] == name),
            ("specificity", ~positive, predicted[~positive] != name),
        ):
            if members.any():
                rows.append({"class": name, "measure": measure, "n": int(members.sum()), **proportion(int(hits.sum()), int(members.sum()))})
    return pd.DataFrame(rows, columns=["class", "measure", "n", "value", "low", "high"])
