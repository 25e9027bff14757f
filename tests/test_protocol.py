"""The training protocol: built from a chapter's parameters, written into its results file, read back whole."""

from __future__ import annotations

import json

import pytest

from xrayutils.protocol import PUBLISHED_AUGMENTATION, TrainingProtocol

PARAMETERS = dict(weights="none", image_size=72, batch_size=4, num_epochs=2, optimizer="adamax", resnet34_optimizer="adam",
                  learning_rate=1e-4, validation_fraction=0.1, augment=True, max_images_per_class=4, seed=7,
                  model_names=["ResNet34"], bootstrap_resamples=50, example_images=4)


def test_from_parameters_takes_the_training_settings_and_ignores_the_rest():
    protocol = TrainingProtocol.from_parameters(PARAMETERS, study="coronahack")
    assert protocol.num_epochs == 2 and protocol.image_size == 72 and protocol.input_shape == (72, 72, 3)
    assert not hasattr(protocol, "model_names") and protocol.cache_features is False  # defaults for what is not given


def test_written_to_json_and_read_back_it_is_the_same_protocol():
    protocol = TrainingProtocol.from_parameters(PARAMETERS, study="coronahack")
    saved = json.loads(json.dumps({"provenance": {}, "results": {"protocol": protocol.to_dict()}}))
    assert TrainingProtocol.from_results(saved) == protocol
    with pytest.raises(ValueError, match="rerun 03_coronahack_models"):
        TrainingProtocol.from_results({"provenance": {"chapter": "03_coronahack_models"}, "results": {}})


def test_resnet34_trains_with_its_own_optimiser_and_augmentation_follows_the_study():
    protocol = TrainingProtocol.from_parameters(PARAMETERS, study="coronahack")
    assert protocol.for_model("ResNet34").optimizer == "adam" and protocol.for_model("Xception").optimizer == "adamax"
    assert protocol.augmentation_options() == PUBLISHED_AUGMENTATION["coronahack"]
    assert TrainingProtocol.from_parameters({**PARAMETERS, "augment": False}, study="coronahack").augmentation_options() is None


@pytest.mark.parametrize("change, message", [
    ({"study": "mnist"}, "study must be one of"),
    ({"num_epochs": 0}, "num_epochs must be positive, got 0"),
    ({"batch_size": 0}, "batch_size must be positive, got 0"),
    ({"validation_fraction": 1.0}, "validation_fraction must lie in \\(0, 1\\), got 1.0"),
    ({"seeds": [1, 1]}, "seeds must differ"),
    ({"class_weight": "inverse"}, "class_weight takes 'none', 'balanced'; got 'inverse'"),
    ({"optimizer": "adamm"}, "optimizer takes 'adadelta'"),  # the runner's rule (xrayutils.constraints), for a chapter run alone
    ({"mixed_precision": "fast"}, "mixed_precision takes 'auto'"),
    ({"batchnorm_momentum": 1.0}, "batchnorm_momentum must lie in \\[0, 1\\)"),
])
def test_impossible_settings_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        TrainingProtocol(**{**dict(study="coronahack", image_size=72, batch_size=4, num_epochs=1, optimizer="adam",
                                   learning_rate=1e-3, validation_fraction=0.2, seed=0), **change})


def test_training_seeds_leave_the_split_seed_and_everything_else_alone():
    protocol = TrainingProtocol.from_parameters({**PARAMETERS, "seeds": [1, 2, 3]}, study="coronahack")
    assert protocol.seeds == (1, 2, 3) and protocol.training_seeds == [1, 2, 3]
    assert TrainingProtocol.from_parameters(PARAMETERS, study="coronahack").training_seeds == [7]  # no seeds: the chapter's seed
    one = protocol.for_seed(2)
    assert one.seed == 2 and one.training_seeds == [2]
    assert {k: v for k, v in one.to_dict().items() if k not in ("seed", "seeds")} == \
        {k: v for k, v in protocol.to_dict().items() if k not in ("seed", "seeds")}
    saved = json.loads(json.dumps({"results": {"protocol": protocol.to_dict()}}))
    assert TrainingProtocol.from_results(saved) == protocol  # the list comes back as the same tuple


def test_balanced_class_weights_make_each_class_weigh_the_same():
    protocol = TrainingProtocol.from_parameters({**PARAMETERS, "class_weight": "balanced"}, study="coronahack")
    labels = [0] * 10 + [1] * 20
    weights = protocol.class_weights(labels, 2)
    assert weights == pytest.approx({0: 1.5, 1: 0.75})
    assert 10 * weights[0] == pytest.approx(20 * weights[1])
    assert protocol.class_weights([0, 0, 2], 3)[1] == 1.0  # an absent class
    assert TrainingProtocol.from_parameters(PARAMETERS, study="coronahack").class_weights(labels, 2) is None


def test_model_settings_change_one_model_and_refuse_what_is_not_a_per_model_setting():
    protocol = TrainingProtocol.from_parameters({**PARAMETERS, "model_settings": {"Xception": {"num_epochs": 9}}}, study="coronahack")
    assert protocol.for_model("Xception").num_epochs == 9 and protocol.for_model("VGG16").num_epochs == PARAMETERS["num_epochs"]
    assert protocol.for_model("ResNet34").optimizer == "adam"  # resnet34_optimizer still applies
    saved = json.loads(json.dumps({"results": {"protocol": protocol.to_dict()}}))
    assert TrainingProtocol.from_results(saved) == protocol
    for bad in ({"epochs": 9}, {"validation_fraction": 0.5}):  # not a setting; the split is shared by every model
        with pytest.raises(ValueError, match="names no training setting"):
            TrainingProtocol.from_parameters({**PARAMETERS, "model_settings": {"Xception": bad}}, study="coronahack")
