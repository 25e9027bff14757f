"""One model's training, shared by the modelling chapters (01-03) and chapter 04: seeds, the split, fit.

Everything is driven by one :class:`~xrayutils.protocol.TrainingProtocol`.
``fit`` compiles and trains a model with it (or with the chapter's own
``fit_model``), augments the training batches only (:mod:`xrayutils.augmentations`),
trains only the head of a frozen base on its cached output (:mod:`xrayutils.caching`)
and keeps the weights of the epoch with the lowest validation loss.  Where and at
what precision it runs is :mod:`xrayutils.devices`'; a chapter's runs over models
and seeds are :mod:`xrayutils.runs`'.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from xrayutils import caching, datasets, pipeline, progress
from xrayutils.augmentations import augmentation_for, augmented
from xrayutils.devices import resolve_switch
from xrayutils.protocol import TrainingProtocol

#: A chapter's compile-and-fit, written on its page: ``fit_model(model, train, validation, protocol, callbacks)``
#: compiles ``model`` and returns ``model.fit``'s History.  ``train`` and ``validation`` are batched ``tf.data``
#: datasets (of the frozen base's cached output, and ``model`` its head, with feature caching); ``protocol`` is the
#: run's own (:meth:`~xrayutils.protocol.TrainingProtocol.for_model`, ``for_seed``); ``callbacks`` must be passed on.
FitModel = Callable[[keras.Model, tf.data.Dataset, tf.data.Dataset, TrainingProtocol, list[keras.callbacks.Callback]],
                    keras.callbacks.History]


def set_seed(seed: int, jit_compile: bool | str = False) -> None:
    """Seed Python, NumPy, TensorFlow and Keras, and make TensorFlow's ops deterministic unless XLA will compile.

    With both, a CPU rerun with the same parameters gives the same weights and
    numbers.  Keras refuses XLA while op determinism is on (not every XLA kernel
    is deterministic), so a run whose ``jit_compile`` resolves to on
    (:func:`~xrayutils.devices.resolve_switch`) trades the bit-for-bit rerun for XLA's speed, and
    its page says so (:func:`~xrayutils.jobs.speed_note`).
    """
    keras.utils.set_random_seed(seed)
    if resolve_switch(jit_compile, "jit_compile"):
        from tensorflow.python.framework import config  # no public switch back once determinism is on

        config.disable_op_determinism()
    else:
        tf.config.experimental.enable_op_determinism()


def loss_for(num_classes: int) -> str:
    """Binary cross-entropy for one sigmoid unit, categorical cross-entropy for a softmax."""
    return "binary_crossentropy" if num_classes == 2 else "categorical_crossentropy"


def compile_model(
    model: keras.Model, *, num_classes: int, optimizer: str, learning_rate: float, jit_compile: bool | str = "auto"
) -> None:
    """Compile with the named optimiser at ``learning_rate``, the loss for ``num_classes`` and accuracy.

    ``jit_compile="auto"`` is Keras' own: XLA only when a GPU is visible.
    """
    model.compile(
        optimizer=keras.optimizers.get({"class_name": optimizer, "config": {"learning_rate": learning_rate}}),
        loss=loss_for(num_classes),
        metrics=["accuracy"],
        jit_compile=jit_compile if jit_compile == "auto" else resolve_switch(jit_compile, "jit_compile"),
    )


def with_class_weights(dataset: tf.data.Dataset, class_weight: dict[int, float]) -> tf.data.Dataset:
    """``(images, labels, weights)`` batches: each image weighed by its class's ``class_weight``.

    Keras' own ``class_weight`` weighs the training loss only; as sample weights
    the validation loss (and the choice of epoch) is weighed the same way.
    Labels are one-hot, or P(class 1) targets of a binary model.
    """
    table = tf.constant([class_weight.get(c, 1.0) for c in range(max(class_weight) + 1)], tf.float32)

    def add(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        one_hot = y.shape.rank == 2 and y.shape[-1] > 1
        labels = tf.argmax(y, axis=-1) if one_hot else tf.cast(tf.round(tf.reshape(y, [-1])), tf.int64)
        return x, y, tf.gather(table, labels)

    return dataset.map(add, num_parallel_calls=tf.data.AUTOTUNE)


class _BestWeights(keras.callbacks.Callback):
    """Remember the weights of the epoch with the lowest validation loss; put them back at the end.

    Only the weights that training can change are copied: those of the layers
    that train (a trained batch normalisation's moving statistics included).
    Copying a frozen backbone's 50 million weights at every better epoch took
    longer than training its head.
    """

    def __init__(self, model: keras.Model) -> None:
        super().__init__()
        self.target = model
        layers_that_train = [layer for layer in caching.all_layers(model) if layer.trainable and not isinstance(layer, keras.Model)]
        self.changing = list({id(w): w for layer in layers_that_train for w in layer.weights}.values())
        self.best_loss = np.inf
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self.epoch_seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._started)
        loss = (logs or {}).get("val_loss", np.inf)
        if loss < self.best_loss:
            self.best_loss, self.best_epoch = loss, epoch + 1
            self.best_weights = [keras.ops.convert_to_numpy(w) for w in self.changing]

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None:
            for weight, value in zip(self.changing, self.best_weights):
                weight.assign(value)


class EpochProgress(keras.callbacks.Callback):
    """Report each finished epoch, with the time so far and an estimate of what is left, to the runner (:mod:`xrayutils.progress`)."""

    def __init__(self, label: str, epochs: int) -> None:
        super().__init__()
        self.label, self.epochs = label, epochs

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def encoding(self, done: int, total: int) -> None:
        """Report feature caching's progress (:func:`xrayutils.caching.encode`'s ``on_batch``), which comes before the epochs."""
        if done == 1:
            self.encoding_started = time.perf_counter()
        elapsed = time.perf_counter() - self.encoding_started
        left = f", about {progress.minutes(elapsed / done * (total - done))} left" if total else ""
        progress.report(f"{self.label}: encoding the training images, batch {done}/{total or '?'}, "
                        f"{progress.minutes(elapsed)} so far{left}")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        elapsed = time.perf_counter() - self.started
        left = elapsed / (epoch + 1) * (self.epochs - epoch - 1)
        progress.report(f"{self.label}: epoch {epoch + 1}/{self.epochs}, {progress.minutes(elapsed)} so far, "
                        f"about {progress.minutes(left)} left")


def fit(
    model: keras.Model,
    train: tf.data.Dataset,
    validation: tf.data.Dataset,
    protocol: TrainingProtocol,
    *,
    callbacks: list[keras.callbacks.Callback] | None = None,
    class_weight: dict[int, float] | None = None,
    verbose: int = 2,
    fit_model: FitModel | None = None,
    augmentation: Callable[[int], keras.Layer] | None = None,
    shared: Hashable | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place as ``protocol`` says and return its history; the best epoch's weights (by validation loss) are kept.

    ``fit_model`` is the chapter's own compile-and-fit, written on its page
    (:data:`FitModel`); without one the model is compiled with the protocol's
    optimiser, learning rate and the loss for its class count
    (:func:`compile_model`), as chapter 04's retrainings and the benchmarks train.
    Either way the optimiser, learning rate and loss that really trained are
    recorded in the history, so an edit on the page shows in the results file.

    ``class_weight`` (:meth:`~xrayutils.protocol.TrainingProtocol.class_weights`)
    weighs every image by its class, in training and validation alike
    (:func:`with_class_weights`): the epoch kept is then the one with the lowest
    class-balanced validation loss, not one that wins by favouring the larger
    class, and the history's losses and accuracies are class-weighted.

    With ``protocol.augment`` the study's augmentation runs on the training
    batches only (:func:`~xrayutils.augmentations.augmented`), so the saved model is the plain one and
    predicts on unaltered images: ``augmentation(seed)``'s layers where a
    chapter writes them on its page, else the study's published settings
    (:func:`~xrayutils.augmentations.augmentation_for`).

    With ``protocol.cache_features`` the model's frozen base
    (:func:`xrayutils.caching.split_frozen`) runs once per image,
    ``augmented_views`` times per training image when augmenting, and only the
    head trains, on batches of the cached features shuffled with the protocol's
    seed.  ``train`` is then read once per view, best unshuffled.  It is the same
    model and the same loss: only the base's repeated work is skipped.  Given
    ``shared``, a name for the images behind ``train`` and ``validation`` (in
    order), unaugmented encodings are shared with other runs of the same frozen
    base (:func:`xrayutils.caching.encode_shared`): a later training seed trains
    its head at once.

    Returns
    -------
    dict
        Per-epoch lists ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` and
        ``seconds``, plus ``best_epoch`` (1-based), ``fit_seconds`` (encoding
        included), ``augmented``, ``precision``, ``jit_compile`` and ``loss_scaling`` as used, and
        with caching ``cache`` (views, encoding seconds).
    """
    num_classes = max(2, model.output_shape[-1])
    started = time.perf_counter()
    if augmentation is not None:
        layer = augmentation(protocol.seed) if protocol.augment else None
    else:
        layer = augmentation_for(protocol)
    trainer, cache = model, None
    if protocol.cache_features:
        split = caching.split_frozen(model)
        if split is None:
            raise ValueError(f"{model.name} has no frozen base whose output could be cached: set cache_features=False")
        encoder, trainer = split
        views = protocol.augmented_views if layer is not None else 1
        reporter = next((c for c in callbacks or [] if isinstance(c, EpochProgress)), None)
        on_batch = reporter.encoding if reporter else None
        reused = False
        if layer is None and shared is not None:
            features, labels, _, reused = caching.encode_shared(encoder, train, key=(shared, "train"), on_batch=on_batch)
            encoded_validation = caching.encode_shared(encoder, validation, key=(shared, "validation"))[:2]
        else:
            features, labels = caching.encode(encoder, train, views=views, augmentation=layer, on_batch=on_batch)
            encoded_validation = caching.encode(encoder, validation)
        batches = dict(batch_size=protocol.batch_size, seed=protocol.seed)
        train = caching.feature_dataset(features, labels, shuffle=True, **batches)
        validation = caching.feature_dataset(*encoded_validation, shuffle=False, **batches)
        cache = {"views": views, "encode_seconds": round(time.perf_counter() - started, 1), "feature_shape": list(features.shape[2:]),
                 "reused": reused}
    elif layer is not None:
        train = augmented(train, layer)
    if class_weight is not None:
        train, validation = with_class_weights(train, class_weight), with_class_weights(validation, class_weight)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:  # every batch must divide over the replicas: Keras 3 fails on an uneven one, an empty one has NaN statistics
        train = train.rebatch(protocol.batch_size, drop_remainder=True)
        validation = validation.rebatch(replicas, drop_remainder=True).rebatch(protocol.batch_size)
    best = _BestWeights(model)
    if fit_model is None:
        compile_model(trainer, num_classes=num_classes, optimizer=protocol.optimizer, learning_rate=protocol.learning_rate,
                      jit_compile=protocol.jit_compile)
        history = trainer.fit(
            train, validation_data=validation, epochs=protocol.num_epochs, callbacks=[best, *(callbacks or [])], verbose=verbose,
            shuffle=False,  # tf.data shuffles
        )
    else:
        history = fit_model(trainer, train, validation, protocol, [best, *(callbacks or [])])
        if not isinstance(history, keras.callbacks.History):
            raise TypeError(f"fit_model must return what model.fit returns (a History), got {type(history).__name__}")
    result = {name: [float(v) for v in values] for name, values in history.history.items()}
    result.update(
        seconds=[round(s, 2) for s in best.epoch_seconds],
        best_epoch=best.best_epoch,
        fit_seconds=round(time.perf_counter() - started, 1),
    )
    result.update(
        augmented=layer is not None, precision=keras.mixed_precision.global_policy().name, jit_compile=bool(trainer.jit_compile),
        loss_scaling=isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer), **compiled_with(trainer),
        replicas=replicas,
    )
    if class_weight is not None:
        result["class_weight"] = {str(c): round(w, 4) for c, w in class_weight.items()}
    if cache is not None:
        result["cache"] = cache
    return result


