"""What a parameter accepts is declared once (xrayutils.constraints): the runner and the objects that take it say the same."""

from __future__ import annotations

import dataclasses

import pytest

from xrayutils import cluster, constraints
from xrayutils.protocol import TrainingProtocol
from xrayutils.runner import parameters

#: One value each constrained setting of the training protocol must refuse.
REFUSED = {"optimizer": "adamm", "resnet34_optimizer": "SGD", "class_weight": "inverse", "mixed_precision": "fast",
           "jit_compile": "yes", "validation_fraction": 1.0, "batchnorm_momentum": 1.0, "image_size": 0, "batch_size": 0,
           "num_epochs": 0, "augmented_views": 0, "learning_rate": 0.0}
BASE = dict(study="coronahack", image_size=72, batch_size=4, num_epochs=1, optimizer="adam", learning_rate=1e-3,
            validation_fraction=0.2, seed=0)


def test_the_runner_and_the_protocol_refuse_the_same_values_in_the_same_words():
    constrained = {f.name for f in dataclasses.fields(TrainingProtocol)} & set(constraints.CONSTRAINTS)
    assert constrained == set(REFUSED)  # a constraint added for a protocol setting gets its case here
    for name, value in REFUSED.items():
        with pytest.raises(ValueError) as alone:
            TrainingProtocol(**{**BASE, name: value})
        with pytest.raises(parameters.ParameterError) as before_a_build:
            parameters.check_allowed("03_coronahack_models.ipynb", name, value)
        assert str(before_a_build.value) == f"03_coronahack_models.ipynb: {alone.value}"


def test_the_engine_and_the_region_mask_check_what_the_runner_checks():
    from xrayutils.chapter_models import RegionMask

    for name, value, refuse in (("engine", "slurm", lambda v: cluster.engine(v)),
                                ("border_fraction", 0.5, lambda v: RegionMask("border", v))):
        with pytest.raises(ValueError) as alone:
            refuse(value)
        assert str(alone.value) == constraints.problem(name, value)


@pytest.mark.parametrize("name, value, said", [
    ("mixed_precision", 1, "mixed_precision takes 'auto', True, False, 'mixed_float16', 'mixed_bfloat16'; got 1"),  # 1 is not True
    ("model_names", ["VGG16", "LeNet"], "model_names takes 'Xception'"),
    ("within_folds", 1, "within_folds must be at least 2, got 1"),
    ("batchnorm_momentum", 0.0, None),  # 0 is allowed: the interval is closed there
    ("leaderboard_metric", "recall_covid", None),  # a per-class metric
    ("leaderboard_metric", "auc", "leaderboard_metric takes roc_auc, "),
    ("seed", -1, None),  # no declared constraint: the runner's rule for every number judges it
])
def test_each_kind_of_constraint_says_what_it_takes(name, value, said):
    problem = constraints.problem(name, value)
    assert problem == said if said is None else problem.startswith(said)
