from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from xrayutils import evaluate


def test_binary_metrics_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 1])
    p1 = np.array([0.1, 0.2, 0.7, 0.8, 0.9, 0.4])  # one false positive, one false negative
    m = evaluate.point_metrics(y_true, p1, classes=["covid", "normal"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["recall_normal"] == pytest.approx(2 / 3) and m["precision_normal"] == pytest.approx(2 / 3)
    # AUC by hand: of the 9 (negative, positive) pairs, only (0.7, 0.4) is misordered
    assert m["roc_auc"] == pytest.approx(8 / 9)


def test_auc_comes_from_probabilities_not_labels():
    y_true = [0, 0, 1, 1]
    # every prediction is "class 1", but the probabilities still rank the positives first
    assert evaluate.roc_auc(y_true, [0.6, 0.7, 0.8, 0.9]) == 1.0


def test_multiclass_auc_is_one_vs_rest_macro():
    y_true = np.array([0, 1, 2, 0, 1, 2])
    proba = np.eye(3)[y_true] * 0.7 + 0.1
    m = evaluate.point_metrics(y_true, proba, classes=["a", "b", "c"])
    assert m["roc_auc"] == 1.0 and m["accuracy"] == 1.0 and m["f1_macro"] == 1.0


def test_auc_is_nan_when_a_class_is_absent():
    m = evaluate.point_metrics([0, 0, 1], np.full((3, 3), 1 / 3), classes=["a", "b", "c"])
    assert math.isnan(m["roc_auc"])


def _sklearn_metrics(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, float]:
    """The metrics as scikit-learn defines them: the reference the fast ones must equal."""
    from sklearn import metrics

    y_pred, labels = proba.argmax(axis=1), np.arange(len(classes))
    single = len(np.unique(y_true)) == 1
    out = {"accuracy": metrics.accuracy_score(y_true, y_pred),
           "balanced_accuracy": math.nan if single else metrics.balanced_accuracy_score(y_true, y_pred)}
    for average in ("macro", "weighted", None):
        p, r, f, _ = metrics.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average, zero_division=0)
        names = [average] if average else classes
        for i, name in enumerate(names):
            out.update({f"precision_{name}": np.atleast_1d(p)[i], f"recall_{name}": np.atleast_1d(r)[i], f"f1_{name}": np.atleast_1d(f)[i]})
    if len(np.unique(y_true)) < len(classes):
        out["roc_auc"] = math.nan
    elif len(classes) == 2:
        out["roc_auc"] = metrics.roc_auc_score(y_true, proba[:, 1])
    else:
        out["roc_auc"] = metrics.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels)
    return out


@pytest.mark.filterwarnings("ignore")
def test_point_metrics_equal_scikit_learns_on_random_cases():
    rng = np.random.default_rng(0)
    for case in range(300):
        k, n = int(rng.choice([2, 3, 4])), int(rng.integers(2, 40))
        y_true = rng.integers(0, k - (case % 5 == 0), n)  # every fifth case lacks a class
        proba = rng.dirichlet(np.ones(k), n)
        if case % 3 == 0:  # coarse probabilities: ties in the ranking
            proba = np.round(proba, 1) + 1e-9
            proba /= proba.sum(axis=1, keepdims=True)
        classes = [f"c{i}" for i in range(k)]
        ours, theirs = evaluate.point_metrics(y_true, proba, classes=classes), _sklearn_metrics(y_true, proba, classes)
        assert set(ours) == set(theirs)
        for name, value in theirs.items():
            assert ours[name] == pytest.approx(value, nan_ok=True), (case, name)


def test_bootstrap_interval_brackets_the_value_and_shrinks_with_n():
    rng = np.random.default_rng(0)

    def width(n):
        y = rng.integers(0, 2, n)
        p = y * 0.3 + rng.random(n) * 0.7  # overlapping classes: accuracy near 0.7
        ci = evaluate.bootstrap_metrics(y, p, classes=["a", "b"], n_resamples=300, seed=1)["accuracy"]
        assert ci["low"] <= ci["value"] <= ci["high"]
        return ci["high"] - ci["low"]

    assert width(400) < width(40)


