from __future__ import annotations

import keras
import pytest
from keras.src.utils import file_utils

from xrayutils import catalogue, chapters, published


class _Asked(Exception):
    """Raised by the stand-in for Keras' download, once it has heard which file Keras wanted."""


@pytest.mark.parametrize("name", list(catalogue.BACKBONES))
def test_each_backbone_is_the_one_keras_builds_scales_and_caches_under_the_catalogues_names(name, monkeypatch):
    network = catalogue.network(name)
    assert callable(getattr(keras.applications, name))
    assert callable(getattr(keras.applications, network.keras_module).preprocess_input)
    asked = []

    def get_file(fname, *args, **kwargs):
        asked.append(fname)
        raise _Asked

    monkeypatch.setattr(file_utils, "get_file", get_file)  # what Keras would download, asked without a network
    side = network.min_image_size
    with pytest.raises(_Asked):
        getattr(keras.applications, name)(include_top=False, weights="imagenet", input_shape=(side, side, 3))
    assert asked == [network.imagenet_file]
    keras.backend.clear_session()


def test_the_studies_published_networks_are_named_once_in_the_catalogue():
    assert len(catalogue.published("coronahack")) == 9 and catalogue.published("coronahack")[-1] == "ResNet34"
    assert catalogue.published("class-challenge") == ("VGG16", "AlexNet")
    assert set(catalogue.CORONAHACK_CHOICES) == set(catalogue.BACKBONES) | {"ResNet34"}  # AlexNet is chapter 02's
    assert {"ResNet34", "AlexNet"} == catalogue.FROM_SCRATCH  # no ImageNet file for either
    assert {n.page for n in catalogue.NETWORKS if n.page} <= {c.name for c in chapters.CHAPTERS}
    assert list(published.imagenet_accuracy().index) == list(catalogue.BACKBONES)
    with pytest.raises(KeyError, match="no network 'DenseNet121'; the networks are Xception"):
        catalogue.network("DenseNet121")
