"""From image files to batched tensors: one ``tf.data`` pipeline for every chapter.

Images of any mode (grayscale, RGB, RGBA, 16-bit) are decoded to three channels
of float32 in ``[0, 255]``, the range every ``keras.applications`` model's
``preprocess_input`` expects, and stretched to ``image_size`` as the reproduced
studies did (``cv2.resize`` / ``flow_from_directory``: aspect ratio not kept).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.model_selection import train_test_split

AUTOTUNE = tf.data.AUTOTUNE
#: The smallest side an image may have: a 1-pixel image is a broken file, not an X-ray, wherever it is read.
MIN_SIDE = 2


def size_error(height: int, width: int) -> str | None:
    """Why an image of this size is refused (:data:`MIN_SIDE`), or ``None``: the dataset loader and ``predict`` ask the same."""
    return f"image too small ({height}x{width})" if min(height, width) < MIN_SIDE else None


def decode(contents: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """Decode encoded image bytes to a ``(height, width, 3)`` float32 tensor in ``[0, 255]``.

    ``dtype=float32`` makes TensorFlow scale 8- and 16-bit images alike to
    ``[0, 1]``; ``channels=3`` repeats a gray channel and drops alpha.  An image
    smaller than :data:`MIN_SIDE` is an error here too, so that no path reads
    what the dataset loader refuses.
    """
    image = tf.io.decode_image(contents, channels=3, dtype=tf.float32, expand_animations=False)
    tf.debugging.assert_greater_equal(tf.reduce_min(tf.shape(image)[:2]), MIN_SIDE, message="image too small")
    image = tf.image.resize(image, image_size, method="bilinear")
    return image * 255.0


def load_image(path: str, image_size: tuple[int, int]) -> tf.Tensor:
    """Read and :func:`decode` one file."""
    return decode(tf.io.read_file(path), image_size)


def plain_error(message: str) -> str:
    """TensorFlow's message without its machinery: ``{{function_node ...}} Invalid PNG. [Op:DecodeImage] name:`` -> ``Invalid PNG``."""
    text = re.sub(r"\{\{function_node [^}]*\}\}|\[Op:\w+\]( name:.*)?", "", message.strip().splitlines()[0]).strip()
    return text.rstrip(".")[:200] or "unreadable"


def decode_error(path: str) -> str | None:
    """Why ``path`` cannot be decoded by the pipeline, or ``None`` when it can.

    Used to name and leave out bad files before training rather than crash mid-epoch.
    """
    try:
        contents = tf.io.read_file(path)
        with _quiet_stderr():  # libjpeg prints "Improper call to JPEG library in state 201" itself: the reason is returned
            image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    except (tf.errors.OpError, ValueError) as error:
        return plain_error(getattr(error, "message", str(error)))
    return size_error(int(image.shape[0]), int(image.shape[1]))


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Standard error silenced at the file-descriptor level, where C libraries write (a notebook's kernel shows fd 2 on the page)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def split_train_validation(
    labels: Sequence[int], *, validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded, stratified train/validation split.

    Stratified so that a 20% validation set of a small, balanced dataset keeps its
    balance; falls back to an unstratified split when a class is too small.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    labels = np.asarray(labels)
    indices = np.arange(len(labels))
    counts = np.bincount(labels)
    n_val = int(np.ceil(validation_fraction * len(labels)))
    stratify = labels if counts[counts > 0].min() >= 2 and n_val >= len(counts[counts > 0]) else None
    train_idx, val_idx = train_test_split(
        indices, test_size=validation_fraction, random_state=seed, stratify=stratify
    )
    return np.sort(train_idx), np.sort(val_idx)


def make_dataset(
    paths: Sequence[str],
    labels: Sequence[int],
    *,
    image_size: tuple[int, int],
    batch_size: int,
    num_classes: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    cache: bool = True,
) -> tf.data.Dataset:
    """Batched ``(images, labels)`` of ``paths``: decode, resize, cache, prefetch.

    Parameters
    ----------
    paths, labels : sequences of length n
        Files and integer class indices.
    image_size : (height, width)
    num_classes : int, optional
        When given, labels are one-hot vectors of this length (for softmax models).
    shuffle : bool
        Reshuffle every epoch with ``seed`` (deterministic for a given seed).
    cache : bool
        Keep decoded, resized images in memory after the first epoch, so decoding
        is paid once.  Augmentation is :func:`xrayutils.train.fit`'s job, so the
        cache holds unaugmented images.
    """
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    if len(paths) == 0:
        raise ValueError("no images to make a dataset from")
    labels = np.asarray(labels, dtype=np.int32)
    targets = tf.one_hot(labels, num_classes) if num_classes else labels.astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((list(map(str, paths)), targets))
    ds = ds.map(lambda p, y: (load_image(p, image_size), y), num_parallel_calls=AUTOTUNE)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def split_frames(dataset, *, validation_fraction: float, seed: int) -> dict[str, pd.DataFrame]:
    """``{"train", "validation", "test"}`` rows of an ``XrayDataset``: validation is a seeded, stratified part of train.

    The test split is the dataset's own, never touched by training or model choice.
    """
    train = dataset.subset("train")
    train_idx, val_idx = split_train_validation(train["label"], validation_fraction=validation_fraction, seed=seed)
    return {
        "train": train.iloc[train_idx].reset_index(drop=True),
        "validation": train.iloc[val_idx].reset_index(drop=True),
        "test": dataset.subset("test"),
    }


def split_counts(frames: dict[str, pd.DataFrame], classes: list[str]) -> pd.DataFrame:
    """Images per class (rows, in ``classes`` order) and split (columns) of :func:`split_frames`."""
    counts = pd.DataFrame({split: frame["class_name"].value_counts() for split, frame in frames.items()})
    return counts.reindex(classes).fillna(0).astype(int)


def make_datasets(
    frames: dict[str, pd.DataFrame], *, image_size: int, batch_size: int, num_classes: int, seed: int, shuffle_train: bool = True
) -> dict[str, tf.data.Dataset]:
    """One :func:`make_dataset` per split; only train is shuffled (unless ``shuffle_train`` is off, for feature caching).

    Labels are one-hot for a softmax (> 2 classes).
    """
    return {
        split: make_dataset(
            frame["path"],
            frame["label"],
            image_size=(image_size, image_size),
            batch_size=batch_size,
            num_classes=num_classes if num_classes > 2 else None,
            shuffle=shuffle_train and split == "train",
            seed=seed,
        )
        for split, frame in frames.items()
    }
