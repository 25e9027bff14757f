"""Every figure of the book: one ``plot_*`` function per figure, each returning its figure.

A notebook cell that shows a figure makes exactly one call here, so a reader
finds the code of any figure in one hop.  Functions take ``ax=`` where one axes
suffices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from xrayutils import evaluate, images, prose, results

sns.set_theme(style="whitegrid", context="notebook")

#: The widest a figure is drawn, in inches (at 100 dpi): the page's text column is about 8 in wide, so wider
#: figures shrink their labels below reading size.  Panels wrap into rows instead (:func:`_panels`).
PAGE_WIDTH = 9.0


def _panels(n: int, width: float, height: float) -> tuple[plt.Figure, list[plt.Axes]]:
    """``n`` panels of ``width`` x ``height`` inches in regular rows no wider than :data:`PAGE_WIDTH`; spare cells hidden."""
    ncols = max(1, min(n, int(PAGE_WIDTH // width)))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def _axes(ax: plt.Axes | None, figsize: tuple[float, float]) -> tuple[plt.Figure, plt.Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    return ax.figure, ax


def _thumbnail(path: str, size: int = 256) -> np.ndarray:
    """8-bit grey levels of the image shrunk to fit ``size`` (16-bit images scaled, as the audit reads them)."""
    return images.to_uint8(images.read(path, gray=True, max_size=size))


def plot_class_counts(totals: dict[str, pd.DataFrame], ax: plt.Axes | None = None) -> plt.Figure:
    """Grouped bars of images per class and split, one group of bars per dataset.

    ``totals`` maps a dataset label to its ``XrayDataset.totals()`` table.
    """
    long = pd.concat(
        [t.rename_axis(index="split", columns="class").stack().rename("images").reset_index().assign(dataset=name)
         for name, t in totals.items()]
    )
    long["group"] = long["dataset"] + " · " + long["split"]
    fig, ax = _axes(ax, (9, 4))
    sns.barplot(data=long, x="class", y="images", hue="group", ax=ax)
    ax.set_xlabel("class")
    ax.set_ylabel("images")
    ax.legend(title=None, fontsize="small")
    return fig


def plot_image_grid(
    paths: Sequence[str | None],
    titles: Sequence[str],
    *,
    ncols: int = 6,
    size: float | None = None,
    colors: Sequence[str] | None = None,
) -> plt.Figure:
    """Thumbnails in a grid, each with a title (coloured when ``colors`` is given); ``None`` leaves a cell empty.

    ``size`` is a thumbnail's side in inches (default: 1.8, less when ``ncols`` would pass :data:`PAGE_WIDTH`).
    """
    size = size or min(1.8, PAGE_WIDTH / ncols)
    nrows = max(1, int(np.ceil(len(paths) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.1), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(paths) and paths[i] is not None:
            ax.imshow(_thumbnail(paths[i]), cmap="gray")
            ax.set_title(titles[i], fontsize=8, color=colors[i] if colors else "black")
    fig.tight_layout()
    return fig


def plot_ages(ages: Mapping[str, pd.Series], known: dict[str, tuple[float, float]], ax: plt.Axes | None = None) -> plt.Figure:
    """A histogram of each group's ``ages`` (years, per image; unknown ones counted in its label), each ``known`` age range a band."""
    fig, ax = _axes(ax, (8, 3.2))
    bins = np.arange(0, 101, 5)
    for i, (name, values) in enumerate(ages.items()):
        known_ages = values.dropna()
        ax.hist(known_ages, bins=bins, histtype="step", linewidth=2, color=f"C{i}",
                label=f"{name}: {prose.count(len(known_ages), 'image')} with an age, {len(values) - len(known_ages)} without")
    for i, (name, (low, high)) in enumerate(known.items(), start=len(ages)):
        ax.axvspan(low, high, color=f"C{i}", alpha=0.35, label=f"{name}: {low:g}-{high:g} years")
    ax.set_xlim(0, 100)
    ax.set_xlabel("age (years)")
    ax.set_ylabel("images")
    _legend_off_the_data(ax)
    return fig


