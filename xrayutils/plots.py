"""Every figure of the book: one ``plot_*`` function per figure, each returning its figure.

A notebook cell that shows a figure makes exactly one call here, so a reader
finds the code of any figure in one hop.  Functions take ``ax=`` where one axes
suffices.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from PIL import Image

sns.set_theme(style="whitegrid", context="notebook")


def _axes(ax: plt.Axes | None, figsize: tuple[float, float]) -> tuple[plt.Figure, plt.Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    return ax.figure, ax


def _thumbnail(path: str, size: int = 256) -> np.ndarray:
    with Image.open(path) as image:
        image.thumbnail((size, size))
        return np.asarray(image.convert("L"))


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
    paths: Sequence[str], titles: Sequence[str], *, ncols: int = 6, size: float = 1.8, colors: Sequence[str] | None = None
) -> plt.Figure:
    """Thumbnails in a grid, each with a title (coloured when ``colors`` is given)."""
    nrows = max(1, int(np.ceil(len(paths) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.1), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(paths):
            ax.imshow(_thumbnail(paths[i]), cmap="gray")
            ax.set_title(titles[i], fontsize=8, color=colors[i] if colors else "black")
    fig.tight_layout()
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