def test_bootstrap_agrees_with_a_slow_reference():
    y = np.array([0, 1] * 10)
    p = np.linspace(0.2, 0.8, 20)
    got = evaluate.bootstrap_metrics(y, p, classes=["a", "b"], n_resamples=200, seed=3)["balanced_accuracy"]
    rng = np.random.default_rng(3)
    values = []
    for _ in range(200):
        idx = rng.integers(0, 20, 20)
        truth, guess = y[idx], (p[idx] >= 0.5).astype(int)
        if len(np.unique(truth)) == 2:  # undefined on a resample of one class, and left out
            values.append(np.mean([np.mean(guess[truth == k] == k) for k in (0, 1)]))
    assert got["low"] == pytest.approx(np.percentile(values, 2.5))
    assert got["high"] == pytest.approx(np.percentile(values, 97.5))


def test_proportions_get_wilson_intervals_never_a_zero_width_one():
    y = np.array([0] * 31 + [1] * 31)
    p = np.r_[np.full(31, 0.1), np.full(28, 0.9), np.full(3, 0.2)]  # class a all right; 3 of b called a
    metrics = evaluate.bootstrap_metrics(y, p, classes=["a", "b"], n_resamples=50, seed=0)
    assert metrics["accuracy"] == evaluate.proportion(59, 62)
    assert metrics["recall_a"] == evaluate.proportion(31, 31)
    assert metrics["recall_a"]["value"] == 1.0 and metrics["recall_a"]["low"] < 0.9  # not "1.000 [1.000, 1.000]"
    assert metrics["precision_a"] == evaluate.proportion(31, 34)
    assert metrics["recall_b"] == evaluate.proportion(28, 31)


def test_bootstrap_statistic_draws_the_same_resamples_as_bootstrap_metrics():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 40)
    p = rng.dirichlet(np.ones(4), size=40)
    metrics = evaluate.bootstrap_metrics(y, p, classes=list("abcd"), n_resamples=100, seed=9)
    f1 = evaluate.bootstrap_statistic(
        lambda t, q: float(f1_score(t, q.argmax(axis=1), labels=range(4), average="macro", zero_division=0)),
        y, p, n_resamples=100, seed=9,
    )
    assert f1["low"] == pytest.approx(metrics["f1_macro"]["low"]) and f1["high"] == pytest.approx(metrics["f1_macro"]["high"])


def test_bootstrap_skips_an_undefined_auc_but_a_nan_statistic_voids_its_interval():
    y = np.array([0] * 9 + [1])  # one positive: many resamples lack it, and their AUC is undefined
    p = np.linspace(0.1, 0.9, 10)
    auc = evaluate.bootstrap_metrics(y, p, classes=["a", "b"], n_resamples=50, seed=0)["roc_auc"]
    assert auc == {"value": 1.0, "low": 1.0, "high": 1.0}
    statistic = evaluate.bootstrap_statistic(
        lambda t, q: evaluate.roc_auc(t, q) if len(np.unique(t)) == 2 else math.nan, y, p, n_resamples=50, seed=0
    )
    assert statistic["value"] == 1.0 and math.isnan(statistic["low"]) and math.isnan(statistic["high"])


def test_mcnemar_by_hand():
    y = np.ones(12, dtype=int)
    a = np.ones(12, dtype=int)
    b = np.array([0] * 6 + [1] * 6)
    result = evaluate.mcnemar_test(y, a, b)
    assert (result["only_a_correct"], result["only_b_correct"]) == (6, 0)
    assert result["p_value"] == pytest.approx(2 * 0.5**6)
    assert evaluate.mcnemar_test(y, a, a)["p_value"] == 1.0


def test_mismatched_inputs_are_value_errors():
    with pytest.raises(ValueError, match="probability columns"):
        evaluate.point_metrics([0, 1], np.ones((2, 3)) / 3, classes=["a", "b"])
    with pytest.raises(ValueError, match="lengths differ"):
        evaluate.mcnemar_test([0, 1], [0], [1, 1])


def test_predict_proba_turns_one_sigmoid_unit_into_two_columns():
    import keras

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    proba, seconds = evaluate.predict_proba(model, x)
    assert proba.shape == (5, 2) and seconds > 0
    np.testing.assert_allclose(proba[:, 1], model.predict(x, verbose=0)[:, 0], rtol=1e-6)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)


