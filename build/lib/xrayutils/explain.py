"""Where a model looks: Grad-CAM heat maps over its last convolutional feature map (chapter 04).

Grad-CAM (Selvaraju et al., 2017), as in the Keras example "Grad-CAM class
activation visualization": the feature map's channels are weighted by the mean
gradient of the class score and summed.  The map is as coarse as the feature map
(4x4 for VGG16 at 128 px), so it tells the region, not the structure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from xrayutils import evaluate, models, pipeline


def feature_map_layer(model: keras.Model) -> keras.Layer:
    """The last layer of ``model`` that takes a 4-D feature map: its input is the map Grad-CAM explains.

    That is the Flatten of VGG16 and AlexNet and the global pooling of the
    CoronaHack models, whose input is the backbone's last feature map.
    """
    for layer in reversed(model.layers):
        if not isinstance(layer, keras.layers.InputLayer) and len(layer.input.shape) == 4:
            return layer
    raise ValueError(f"{model.name} has no layer that takes a 4-D feature map, so Grad-CAM cannot explain it")


def gradcam(model: keras.Model, images: np.ndarray, class_index: int | np.ndarray | None = None) -> np.ndarray:
    """Grad-CAM heat maps of ``images`` (``(n, h, w, 3)`` in [0, 255]), each in [0, 1] at the image's size.

    ``class_index`` is the class explained (one for all, or one per image);
    ``None`` explains each image's predicted class.  For a one-unit sigmoid model
    the score of class 0 is ``1 - p``.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    grad_model = keras.Model(model.inputs, [feature_map_layer(model).input, model.output])
    with tf.GradientTape() as tape:
        maps, outputs = grad_model(images, training=False)
        probabilities = tf.concat([1.0 - outputs, outputs], axis=1) if outputs.shape[-1] == 1 else outputs
        if class_index is None:
            class_index = tf.argmax(probabilities, axis=1)
        index = tf.broadcast_to(tf.cast(class_index, tf.int32), [tf.shape(images)[0]])
        scores = tf.gather(probabilities, index, axis=1, batch_dims=1)
    weights = tf.reduce_mean(tape.gradient(scores, maps), axis=(1, 2))
    cams = tf.nn.relu(tf.einsum("nhwc,nc->nhw", maps, weights))
    cams = tf.image.resize(cams[..., None], images.shape[1:3], method="bilinear")[..., 0]
    peak = tf.reduce_max(cams, axis=(1, 2), keepdims=True)
    return tf.math.divide_no_nan(cams, peak).numpy()


#: A heat map whose values span less than this (of its peak) is flat: one colour, no region singled out.
FLAT_SPAN = 1e-3


def flat_maps(heatmaps: np.ndarray) -> np.ndarray:
    """Which heat maps are flat: no heat at all, or the same everywhere (a gradient of zero, a saturated unit).

    A flat map explains nothing, and its border share is only the border's area,
    which would read as "an even map" if it were averaged in.
    """
    heatmaps = np.asarray(heatmaps, dtype=float)
    return (heatmaps.max(axis=(1, 2)) - heatmaps.min(axis=(1, 2))) < FLAT_SPAN


def border_share(heatmaps: np.ndarray, border_fraction: float) -> np.ndarray:
    """Share of each heat map's total heat that falls in the outer border (the region chapter 04's shortcut test keeps).

    A map spread evenly would put ``1 - (1 - 2 * border_fraction) ** 2`` of its heat there.
    Flat maps (:func:`flat_maps`) give ``nan``: they have no region to share out.
    """
    heatmaps = np.asarray(heatmaps, dtype=float)
    _, height, width = heatmaps.shape
    dy, dx = round(height * border_fraction), round(width * border_fraction)
    center = heatmaps[:, dy:height - dy, dx:width - dx].sum(axis=(1, 2))
    total = heatmaps.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((total > 0) & ~flat_maps(heatmaps), 1.0 - center / total, np.nan)


def pick_examples(table: pd.DataFrame, classes: list[str], *, seed: int) -> pd.DataFrame:
    """Rows of a predictions table to explain: for each true class, one image predicted right and one wrong (when any)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for name in classes:
        for correct in (True, False):
            rows = np.flatnonzero((table["true"] == name).to_numpy() & (table["correct"] == correct).to_numpy())
            if len(rows):
                chosen.append(int(rng.choice(rows)))
    return table.iloc[chosen]


def examples(model: keras.Model, rows: pd.DataFrame, root: str | Path, classes: list[str]) -> dict[str, Any]:
    """Images of ``rows`` (a predictions table, ``file`` relative to ``root``), their heat maps for the predicted class, and titles."""
    size = tuple(model.input_shape[1:3])
    images = np.stack([pipeline.load_image(str(Path(root) / f), size).numpy() for f in rows["file"]])
    predicted = [classes.index(p) for p in rows["predicted"]]
    return {
        "images": images,
        "heatmaps": gradcam(model, images, np.array(predicted)),
        "titles": [f"true {t}\npred {p} ({row[f'p_{p}']:.2f})" for t, p, (_, row) in zip(rows["true"], rows["predicted"], rows.iterrows())],
        "correct": rows["correct"].astype(bool).tolist(),
    }


def feature_embeddings(
    trained: dict[str, keras.Model], frames: dict[str, pd.DataFrame], *, image_size: int, batch_size: int, seed: int, perplexity: float
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """t-SNE maps of each model's ``features`` layer over every image of ``frames``, and those images' rows.

    Chapters 01 and 02 show them: classes that form separate clouds are told
    apart by the features the classifier reads.
    """
    images = pd.concat([frames["train"], frames["validation"], frames["test"]], ignore_index=True)
    every_image = pipeline.make_dataset(images["path"], images["label"], image_size=(image_size, image_size), batch_size=batch_size)
    embeddings = {
        name: evaluate.embed_tsne(models.feature_extractor(model).predict(every_image, verbose=0), seed=seed, perplexity=perplexity)
        for name, model in trained.items()
    }
    return embeddings, images
