"""Figures of the modelling chapters: right panels, right data, mistakes marked."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from tests.conftest import save_image, synthetic_xray
from xrayutils import plots

CLASSES = ["covid", "normal", "pneumonia_bac", "pneumonia_vir"]
Y = np.array([0, 1, 2, 3, 0, 1, 2, 3])


def proba(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(4), size=len(Y))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_histories_have_a_row_per_model_and_mark_the_kept_epoch():
    history = {"loss": [1, 0.5], "val_loss": [0.9, 1.0], "accuracy": [0.5, 0.7], "val_accuracy": [0.5, 0.6], "best_epoch": 1}
    fig = plots.plot_histories({"A": history, "B": history})
    assert len(fig.axes) == 4
    assert "kept (epoch 1)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_confusion_matrices_count_every_test_image():
    fig = plots.plot_confusion_matrices(Y, {"A": proba(0), "B": proba(1)}, CLASSES)
    matrices = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(matrices) == 2 and all(m.sum() == len(Y) for m in matrices)


def test_roc_has_one_panel_for_two_classes_and_one_per_model_otherwise():
    binary = np.array([0, 1, 0, 1])
    p = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    assert len(plots.plot_roc_curves(binary, {"A": p, "B": p}, ["covid", "normal"]).axes) == 1
    fig = plots.plot_roc_curves(Y, {"A": proba(0), "B": proba(1)}, CLASSES)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 5  # four classes and the diagonal


def test_prediction_grid_shows_mistakes_first_in_red(tmp_path):
    paths = [str(save_image(tmp_path / f"{i}.png", synthetic_xray(i))) for i in range(len(Y))]
    p = np.eye(4)[Y]
    p[3] = np.eye(4)[0]  # one mistake
    fig = plots.plot_predictions(paths, Y, {"A": p}, CLASSES, n_images=2, ncols=2)
    titles = [(ax.get_title(), ax.title.get_color()) for ax in fig.axes if ax.get_title()]
    assert len(titles) == 2
    assert titles[0] == ("true pneumonia_vir\npred covid (1.00)", plots.MISTAKE)  # the mistake comes first
    several = np.eye(4)[Y]
    several[[0, 5]] = several[[0, 5]][:, ::-1]  # two mistakes, far apart in the file order
    fig = plots.plot_predictions(paths, Y, {"A": several}, CLASSES, n_images=6, ncols=3)
    colors = [ax.title.get_color() for ax in fig.axes if ax.get_title()]
    assert colors[:2] == [plots.MISTAKE] * 2 and plots.MISTAKE not in colors[2:]


def test_image_grid_shrinks_thumbnails_and_shows_16_bit_like_8_bit(tmp_path):
    array = synthetic_xray(2, size=(300, 600))
    paths = [str(save_image(tmp_path / f"{m.replace(';', '')}.png", array, m)) for m in ("L", "I;16")]
    fig = plots.plot_image_grid(paths, ["8-bit", "16-bit"], ncols=2)
    shown = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert shown[0].shape == (128, 256)  # aspect ratio kept
    assert np.abs(shown[0].astype(int) - shown[1]).max() <= 1  # not clipped to white (shrunk at 16 bits: rounding)


def test_embedding_and_comparison_have_a_panel_and_a_bar_group_per_model():
    import pandas as pd

    frame = pd.DataFrame({"class_name": [CLASSES[k] for k in Y], "split": ["train"] * 4 + ["test"] * 4})
    xy = np.random.default_rng(0).normal(size=(len(Y), 2))
    assert len(plots.plot_embeddings({"A": xy, "B": xy}, frame, CLASSES).axes) == 2
    ci = {"accuracy": {"value": 0.6, "low": 0.5, "high": 0.7}}
    fig = plots.plot_metric_comparison({"A": ci, "B": ci}, ["accuracy"], published={"A": {"accuracy": 0.75}})
    assert len(fig.axes[0].patches) == 2
    assert "published" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_leaderboard_plot_puts_the_best_model_on_top():
    ci = lambda v: {"roc_auc": {"value": v, "low": v - 0.05, "high": v + 0.05}}  # noqa: E731
    fig = plots.plot_leaderboard({"A": ci(0.7), "B": ci(0.9), "C": ci(0.8)}, "roc_auc", published={"B": 0.85})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "C", "B"]  # barh draws bottom-up
    assert len(ax.patches) == 3 and ax.get_legend() is not None


def test_with_seeds_the_leaderboard_plot_orders_by_the_seed_mean_and_shows_each_seed():
    ci = lambda v: {"roc_auc": {"value": v, "low": v - 0.05, "high": v + 0.05}}  # noqa: E731
    per_seed = {"A": pd.DataFrame({"roc_auc": [0.9, 0.8, 0.85]}), "B": pd.DataFrame({"roc_auc": [0.6, 0.7, 0.65]})}
    fig = plots.plot_leaderboard({"A": ci(0.7), "B": ci(0.9)}, "roc_auc", per_seed=per_seed)  # B's ensemble is better, A's seeds are
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["B", "A"]  # A on top
    dots = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections if isinstance(c, PathCollection)])
    np.testing.assert_allclose(sorted(dots), sorted([0.9, 0.8, 0.85, 0.6, 0.7, 0.65]))
    fig = plots.plot_metric_comparison({"A": ci(0.7)}, ["roc_auc"], per_seed=per_seed)
    assert [len(c.get_offsets()) for c in fig.axes[0].collections if isinstance(c, PathCollection)] == [3]


def test_ages_draw_each_group_and_count_its_known_and_unknown_ages():
    ages = {"adults": pd.Series([23.0, 41.0, 44.0, np.nan, 80.0]), "COVID-19": pd.Series([50.0, np.nan, np.nan])}
    fig = plots.plot_ages(ages, {"children": (1.0, 5.0)})
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["adults: 4 images with an age, 1 without", "COVID-19: 1 image with an age, 2 without", "children: 1-5 years"]
    assert len(ax.patches) == 3  # one outline per group, one band


def test_shares_get_a_point_per_model_and_group_and_leave_out_empty_groups():
    ci = {"value": 0.5, "low": 0.4, "high": 0.6}
    fig = plots.plot_shares({"a": {"own": ci, "adults": ci}, "b": {"own": ci, "adults": {"value": np.nan}}}, xlabel="share")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    points = [len(line.get_xdata()) for line in ax.lines if line.get_marker() == "o"]
    assert sorted(points) == [1, 2]  # "own" for both models, "adults" only where it has images
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["own", "adults"]


def test_the_shortcut_figure_draws_every_variant_of_every_model_on_a_readable_axis():
    ci = lambda v, low=None, high=None: {"roc_auc": {"value": v, "low": v - 0.1 if low is None else low,  # noqa: E731
                                                     "high": v + 0.1 if high is None else high}}
    scores = {f"model {i} ({i:02d})": {"full image": ci(0.9), "lungs hidden": ci(0.8), "border hidden": ci(0.7)} for i in range(3)}
    scores["VGG16 (01)"] = {"full image": ci(0.6), "lungs hidden": ci(0.5, float("nan"), float("nan"))}  # border hidden failed
    fig = plots.plot_shortcut_test(scores)
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.get_position().width > 0.5  # the axes keep most of the figure, whatever the legend holds
    assert [t.get_text() for t in ax.get_yticklabels()] == list(scores)
    variant = {marker: name for name, marker in plots.SHORTCUT_VARIANTS.items()}
    points = [(round(float(c.lines[0].get_xdata()[0]), 2), variant[c.lines[0].get_marker()]) for c in ax.containers]
    assert points.count((0.9, "full image")) == 3 and (0.5, "lungs hidden") in points and len(points) == 3 * 3 + 2
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["chance", "full image", "lungs hidden", "border hidden"]


def test_the_imagenet_figure_puts_each_backbone_at_its_imagenet_accuracy_and_score():
    from xrayutils import published

    def ci(v):
        return {"roc_auc": {"value": v, "low": v - 0.05, "high": v + 0.05}}

    imagenet = published.imagenet_accuracy()
    fig = plots.plot_against_imagenet({"VGG16": ci(0.8), "EfficientNetV2M": ci(0.6), "ResNet34": ci(0.9)}, "roc_auc", imagenet,
                                      correlation={"value": -1.0, "low": -1.0, "high": -0.5, "p": 0.0, "models": 2})
    ax = fig.axes[0]
    points = sorted((round(float(c.lines[0].get_xdata()[0]), 3), round(float(c.lines[0].get_ydata()[0]), 3)) for c in ax.containers)
    assert points == [(0.713, 0.8), (0.853, 0.6)]  # ResNet34 has no ImageNet accuracy: not drawn
    assert "rho -1.00" in ax.get_title() and ax.get_xlabel().startswith("ImageNet top-1")
    empty = plots.plot_against_imagenet({"ResNet34": ci(0.9)}, "roc_auc", imagenet)
    assert "no backbone" in empty.axes[0].texts[0].get_text()