def test_tsne_works_on_few_points_by_lowering_perplexity():
    features = np.random.default_rng(0).normal(size=(10, 6))
    xy = evaluate.embed_tsne(features, seed=0)
    assert xy.shape == (10, 2)
    np.testing.assert_array_equal(xy, evaluate.embed_tsne(features, seed=0))
    with pytest.raises(ValueError, match="at least 3 points"):
        evaluate.embed_tsne(features[:2], seed=0)


def test_a_metrics_table_shows_each_metric_with_its_interval():
    cis = {"accuracy": {"value": 0.8, "low": 0.7, "high": 0.9}, "roc_auc": {"value": 0.9, "low": 0.85, "high": 0.95}}
    table = evaluate.metrics_table({"A": cis}, ["accuracy", "roc_auc"])
    assert table.loc["A", "accuracy"] == "0.800 [0.700, 0.900]"


def test_predictions_frame_marks_mistakes():
    import pandas as pd

    frame = pd.DataFrame({"file": ["a", "b"], "class_name": ["covid", "normal"]})
    table = evaluate.predictions_frame(frame, np.array([0.2, 0.3]), ["covid", "normal"])
    assert table["predicted"].tolist() == ["covid", "covid"]
    assert table["correct"].tolist() == [True, False]
    np.testing.assert_allclose(table["p_normal"], [0.2, 0.3])


def test_the_paired_difference_cancels_what_both_models_share_and_two_intervals_cannot():
    # Two models right on the same 70 of 100 images, one of them on 5 more: their separate intervals overlap,
    # the paired one never sees the second do worse on any resample.
    y = np.array([0, 1] * 50)
    a = np.where(np.arange(100) < 70, y, 1 - y).astype(float)
    b = np.where(np.arange(100) < 75, y, 1 - y).astype(float)
    d = evaluate.paired_difference("accuracy", y, b, a, n_resamples=300, seed=0)
    assert d["value"] == pytest.approx(0.05) and d["low"] > 0
    separate = [evaluate.proportion(70, 100), evaluate.proportion(75, 100)]
    assert separate[0]["high"] > separate[1]["low"]  # what overlap would call "no difference"
    auc = evaluate.paired_difference("roc_auc", y, a, a, n_resamples=50)
    assert (auc["value"], auc["low"], auc["high"]) == (0.0, 0.0, 0.0)


def test_balanced_accuracy_is_the_mean_recall():
    result = evaluate.point_metrics([0, 0, 1, 1], [0.2, 0.7, 0.8, 0.9], classes=["a", "b"])
    assert result["balanced_accuracy"] == pytest.approx(0.75)


def test_leaderboard_sorts_by_the_metric_and_tests_each_model_against_the_best():
    y = np.array([0, 1] * 10)
    good = y.copy()
    bad = 1 - y
    bad[:2] = y[:2]
    ci = lambda v: {"accuracy": {"value": v, "low": v - 0.1, "high": v + 0.1}}  # noqa: E731
    board = evaluate.leaderboard({"bad": ci(0.45), "good": ci(1.0)}, {"bad": bad, "good": good}, y, metric="accuracy", columns=["accuracy"],
                                 n_resamples=200)
    assert board["model"].tolist() == ["good", "bad"]
    assert board.loc[1, "minus the best"] == "–" and board.loc[1, "told apart"] == "–"
    assert board.loc[2, "minus the best"].startswith("-0.900 [") and board.loc[2, "told apart"] == "yes"  # 18 of 20 images
    with pytest.raises(ValueError, match="must be one of the columns"):
        evaluate.leaderboard({"good": ci(1.0)}, {"good": good}, y, metric="roc_auc", columns=["accuracy"])


def test_calibration_of_honest_and_overconfident_models():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    honest = (rng.uniform(0, 1, p.size) < p).astype(int)  # P(class 1) = p exactly
    assert evaluate.expected_calibration_error(honest, p) < 0.02
    bins = evaluate.reliability_bins(honest, p, n_bins=10)
    assert bins["count"].sum() == p.size and bins["low"].min() >= 0.5 - 1e-9  # top-label confidence is at least 1/2
    overconfident = np.where(p > 0.5, 0.99, 0.01)  # says 0.99 where it is right about 75% of the time
    assert evaluate.expected_calibration_error(honest, overconfident) > 0.2
    ci = evaluate.bootstrap_statistic(evaluate.expected_calibration_error, honest[:500], overconfident[:500], n_resamples=50)
    assert ci["low"] < ci["high"] and ci["value"] > 0.15