def plot_image_sizes(properties: pd.DataFrame, ax: plt.Axes | None = None) -> plt.Figure:
    """Width against height of every image, coloured by class and shaped by dataset."""
    fig, ax = _axes(ax, (7, 5))
    sns.scatterplot(data=properties, x="width", y="height", hue="class_name", style="dataset", alpha=0.7, ax=ax)
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.legend(fontsize="small")
    return fig


def plot_intensity_histograms(
    histograms: np.ndarray, groups: Sequence[str], ax: plt.Axes | None = None
) -> plt.Figure:
    """Mean grey-level histogram per group (e.g. ``"covid-xray · covid"``), shaded ±1 SD."""
    fig, ax = _axes(ax, (8, 4.5))
    groups = np.asarray(groups)
    centres = (np.arange(histograms.shape[1]) + 0.5) / histograms.shape[1]
    for group in dict.fromkeys(groups):
        rows = histograms[groups == group]
        mean, sd = rows.mean(axis=0), rows.std(axis=0)
        ax.plot(centres, mean, label=f"{group} (n={len(rows)})")
        ax.fill_between(centres, np.clip(mean - sd, 0, None), mean + sd, alpha=0.12)
    ax.set_xlabel("grey level (0 = black, 1 = white)")
    ax.set_ylabel("fraction of pixels")
    ax.legend(fontsize="small")
    return fig


