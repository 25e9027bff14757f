"""Grad-CAM points where the evidence is, and the border share measures it."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from xrayutils import chapter_models, explain


def _brightness_model(size: int = 16) -> keras.Model:
    """P(class 1) rises with mean brightness: a 1x1 conv (weight 1) and global pooling, the evidence is where it's bright."""
    inputs = keras.Input((size, size, 3))
    x = layers.Conv2D(1, 1, kernel_initializer="ones", bias_initializer="zeros", name="conv")(inputs / 255.0)
    x = layers.GlobalAveragePooling2D(name="features")(x)
    outputs = layers.Dense(1, activation="sigmoid", kernel_initializer="ones", bias_initializer=keras.initializers.Constant(-1.0))(x)
    return keras.Model(inputs, outputs)


def test_gradcam_heat_lies_on_the_evidence():
    image = np.zeros((1, 16, 16, 3), np.float32)
    image[:, 2:6, 9:14] = 255.0
    model = _brightness_model()
    heat = explain.gradcam(model, image, 1)[0]
    assert heat.shape == (16, 16) and heat.max() == pytest.approx(1.0)
    assert heat[2:6, 9:14].mean() > 0.9 and heat[10:, :6].max() < 0.05
    # the score of class 0 falls with brightness: no positive evidence for it anywhere
    assert explain.gradcam(model, image, 0).max() == 0.0


@pytest.mark.parametrize(("build", "layer"), [  # sizes at which each last feature map is at least 2 x 2
    (lambda: chapter_models.vgg16_transfer((64, 64, 3), 2), "flatten"),
    (lambda: chapter_models.resnet34((64, 64, 3), 2), "features"),
    (lambda: chapter_models.backbone_classifier("Xception", (75, 75, 3), 2), "features"),
])
def test_gradcam_reaches_each_chapters_last_feature_map(build, layer):
    keras.utils.set_random_seed(0)
    model = build()
    assert explain.feature_map_layer(model).name == layer
    images = np.random.default_rng(0).uniform(0, 255, (2, *model.input_shape[1:])).astype("float32")
    heat = explain.gradcam(model, images)
    assert heat.shape == images.shape[:3] and heat.min() >= 0
    assert heat.max(axis=(1, 2)) == pytest.approx([1.0, 1.0])  # each map scaled to its peak: an all-zero map fails
    assert not explain.flat_maps(heat).any()  # and it singles out a region


def test_border_share():
    checkered = np.indices((20, 20)).sum(axis=0)[None] % 2  # heat everywhere, evenly spread: the border's area
    assert explain.border_share(checkered, 0.25)[0] == pytest.approx(1 - 0.5 ** 2)
    center = np.zeros((1, 20, 20))
    center[0, 8:12, 8:12] = 1
    assert explain.border_share(center, 0.25)[0] == 0.0
    border = 1 - np.pad(np.ones((1, 10, 10)), ((0, 0), (5, 5), (5, 5)))
    assert explain.border_share(border, 0.25)[0] == 1.0


def test_a_flat_map_explains_nothing_and_has_no_border_share():
    maps = np.stack([np.zeros((20, 20)), np.ones((20, 20)), np.full((20, 20), 0.5), np.eye(20)])
    assert explain.flat_maps(maps).tolist() == [True, True, True, False]
    assert np.isnan(explain.border_share(maps, 0.25)[:3]).all()
