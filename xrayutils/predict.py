"""Predict with a saved model: each image file's class probabilities, and a clear message for each bad file.

Used by ``xray-book predict MODEL FILE_OR_FOLDER...`` and by any chapter that
reloads a model saved by :func:`xrayutils.jobs.save_model`.
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

from xrayutils import datasets, evaluate, images, models, pipeline  # noqa: F401 - models registers the layers saved models hold


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
        shown = first if len(first) <= 300 else first[:300].rsplit(" ", 1)[0] + " …"  # cut at a word, and say so
        raise ModelFileError(f"{path} could not be loaded as a Keras model ({type(error).__name__}: {shown})") from None
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
    if too_small := pipeline.size_error(*array.shape[:2]):
        raise ValueError(too_small)
    resized = tf.image.resize(array, image_size, method="bilinear")
    return (resized.numpy() * 255.0).astype(np.float32)


def decoded_batches(paths: Sequence[str | Path], image_size: tuple[int, int], batch_size: int) -> tf.data.Dataset:
    """``(indices, images)`` batches of the files TensorFlow decodes, streamed: decoded in parallel, in order, prefetched.

    A file TensorFlow cannot read is dropped from the stream (``ignore_errors``),
    so one bad file neither stops the others nor needs a pass over every file
    first; its index is missing from the batches, and :func:`probabilities` asks
    :func:`read_image` why.  Only a few batches are held at a time, whatever the
    number of files.
    """
    files = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), [str(p) for p in paths]))
    decoded = files.map(lambda i, p: (i, pipeline.load_image(p, image_size)), num_parallel_calls=pipeline.AUTOTUNE,
                        deterministic=True)
    return decoded.ignore_errors().batch(batch_size).prefetch(pipeline.AUTOTUNE)


def probabilities(model: keras.Model, paths: Sequence[str | Path], *, batch_size: int = 16) -> tuple[np.ndarray, dict[int, str]]:
    """Class probabilities ``(n, n_classes)`` of ``paths`` in order, and ``{index: why}`` for the files not read (their rows NaN).

    The files TensorFlow decodes stream through :func:`decoded_batches`; the
    rest, usually none, are read one by one by :func:`read_image` (Pillow for
    TIFF and the like) or named with the reason.  Memory grows with the batch,
    not with the number of files: 10,000 files at 224 px are never held at once.
    """
    image_size = tuple(model.input_shape[1:3])
    classes = max(2, model.output_shape[-1])
    result = np.full((len(paths), classes), np.nan)
    read = np.zeros(len(paths), dtype=bool)
    if len(paths):
        for indices, batch in decoded_batches(paths, image_size, batch_size):
            result[indices.numpy()] = evaluate.as_probabilities(model.predict_on_batch(batch))
            read[indices.numpy()] = True
    errors: dict[int, str] = {}
    late: dict[int, np.ndarray] = {}  # a batch at a time, however many TIFFs a folder holds

    def predict_late() -> None:
        result[list(late)] = evaluate.as_probabilities(model.predict_on_batch(np.stack(list(late.values()))))
        late.clear()

    for i in np.flatnonzero(~read):
        try:
            late[int(i)] = read_image(Path(paths[i]), image_size)
        except ValueError as error:
            errors[int(i)] = str(error)
        if len(late) == batch_size:
            predict_late()
    if late:
        predict_late()
    return result, errors


def predict_files(
    model: keras.Model, classes: list[str], inputs: Sequence[str | Path], *, batch_size: int = 16
) -> pd.DataFrame:
    """One row per file: ``file``, ``predicted``, ``p_<class>`` for each class, and ``error`` (empty when read).

    A missing file, a non-image or an undecodable image gets its message in
    ``error``; every other file is still predicted (:func:`probabilities`).
    """
    files = image_files(inputs)
    proba, errors = probabilities(model, files, batch_size=batch_size)
    table = pd.DataFrame(proba, columns=[f"p_{c}" for c in classes])
    read = ~np.isnan(proba).any(axis=1)
    table.insert(0, "predicted", pd.Series([classes[int(i)] if ok else None for i, ok in zip(np.nan_to_num(proba).argmax(axis=1), read)],
                                           dtype=object))
    table.insert(0, "file", [str(p) for p in files])
    table["error"] = [errors.get(i, "") for i in range(len(files))]
    return table
