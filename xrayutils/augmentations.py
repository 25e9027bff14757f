"""The studies' augmentation as Keras layers, run on training batches only.

:func:`augmentation` builds the published ``ImageDataGenerator`` settings as
preprocessing layers (with :class:`RandomBrightnessFactor`, the one Keras lacks);
:func:`augmented` maps a layer over a ``tf.data`` pipeline's training batches.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from xrayutils import pipeline
from xrayutils.protocol import TrainingProtocol


def augmentation(
    *,
    rotation_degrees: float = 50.0,
    shift: float = 0.2,
    shear_degrees: float = 0.25,
    zoom: float = 0.1,
    channel_shift: float = 20.0,
    brightness_range: tuple[float, float] | None = None,
    flips: bool = True,
    seed: int = 0,
) -> keras.Sequential:
    """Keras preprocessing layers for the published ``ImageDataGenerator`` settings (defaults: task 1 and 2).

    The CoronaHack settings (:data:`xrayutils.protocol.PUBLISHED_AUGMENTATION`) are
    zoom 0.1, shifts 0.1 and ``brightness_range=(0.5, 1.3)``, a random factor each
    image is multiplied by.

    Empty regions are filled with black (``fill_mode="constant"``, as published).
    ``ImageDataGenerator`` read ``shear_range`` as an angle in degrees, so the
    published ``0.25`` shears by at most a quarter of a degree; it is kept so, as
    a horizontal shear of ``tan(angle)``.
    ``channel_shift`` adds one random offset in ``[-channel_shift, channel_shift]``
    grey levels to the whole image, as Keras' ``channel_shift_range`` did, but the
    result is clipped to ``[0, 255]`` rather than to the image's own range.
    A zero switches a transform off.
    """
    stack: list[layers.Layer] = []
    if rotation_degrees:
        stack.append(layers.RandomRotation(rotation_degrees / 360, fill_mode="constant", seed=seed))
    if shift:
        stack.append(layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed + 1))
    if shear_degrees:
        factor = float(np.tan(np.radians(shear_degrees)))
        stack.append(layers.RandomShear(factor, 0.0, fill_mode="constant", seed=seed + 2))
    if zoom:
        stack.append(layers.RandomZoom(zoom, zoom, fill_mode="constant", seed=seed + 3))
    if channel_shift:
        stack.append(layers.RandomBrightness(channel_shift / 255, value_range=(0, 255), seed=seed + 4))
    if brightness_range:
        stack.append(RandomBrightnessFactor(*brightness_range, seed=seed + 6))
    if flips:
        stack.append(layers.RandomFlip("horizontal_and_vertical", seed=seed + 5))
    return keras.Sequential(stack, name="augmentation")


class RandomBrightnessFactor(layers.Layer):
    """Multiply each image by a random factor in ``[low, high]``, clipped to ``[0, 255]``, in training only.

    ``ImageDataGenerator``'s ``brightness_range`` scaled brightness this way; Keras'
    ``RandomBrightness`` adds an offset instead, so it cannot stand in for it.
    """

    def __init__(self, low: float, high: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 <= low <= high:
            raise ValueError(f"brightness_range must satisfy 0 <= low <= high, got ({low}, {high})")
        self.low, self.high, self.seed = low, high, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images: keras.KerasTensor, training: bool = False) -> keras.KerasTensor:
        if not training:
            return images
        shape = (keras.ops.shape(images)[0], 1, 1, 1)
        factor = keras.random.uniform(shape, self.low, self.high, seed=self.seed_generator)
        # in the images' dtype: float16 or bfloat16 under a mixed-precision policy, which TensorFlow will not multiply by float32
        return keras.ops.clip(images * keras.ops.cast(factor, images.dtype), 0.0, 255.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "low": self.low, "high": self.high, "seed": self.seed}


def augmentation_summary(augmented: bool, cache: dict[str, Any] | None) -> str:
    """How training images were augmented, in a few words: ``none``, ``fresh every epoch`` or ``N cached views per image``.

    Used by chapter 01's settings table and by the model cards (:mod:`xrayutils.results`).
    """
    if not augmented:
        return "none"
    return f"{cache['views']} cached views per image" if cache else "fresh every epoch"


def augmentation_for(protocol: TrainingProtocol) -> keras.Sequential | None:
    """The study's published augmentation, seeded with the protocol's seed; ``None`` with ``augment`` off."""
    options = protocol.augmentation_options()
    return augmentation(**options, seed=protocol.seed) if options is not None else None


def augmented(batches: tf.data.Dataset, augment: keras.Layer) -> tf.data.Dataset:
    """``batches`` of ``(images, labels)`` with ``augment`` applied to the images in the input pipeline, in training mode.

    Run here rather than inside the model so that the model being trained holds
    no random preprocessing layer: Keras refuses XLA (``jit_compile``) for a
    model holding ``RandomZoom`` or ``RandomTranslation``, and on a GPU the CPU
    then augments the next batch while the GPU trains.  One call at a time, so
    the seeded draws come in the same order on every run (the same draws the
    layers made inside the model).
    """
    return batches.map(lambda images, *rest: (augment(images, training=True), *rest)).prefetch(pipeline.AUTOTUNE)