def test_proportion_has_wilson_bounds():
    ci = evaluate.proportion(10, 20)
    assert ci["value"] == 0.5 and ci["low"] == pytest.approx(0.2993, abs=1e-3) and ci["high"] == pytest.approx(0.7007, abs=1e-3)
    assert np.isnan(evaluate.proportion(0, 0)["value"])


def test_class_rates_on_classes_the_model_does_not_know():
    true = ["normal", "normal", "pneumonia", "pneumonia", "covid"]
    predicted = ["normal", "covid", "covid", "normal", "covid"]
    rates = evaluate.class_rates(true, predicted, ["covid", "normal"]).set_index(["class", "measure"])
    assert rates.loc[("covid", "recall"), "value"] == 1.0 and rates.loc[("covid", "recall"), "n"] == 1
    assert rates.loc[("covid", "specificity"), "value"] == 0.5  # 2 of the 4 non-covid images called covid
    assert rates.loc[("normal", "recall"), "value"] == 0.5
    assert rates.loc[("normal", "specificity"), "value"] == pytest.approx(2 / 3)
    only_external = evaluate.class_rates(["pneumonia"] * 3, ["normal"] * 3, ["covid", "normal"])
    assert "recall" not in set(only_external["measure"])  # no image of a class: no recall for it


def test_models_are_scored_on_the_same_resamples_and_their_mistakes_told():
    y = np.array([0, 0, 1, 1])
    right, wrong = np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.9, 0.8, 0.8, 0.9])
    each = evaluate.bootstrap_each(y, {"a": right, "b": wrong}, classes=["x", "y"], n_resamples=30, seed=4)
    assert each["a"] == evaluate.bootstrap_metrics(y, right, classes=["x", "y"], n_resamples=30, seed=4)
    assert each["b"]["accuracy"]["value"] == 0.5
    mistakes = evaluate.most_frequent_mistakes(y, {"a": right, "b": wrong}, ["x", "y"])
    assert evaluate.mistakes_sentence(y, mistakes, ["x", "y"]) == "a makes none; b calls 2 of the 2 x images y"
    report = evaluate.classification_reports(y, {"a": right, "b": wrong}, ["x", "y"])
    assert report.startswith("a\n") and "\nb\n" in report and "accuracy" in report


def test_seed_metrics_and_their_spread():
    y = np.array([0, 1, 0, 1])
    table = evaluate.seed_metrics(y, {1: np.array([0.1, 0.9, 0.2, 0.8]), 2: np.array([0.9, 0.1, 0.2, 0.8])}, classes=["a", "b"])
    assert table.index.tolist() == [1, 2] and table.loc[1, "accuracy"] == 1.0 and table.loc[2, "accuracy"] == 0.5
    spread = evaluate.seed_spread(table)["accuracy"]
    assert spread == {"n": 2, "mean": 0.75, "sd": pytest.approx(np.std([1.0, 0.5], ddof=1)), "min": 0.5, "max": 1.0}
    one = evaluate.seed_spread(table.iloc[:1])["accuracy"]
    assert one["sd"] is None and evaluate.spread_text(one) == "1.000 (1 seed)"
    assert evaluate.spread_table({"m": table}, ["accuracy"]).loc["m", "accuracy"] == "0.500 and 1.000 (2 seeds)"


