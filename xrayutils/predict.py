"""Predict with a saved model: each image file's class probabilities, and a clear message for each bad file.

Used by ``xray-book predict MODEL FILE_OR_FOLDER...`` and by any chapter that
reloads a model saved by :func:`xrayutils.train.save_model`.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import UnidentifiedImageError

from xrayutils import datasets, evaluate, images, pipeline


class ModelFileError(ValueError):
    """A file given as a model that is not one Keras can load."""


def load_model(path: str | Path) -> tuple[keras.Model, list[str]]:
    """A saved ``.keras`` model and its class names (from the JSON sidecar; ``class_0``, ... without one).

    A missing file, a file that is no ``.keras`` archive, and one Keras cannot
    load each get their own message (Keras itself calls a damaged archive "not found").
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a Keras model: a .keras file is a zip archive, and this one is not "
                             "(damaged, or another kind of file)")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # noqa: BLE001 - Keras raises many kinds; the message says which
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelFileError(f"{path} could not be loaded as a Keras model ({type(error).__name__}: {first[:200]})") from None
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        classes = json.loads(sidecar.read_text())["results"]["classes"]
    else:
        classes = [f"class_{i}" for i in range(max(2, model.output_shape[-1]))]
    return model, classes


def image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """The given paths, with folders replaced by the image files under them (sorted, by suffix).

    A folder contributes the files :func:`read_image` can read, by
    ``datasets.READABLE_SUFFIXES`` (TIFF and WebP too, unlike a dataset folder).
    Files named explicitly are kept whatever their suffix, so that a bad one gets
    its own message rather than vanishing.
    """
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files.extend(sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in datasets.READABLE_SUFFIXES))
        else:
            files.append(item)
    return files


def read_image(path: Path, image_size: tuple[int, int]) -> np.ndarray:
    """``(height, width, 3)`` float32 in ``[0, 255]``, decoded as in training.

    TensorFlow decodes what the training pipeline reads; Pillow
    (:func:`xrayutils.images.read`) takes over for formats TensorFlow lacks (TIFF,
    32-bit, float), so an unusual file still gets a prediction.  Raises
    ``ValueError`` naming why a file cannot be read.
    """
    if not path.is_file():
        raise ValueError("no such file")
    try:
        return pipeline.load_image(str(path), image_size).numpy()
    except (tf.errors.OpError, ValueError):
        pass
    try:
        array = images.read(path)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"not an image TensorFlow or Pillow can read ({error})") from None
    resized = tf.image.resize(array, image_size, method="bilinear")
    return (resized.numpy() * 255.0).astype(np.float32)


def predict_files(
    model: keras.Model, classes: list[str], inputs: Sequence[str | Path], *, batch_size: int = 16
) -> pd.DataFrame:
    """One row per file: ``file``, ``predicted``, ``p_<class>`` for each class, and ``error`` (empty when read).

    A missing file, a non-image or an undecodable image gets its message in
    ``error``; every other file is still predicted.
    """
    image_size = tuple(model.input_shape[1:3])
    files = image_files(inputs)
    arrays, errors = {}, {}
    for path in files:
        try:
            arrays[path] = read_image(path, image_size)
        except ValueError as error:
            errors[path] = str(error)
    probabilities = {}
    if arrays:
        batches = tf.data.Dataset.from_tensor_slices(np.stack(list(arrays.values()))).batch(batch_size)
        probabilities = dict(zip(arrays, evaluate.predict_proba(model, batches)[0]))
    rows = []
    for path in files:
        row = {"file": str(path), "predicted": None, **{f"p_{c}": np.nan for c in classes}, "error": errors.get(path, "")}
        if path in probabilities:
            proba = probabilities[path]
            row.update({f"p_{c}": float(p) for c, p in zip(classes, proba)}, predicted=classes[int(proba.argmax())])
        rows.append(row)
    return pd.DataFrame(rows, columns=["file", "predicted", *[f"p_{c}" for c in classes], "error"])