def plot_duplicate_pairs(report: pd.DataFrame, *, max_pairs: int = 8, size: float = 2.2) -> plt.Figure:
    """Near-duplicate pairs side by side, one pair per row, captioned with split, class and distance."""
    shown = report.head(max_pairs)
    if shown.empty:
        fig, ax = plt.subplots(figsize=(6, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no near-duplicate pairs", ha="center", va="center")
        return fig
    fig, axes = plt.subplots(len(shown), 2, figsize=(2 * size + 2, size * len(shown)), squeeze=False)
    for row_axes, pair in zip(axes, shown.itertuples()):
        for ax, side in zip(row_axes, ("a", "b")):
            ax.imshow(_thumbnail(getattr(pair, f"path_{side}")), cmap="gray")
            ax.axis("off")
            name = getattr(pair, f"file_{side}").rsplit("/", 1)[-1]
            ax.set_title(
                f"{getattr(pair, f'dataset_{side}')} {getattr(pair, f'split_{side}')} · "
                f"{getattr(pair, f'class_name_{side}')}\n{name[:34]}",
                fontsize=7,
                color="crimson" if pair.label_conflict else "black",
            )
        row_axes[0].text(
            1.05, 0.5, f"d={pair.distance}", transform=row_axes[0].transAxes, ha="left", va="center", fontsize=9
        )
    fig.tight_layout()
    return fig


# Modelling chapters (01-03).  Each takes results keyed by model name, one panel per model.

MISTAKE = "crimson"


def plot_histories(histories: dict[str, dict]) -> plt.Figure:
    """Accuracy and loss per epoch, train and validation, one row per model; a dotted line marks the kept epoch."""
    fig, axes = plt.subplots(len(histories), 2, figsize=(10, 3.2 * len(histories)), squeeze=False, layout="constrained")
    for row, (name, history) in zip(axes, histories.items()):
        epochs = np.arange(1, len(history["loss"]) + 1)
        for ax, metric in zip(row, ("accuracy", "loss")):
            ax.plot(epochs, history[metric], marker=".", label="train")
            ax.plot(epochs, history[f"val_{metric}"], marker=".", label="validation")
            ax.axvline(history["best_epoch"], color="gray", linestyle=":", label=f"kept (epoch {history['best_epoch']})")
            ax.set_title(f"{name}: {metric}")
            ax.set_xlabel("epoch")
            ax.legend(fontsize="small")
    return fig


def plot_confusion_matrices(y_true: np.ndarray, probabilities: dict[str, np.ndarray], classes: list[str]) -> plt.Figure:
    """Test-set confusion matrix (counts) of each model, side by side as the page's width allows."""
    from sklearn.metrics import ConfusionMatrixDisplay

    side = 2.0 + 0.6 * len(classes)
    fig, axes = _panels(len(probabilities), side, side)
    for ax, (name, proba) in zip(axes, probabilities.items()):
        ConfusionMatrixDisplay.from_predictions(
            y_true, np.argmax(proba, axis=1), labels=np.arange(len(classes)), display_labels=classes,
            ax=ax, colorbar=False, cmap="Blues",
        )
        ax.grid(False)
        ax.set_title(name)
        ax.tick_params(axis="x", labelrotation=30)
    return fig


def plot_roc_curves(y_true: np.ndarray, probabilities: dict[str, np.ndarray], classes: list[str]) -> plt.Figure:
    """ROC curves from probabilities: one panel with every model for two classes, else one-vs-rest per model."""
    from sklearn.metrics import RocCurveDisplay

    y_true = np.asarray(y_true)
    binary = len(classes) == 2
    panels = 1 if binary else len(probabilities)
    fig, axes = _panels(panels, 4.4, 4.2)
    for i, (name, proba) in enumerate(probabilities.items()):
        ax = axes[0 if binary else i]
        curves = [(name, 1)] if binary else [(c, k) for k, c in enumerate(classes)]
        for label, k in curves:
            if len(np.unique(y_true == k)) < 2:
                continue  # a class absent from the test set has no ROC curve
            RocCurveDisplay.from_predictions(y_true == k, proba[:, k], name=label, ax=ax)
        ax.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel(f"true positive rate ({classes[1]} positive)" if binary else "true positive rate")
        ax.set_title("ROC, test set" if binary else f"{name}: one vs rest")
        ax.legend(fontsize="small", loc="lower right")
    return fig


def plot_predictions(
    paths: Sequence[str],
    y_true: np.ndarray,
    probabilities: dict[str, np.ndarray],
    classes: list[str],
    *,
    n_images: int = 12,
    seed: int = 0,
    ncols: int = 6,
) -> plt.Figure:
    """Test images with true label, predicted label and its probability; mistakes in red.

    The same images for every model (one block of rows per model): first those any
    model gets wrong, then a random draw of the rest.
    """
    y_true = np.asarray(y_true)
    wrong = np.zeros(len(y_true), dtype=bool)
    for proba in probabilities.values():
        wrong |= proba.argmax(axis=1) != y_true
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(wrong)), rng.permutation(np.flatnonzero(~wrong))])
    picked = order[: min(n_images, len(order))]
    chosen = np.concatenate([np.sort(picked[wrong[picked]]), np.sort(picked[~wrong[picked]])])  # mistakes first
    titles, colors, shown = [], [], []
    for name, proba in probabilities.items():
        for i in chosen:
            k = int(proba[i].argmax())
            prefix = f"{name}\n" if len(probabilities) > 1 else ""
            titles.append(f"{prefix}true {classes[y_true[i]]}\npred {classes[k]} ({proba[i, k]:.2f})")
            colors.append(MISTAKE if k != y_true[i] else "black")
            shown.append(paths[i])
        shown += [None] * (-len(shown) % ncols)  # each model's block starts on a new row
        titles += [""] * (len(shown) - len(titles))
        colors += ["black"] * (len(shown) - len(colors))
    return plot_image_grid(shown, titles, ncols=ncols, colors=colors, size=PAGE_WIDTH / ncols)


def plot_embeddings(embeddings: dict[str, np.ndarray], frame: pd.DataFrame, classes: list[str]) -> plt.Figure:
    """2-D t-SNE of each model's features; colour = class, marker = split (``frame`` rows match the points)."""
    fig, axes = _panels(len(embeddings), 4.5, 4.2)
    for ax, (name, xy) in zip(axes, embeddings.items()):
        sns.scatterplot(
            x=xy[:, 0], y=xy[:, 1], hue=pd.Categorical(frame["class_name"], categories=classes),
            style=frame["split"].to_numpy(), alpha=0.75, ax=ax,
        )
        ax.set_title(f"{name}: t-SNE of the features layer")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize="small")
    return fig


def _interval_errors(cis: list[dict[str, float]]) -> np.ndarray:
    """``(2, n)`` distances from each value down to its low and up to its high bound, for ``yerr``/``xerr``."""
    return np.array([[ci["value"] - ci["low"], ci["high"] - ci["value"]] for ci in cis]).T