def test_leaderboard_over_seeds_ranks_by_the_seed_mean_and_leaves_one_class_models_unranked():
    y = np.array([0, 1] * 10)
    ci = lambda v: {"accuracy": {"value": v, "low": v - 0.1, "high": v + 0.1}}  # noqa: E731
    steady, lucky, constant = y.astype(float), np.where(np.arange(20) < 16, y, 1 - y).astype(float), np.ones(20)
    per_seed = {"steady": pd.DataFrame({"accuracy": [0.8, 0.8]}), "lucky": pd.DataFrame({"accuracy": [0.95, 0.5]}),
                "constant": pd.DataFrame({"accuracy": [0.99, 0.99]})}
    board = evaluate.leaderboard({"steady": ci(0.8), "lucky": ci(0.9), "constant": ci(0.5)},
                                 {"steady": steady, "lucky": lucky, "constant": constant}, y, metric="accuracy",
                                 columns=["accuracy"], per_seed=per_seed)
    assert board["model"].tolist() == ["steady", "lucky", "constant"]  # by the mean over seeds: 0.8 > 0.725
    assert board.index.tolist() == [1, 2, "-"] and board["rank interval"].tolist() == ["–", "–", "not ranked: one class for all"]
    assert board.loc[1, "accuracy over seeds"] == "0.800 and 0.800 (2 seeds)" and "seeds" not in board  # said in the cell
    three = {name: pd.concat([table, table.iloc[:1]], ignore_index=True) for name, table in per_seed.items()}
    board = evaluate.leaderboard({"steady": ci(0.8), "lucky": ci(0.9), "constant": ci(0.5)},
                                 {"steady": steady, "lucky": lucky, "constant": constant}, y, metric="accuracy",
                                 columns=["accuracy"], per_seed=three)
    assert board.loc[1, "accuracy over 3 seeds (mean ± sd)"] == "0.800 ± 0.000"  # the count said once, in the header
    assert evaluate.predicts_one_class(constant) and not evaluate.predicts_one_class(steady)


def test_a_model_below_the_constant_answer_is_flagged_and_not_ranked():
    y = np.array([1] * 15 + [0] * 9)  # always answering class 1 gets 0.625
    ci = lambda v, auc: {"accuracy": {"value": v, "low": v - 0.08, "high": v + 0.08},  # noqa: E731
                         "roc_auc": {"value": auc, "low": auc - 0.1, "high": auc + 0.1}}
    mixed = np.r_[np.full(12, 0.8), np.full(3, 0.2), np.full(6, 0.2), np.full(3, 0.8)]
    worse = np.r_[np.full(7, 0.8), np.full(8, 0.3), np.full(4, 0.3), np.full(5, 0.7)]
    board = evaluate.leaderboard({"good": ci(0.75, 0.7), "bad": ci(0.473, 0.9)}, {"good": mixed, "bad": worse}, y,
                                 metric="roc_auc", columns=["roc_auc", "accuracy"])
    assert board["model"].tolist() == ["good", "bad"]  # ranked below although its ROC AUC is higher
    assert board.index.tolist() == [1, "-"]
    assert board["rank interval"].tolist() == ["–", "not ranked: below the constant answer"]


def test_rank_intervals_pin_a_clear_leader_and_spread_two_models_that_chance_orders():
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 100)
    clear = np.clip(y * 0.6 + rng.normal(0.2, 0.1, 200), 0, 1)  # ROC AUC near 1
    twins = {s: np.clip(y * 0.1 + rng.normal(0.45, 0.2, 200), 0, 1) for s in (1, 2)}  # two alike, weak models
    other = {s: np.clip(y * 0.1 + rng.normal(0.45, 0.2, 200), 0, 1) for s in (1, 2)}
    ranks = evaluate.rank_intervals(y, {"clear": {1: clear, 2: clear}, "a": twins, "b": other}, "roc_auc", n_resamples=300)
    assert (ranks["clear"]["value"], ranks["clear"]["low"], ranks["clear"]["high"]) == (1.0, 1.0, 1.0)
    assert ranks["a"]["low"] == ranks["b"]["low"] == 2.0 and ranks["a"]["high"] == ranks["b"]["high"] == 3.0


def test_rank_correlation_against_a_reference_order_with_both_of_its_uncertainties():
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1], 150)
    strength = {f"m{i}": 0.1 * i for i in range(6)}  # a model's signal grows with i
    by_seed = {name: {1: np.clip(y * s + rng.normal(0.3, 0.15, 300), 0, 1)} for name, s in strength.items()}
    agree = evaluate.rank_correlation(strength, y, by_seed, "roc_auc", n_resamples=200)
    assert agree["value"] == pytest.approx(1.0) and agree["low"] > 0.8 and agree["p"] < 0.01 and agree["models"] == 6
    reverse = evaluate.rank_correlation({k: -v for k, v in strength.items()}, y, by_seed, "roc_auc", n_resamples=200)
    assert reverse["value"] == pytest.approx(-1.0) and reverse["high"] < -0.8
    with pytest.raises(ValueError, match="at least 3 models"):
        evaluate.rank_correlation({"m0": 1.0, "m1": 2.0}, y, by_seed, "roc_auc")