def compiled_with(model: keras.Model) -> dict[str, Any]:
    """The optimiser (its class, under any loss scaling), learning rate and loss ``model`` was compiled with, as recorded in a history."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    loss = model.loss if isinstance(model.loss, str) else type(model.loss).__name__
    return {"optimizer": type(optimizer).__name__, "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
            "loss_function": loss}


def load_split(
    name: str, task: str, protocol: TrainingProtocol, data_dir: str | None = None
) -> tuple[datasets.XrayDataset, dict[str, pd.DataFrame]]:
    """The dataset a protocol trains on and its :func:`~xrayutils.pipeline.split_frames`, as chapters 01-03 train and chapter 04 retrains.

    The protocol's ``max_images_per_class``, ``validation_fraction`` and ``seed``
    decide the images and the split, so a retraining sees the chapter's own.
    """
    data = datasets.load(name, task=task, data_dir=data_dir, max_images_per_class=protocol.max_images_per_class or None,
                         seed=protocol.seed)
    frames = pipeline.split_frames(data, validation_fraction=protocol.validation_fraction, seed=protocol.seed)
    require_every_class(data, frames)
    return data, frames


def require_every_class(data: datasets.XrayDataset, frames: dict[str, pd.DataFrame]) -> None:
    """Refuse a training or test split with no image of some class, naming the class, the split and any skipped files.

    A class missing from the test split would leave its recall and the ROC AUC
    undefined while the accuracy still looked fine (1.0 on the other class); one
    missing from training could never be predicted.  Both happen when every image
    of a class was skipped as undecodable.
    """
    for split in ("train", "test"):
        present = set(frames[split]["class_name"])
        missing = [c for c in data.classes if c not in present]
        if missing:
            skipped = f"; skipped as undecodable: {', '.join(data.skipped['file'])}" if len(data.skipped) else ""
            raise ValueError(f"{data.name}/{data.task}: no {' or '.join(missing)} image left in the {split} split "
                             f"({len(frames[split])} images of {sorted(present)}){skipped}. Every class needs images to train and test.")