def _mark_published(ax: plt.Axes, points: list[tuple[float, float]], marker: str) -> bool:
    """Published values as black marks at ``(x, y)``, labelled once; ``NaN`` values are skipped."""
    shown = [(x, y) for x, y in points if not np.isnan(x) and not np.isnan(y)]
    for k, (x, y) in enumerate(shown):
        ax.plot(x, y, marker=marker, markersize=20, markeredgewidth=2.5, color="black",
                label="published" if k == 0 else None)
    return bool(shown)


def plot_metric_comparison(
    results: dict[str, dict[str, dict[str, float]]],
    metrics: list[str],
    *,
    published: dict[str, dict[str, float]] | None = None,
    chance: float | None = None,
    per_seed: dict[str, pd.DataFrame] | None = None,
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """Grouped bars of each model's test metrics with their 95% intervals; published values as black marks.

    ``chance`` draws the score of guessing (0.5 for a balanced binary task) as a dashed line.
    With ``per_seed`` (each model's :func:`~xrayutils.evaluate.seed_metrics`) the
    bars are the seed ensembles' and each seed's own score is a dot on its bar.
    """
    fig, ax = _axes(ax, (1.6 + 1.5 * len(metrics) * max(1, len(results)) / 2, 4.2))
    width = 0.8 / max(1, len(results))
    x = np.arange(len(metrics))
    marks = []
    for i, (name, cis) in enumerate(results.items()):
        position = x - 0.4 + width * (i + 0.5)
        ax.bar(position, [cis[m]["value"] for m in metrics], width, yerr=_interval_errors([cis[m] for m in metrics]),
               capsize=3, label=name)
        reported = (published or {}).get(name, {})
        marks += [(position[j], reported[m]) for j, m in enumerate(metrics) if reported.get(m) is not None]
        if per_seed and name in per_seed:
            for j, m in enumerate(metrics):
                values = per_seed[name][m].to_numpy(float)
                ax.scatter(np.full(len(values), position[j]), values, color="white", edgecolor="black", zorder=3, s=14,
                           label="single seeds" if i == j == 0 else None)
    _mark_published(ax, marks, "_")
    if chance is not None:
        ax.axhline(chance, color="black", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(x, metrics)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test score (95% interval)")
    _legend_off_the_data(ax)
    return fig


#: The shortcut test's variants, in the order its figure draws them, and their markers.
SHORTCUT_VARIANTS = {"full image": "o", "lungs hidden": "s", "border hidden": "D"}


def plot_shortcut_test(scores: dict[str, dict[str, dict[str, Any]]], metric: str = "roc_auc") -> plt.Figure:
    """One row per retrained model: its ``metric`` with the 95% interval on the full image, lungs hidden and border hidden.

    ``scores`` is :func:`xrayutils.checks.shortcut_scores`.  The dashed line is
    chance (0.5): a lungs-hidden interval wholly to its right means the image
    border alone separates the classes.  An interval the bootstrap could not
    give (NaN) is drawn as the point alone.
    """
    models = list(scores)
    fig, ax = _axes(None, (7, 1.3 + 0.75 * max(1, len(models))))
    colours = dict(zip(SHORTCUT_VARIANTS, sns.color_palette()))
    for j, (variant, marker) in enumerate(SHORTCUT_VARIANTS.items()):
        rows = [(i, scores[model][variant][metric]) for i, model in enumerate(models) if variant in scores[model]]
        for k, (i, ci) in enumerate(rows):
            error = None if pd.isna(ci["low"]) or pd.isna(ci["high"]) else _interval_errors([ci])
            ax.errorbar(ci["value"], i + (j - 1) * 0.22, xerr=error, fmt=marker, color=colours[variant], capsize=3,
                        markersize=7, label=variant if k == 0 else None)
    ax.axvline(0.5, color="black", linestyle="--", linewidth=1, label="chance")
    ax.set_yticks(range(len(models)), models)
    ax.set_ylim(len(models) - 0.5, -0.5)
    ax.set_xlim(0, 1.02)
    ax.set_xlabel(f"test {prose.header(metric)} (95% interval)")
    _legend_off_the_data(ax, beside=True)
    return fig


def plot_leaderboard(
    results: dict[str, dict[str, dict[str, float]]],
    metric: str,
    *,
    published: dict[str, float] | None = None,
    per_seed: dict[str, pd.DataFrame] | None = None,
    chance: float | None = None,
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """One horizontal bar per model, best on top, with its 95% interval; published values as black marks.

    ``chance`` draws the constant answer's score (the largest test class's share) as a dashed line.

    With ``per_seed`` (each model's :func:`~xrayutils.evaluate.seed_metrics`) the
    bars are the seed ensembles', each seed's own score is a dot on its bar, and
    models are ordered by the seeds' mean.
    """
    order = sorted(results, key=lambda name: evaluate.ranking_score(results, per_seed, name, metric))
    fig, ax = _axes(ax, (7, 0.9 + 0.45 * len(order)))
    ax.barh(order, [results[n][metric]["value"] for n in order],
            xerr=_interval_errors([results[n][metric] for n in order]), capsize=3, color=sns.color_palette()[0],
            label="seed ensemble" if per_seed else None)
    for i, name in enumerate(order):
        if per_seed and name in per_seed:
            values = per_seed[name][metric].to_numpy(float)
            ax.scatter(values, np.full(len(values), i), color="white", edgecolor="black", zorder=3, s=18,
                       label="single seeds" if i == 0 else None)
    reported = published or {}
    marked = _mark_published(ax, [(reported[n], i) for i, n in enumerate(order) if reported.get(n) is not None], "|")
    if chance is not None:
        ax.axvline(chance, color="black", linestyle="--", linewidth=1, label=f"constant answer ({chance:.2f})")
    ax.set_xlim(0, 1.02)
    ax.set_xlabel(f"test {prose.header(metric)} (95% interval)")
    if marked or per_seed or chance is not None:
        _legend_off_the_data(ax, beside=True)
    return fig


def plot_against_imagenet(
    results: dict[str, dict[str, dict[str, float]]],
    metric: str,
    imagenet: pd.DataFrame,
    *,
    correlation: dict[str, float] | None = None,
    chance: float | None = None,
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """Each backbone's ``metric`` here (95% interval) against its ImageNet top-1 accuracy, coloured by family.

    ``imagenet`` is :func:`xrayutils.published.imagenet_accuracy`; models without
    an ImageNet accuracy (ResNet34) are left out.  ``correlation``
    (:func:`xrayutils.evaluate.rank_correlation`) goes in the title.
    """
    names = [name for name in results if name in imagenet.index]
    fig, ax = _axes(ax, (7, 4.2))
    if not names:
        ax.text(0.5, 0.5, "no backbone with an ImageNet accuracy ran", ha="center", va="center", transform=ax.transAxes)
    families = list(dict.fromkeys(imagenet.loc[names, "family"]))
    colours = dict(zip(families, sns.color_palette(n_colors=len(families))))
    for name in names:
        x, ci = imagenet.loc[name, "imagenet_top1"], results[name][metric]
        family = imagenet.loc[name, "family"]
        ax.errorbar(x, ci["value"], yerr=_interval_errors([ci]), fmt="o", capsize=3, color=colours[family],
                    label=family if name == next(n for n in names if imagenet.loc[n, "family"] == family) else None)
        ax.annotate(name, (x, ci["value"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    if chance is not None:
        ax.axhline(chance, color="black", linestyle="--", linewidth=1, label=f"chance ({chance:.2f})")
    ax.set_xlabel("ImageNet top-1 accuracy (Keras' table)")
    ax.set_ylabel(f"test {prose.header(metric)} here (95% interval)")
    if correlation is not None:
        ax.set_title(f"Spearman's rho {correlation['value']:+.2f} [{correlation['low']:+.2f}, {correlation['high']:+.2f}] "
                     f"over test images and seeds; p = {correlation['p']:.2f} over {correlation['models']} models", fontsize=10)
    _legend_off_the_data(ax, beside=True)
    return fig


def _legend_off_the_data(ax: plt.Axes, *, beside: bool = False) -> None:
    """The axes' legend under it, or to its right (``beside``: below, it would meet a short panel's axis label).

    Never on the data; the figure's constrained layout makes room.
    """
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    columns = max(1, min(4, len(handles), 90 // max(len(label) for label in labels)))  # long labels: fewer columns
    place = (dict(loc="center left", bbox_to_anchor=(1.01, 0.5)) if beside else
             dict(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=columns))
    ax.legend(handles, labels, fontsize="small", frameon=False, **place)


def plot_accuracy_by_task(panels: dict[str, dict[str, Any]]) -> plt.Figure:
    """One panel per task: each model's test accuracy with its 95% interval, the published value and the task's chance level.

    Tasks differ in chance (0.5 for two balanced classes, 0.25 for four, the
    largest class's share on an unbalanced test set), so they never share an axis.
    ``panels`` maps a task's title to ``{"scored", "published", "chance"}``
    (:func:`xrayutils.summary.accuracy_panels`).
    """
    heights = [0.9 + 0.45 * len(p["scored"]) for p in panels.values()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, sum(heights) + 1.2 * len(panels)), layout="constrained",
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (title, panel) in zip(axes[:, 0], panels.items()):
        plot_leaderboard(panel["scored"], "accuracy", published=panel["published"], chance=panel["chance"], ax=ax)
        ax.set_title(title, loc="left")
    return fig


def plot_gradcam(examples: dict[str, dict], *, border_fraction: float | None = None, ncols: int = 4) -> plt.Figure:
    """Each model's test images with the Grad-CAM heat map over them, ``ncols`` to a row; mistakes titled in red.

    ``examples[name]`` holds ``images`` ``(n, h, w, 3)``, ``heatmaps`` ``(n, h, w)``
    and ``titles``/``correct`` per image (:func:`xrayutils.explain.examples`).
    ``border_fraction`` outlines the central region the shortcut test hides or keeps.
    A flat map (:func:`xrayutils.explain.flat_maps`) is drawn without colour and
    titled so: it explains nothing.
    """
    from xrayutils import explain

    rows = [(name, e, list(range(i, min(i + ncols, len(e["images"])))))
            for name, e in examples.items() for i in range(0, len(e["images"]), ncols)]
    size = PAGE_WIDTH / ncols
    fig, axes = plt.subplots(len(rows), ncols, figsize=(PAGE_WIDTH, (size + 0.5) * len(rows) + 0.6), squeeze=False,
                             layout="constrained")
    heat = plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap="jet")
    for row, (name, e, shown) in zip(axes, rows):
        flat = explain.flat_maps(e["heatmaps"])
        for ax in row:
            ax.axis("off")
        for ax, k in zip(row, shown):
            image = e["images"][k]
            ax.imshow(image.mean(axis=-1), cmap="gray", vmin=0, vmax=255)
            if not flat[k]:
                ax.imshow(e["heatmaps"][k], cmap=heat.cmap, alpha=0.4, norm=heat.norm)
            if border_fraction:
                h, w = image.shape[:2]
                dy, dx = round(h * border_fraction), round(w * border_fraction)
                ax.add_patch(plt.Rectangle((dx - 0.5, dy - 0.5), w - 2 * dx, h - 2 * dy, fill=False, color="white", linestyle=":"))
            title = e["titles"][k] + ("\nflat map: no explanation" if flat[k] else "")
            ax.set_title(f"{name}\n{title}" if k == shown[0] else title, fontsize=9,
                         color="black" if e["correct"][k] else MISTAKE)
    fig.colorbar(heat, ax=axes, location="bottom", shrink=0.5, aspect=40,
                 label="Grad-CAM heat (share of the map's peak)")
    return fig


def plot_reliability(bins: dict[str, pd.DataFrame], ece: dict[str, dict[str, float]]) -> plt.Figure:
    """Reliability diagram per model: accuracy against confidence per bin (marker area ~ images), the diagonal is perfect."""
    fig, axes = _panels(len(bins), 4.2, 4.2)
    for ax, (name, table) in zip(axes, bins.items()):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
        ax.plot(table["confidence"], table["accuracy"], color=sns.color_palette()[0], linewidth=1)
        ax.scatter(table["confidence"], table["accuracy"], s=20 + 300 * table["count"] / table["count"].sum(),
                   color=sns.color_palette()[0], zorder=3, label="bins (area: images)")
        ax.set(xlim=(0, 1.02), ylim=(-0.02, 1.02), xlabel="confidence (probability of the predicted class)",
               ylabel="accuracy", title=f"{results.display_name(name)}\nECE {evaluate.interval(ece[name])}")
        ax.legend(fontsize="small", loc="upper left")
    return fig


def plot_class_rates(rates: dict[str, pd.DataFrame]) -> plt.Figure:
    """Recall and specificity per class with 95% intervals, on the model's own test set and on external images.

    ``rates[name]`` is :func:`xrayutils.checks.rates_beside`'s table.
    """
    fig, axes = _panels(len(rates), 4.5, 0.8 + 0.36 * max(len(t) for t in rates.values()))
    for ax, (name, table) in zip(axes, rates.items()):
        labels = [f"{c} {m}" for c, m in zip(table["class"], table["measure"])]
        y = np.arange(len(table))
        for offset, where, color in ((-0.15, "test", sns.color_palette()[0]), (0.15, "external", sns.color_palette()[3])):
            known = table[f"value_{where}"].notna().to_numpy()
            cis = [{"value": v, "low": lo, "high": hi} for v, lo, hi in
                   table.loc[known, [f"value_{where}", f"low_{where}", f"high_{where}"]].to_numpy()]
            ax.errorbar(table.loc[known, f"value_{where}"], y[known] + offset, xerr=_interval_errors(cis) if cis else None,
                        fmt="o", color=color, capsize=3, label="own test set" if where == "test" else "external (CoronaHack TEST)")
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set(xlim=(-0.02, 1.02), xlabel="share (95% Wilson interval)", title=results.display_name(name))
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize="small")
    return fig


def plot_shares(shares: dict[str, dict[str, dict[str, float]]], *, xlabel: str) -> plt.Figure:
    """Shares with their intervals, one row per model, one colour per group of images (e.g. :func:`xrayutils.checks.adult_calls`).

    ``shares[model][group]`` holds ``value``, ``low`` and ``high``; a group without images (NaN) is left out.
    """
    groups = list(dict.fromkeys(g for by_group in shares.values() for g in by_group))
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.5 * len(shares) * max(1, len(groups)) / 2), layout="constrained")
    y = np.arange(len(shares))
    for i, group in enumerate(groups):
        offset = (i - (len(groups) - 1) / 2) * 0.8 / max(1, len(groups))
        cis = [by_group.get(group, {"value": np.nan}) for by_group in shares.values()]
        known = np.array([not pd.isna(ci["value"]) for ci in cis])
        kept = [ci for ci, k in zip(cis, known) if k]
        if kept:
            ax.errorbar([ci["value"] for ci in kept], y[known] + offset, xerr=_interval_errors(kept), fmt="o",
                        color=sns.color_palette()[i], capsize=3, label=group)
    ax.set_yticks(y, [results.display_name(name) for name in shares])
    ax.invert_yaxis()
    ax.set(xlim=(-0.02, 1.02), xlabel=xlabel)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=min(4, len(groups)), fontsize="small")
    return fig


def plot_protocol_times(table: pd.DataFrame, *, epochs: int, ax: plt.Axes | None = None) -> plt.Figure:
    """Horizontal bars: extrapolated time of the published protocol per training method (Performance page).

    ``table`` is :func:`xrayutils.benchmark.run`'s; rows without a protocol time
    (compute only) are left out.  Each bar is labelled with its seconds.
    """
    column = f"{epochs}-epoch protocol, s"
    shown = table.dropna(subset=[column]).sort_values(column)
    fig, ax = _axes(ax, (7, 0.6 + 0.5 * len(shown)))
    bars = ax.barh(shown["method"], shown[column], color=sns.color_palette("deep", len(shown)))
    ax.bar_label(bars, labels=[f"{v:,.0f} s" for v in shown[column]], padding=3)
    ax.invert_yaxis()
    ax.set_xlabel(f"seconds for the published task-1 protocol ({epochs} epochs), extrapolated")
    ax.set_xlim(0, shown[column].max() * 1.2)
    return fig
