"""Training shared by the modelling chapters (01-03) and chapter 04: seeds, augmentation, fit, saving.

Everything is driven by one :class:`~xrayutils.protocol.TrainingProtocol`.
``fit`` compiles and trains a model with it, augments inside the training step
only, and keeps the weights of the epoch with the lowest validation loss.
``save_model`` writes the ``.keras`` file with a JSON sidecar (classes, image
size, history, provenance) so that :mod:`xrayutils.predict` can use it later;
``train_models`` trains, tests and saves a chapter's models one after another.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import time
import traceback
import weakref
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import layers

from xrayutils import caching, datasets, evaluate, models, pipeline, precision, progress, results
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
    (:func:`resolve_switch`) trades the bit-for-bit rerun for XLA's speed, and
    its page says so (:func:`speed_note`).
    """
    keras.utils.set_random_seed(seed)
    if resolve_switch(jit_compile, "jit_compile"):
        from tensorflow.python.framework import config  # no public switch back once determinism is on

        config.disable_op_determinism()
    else:
        tf.config.experimental.enable_op_determinism()


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


def gpu_count() -> int:
    """GPUs TensorFlow can see."""
    return len(tf.config.list_physical_devices("GPU"))


def resolve_switch(value: bool | str, name: str) -> bool:
    """An accelerator switch (``jit_compile``): ``True``, ``False`` or ``"auto"`` (on when a GPU is visible).

    ``auto`` leaves it off on a CPU, where XLA gains little.  ``mixed_precision``
    has its own choice (:func:`choose_precision`).
    """
    if value == "auto":
        return gpu_count() > 0
    if isinstance(value, bool):
        return value
    raise ValueError(f"{name} must be True, False or 'auto', got {value!r}")


def grow_gpu_memory() -> None:
    """Let TensorFlow take GPU memory as it needs it, not all of it at start, in this process.

    A chapter's kernel starts TensorFlow before it hands runs to Ray workers on
    the same GPUs (engine ``auto`` or ``ray``), and two chapters may share a GPU
    (``--jobs 2``): by default the first process to touch a GPU reserves nearly
    all its memory and the others fail.  Called when :mod:`xrayutils.train` is
    imported, before any GPU is used; a GPU already in use keeps its setting.
    """
    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError):  # already initialised in this process
            tf.config.experimental.set_memory_growth(gpu, True)


grow_gpu_memory()


def replica_devices() -> list[str]:
    """The devices a mirrored run spreads one batch over: every GPU TensorFlow sees (the tests split the CPU instead)."""
    return [device.name for device in tf.config.list_logical_devices("GPU")]


#: The mirrored strategy of this process, by its devices (:func:`distribution`).
_MIRRORED: dict[tuple[str, ...], tf.distribute.Strategy] = {}


def distribution(mirrored: bool = False) -> tf.distribute.Strategy:
    """TensorFlow's default strategy (one device); with ``mirrored``, a ``MirroredStrategy`` over :func:`replica_devices`.

    Several GPUs are used by default one run per GPU (engine ``auto``: the
    book's runs are independent, and a run alone on its GPU needs no collective
    at all); mirroring splits each batch of one run over the GPUs (engine
    ``mirrored``), and ``batch_size`` is then the global batch.  The strategy is
    made once per process: a second ``MirroredStrategy`` reuses the first one's
    collective keys, and the second architecture trained aborted with "Shape
    mismatch in the collective instance" (TensorFlow issue 62790).
    """
    devices = tuple(replica_devices()) if mirrored else ()
    if len(devices) < 2:
        return tf.distribute.get_strategy()
    if devices not in _MIRRORED:
        _MIRRORED[devices] = tf.distribute.MirroredStrategy(list(devices))
    return _MIRRORED[devices]


def for_replicas(protocol: TrainingProtocol, chosen: precision.Precision, replicas: int, *, train_images: int,
                 validation_images: int) -> tuple[TrainingProtocol, precision.Precision, str]:
    """The protocol and precision one run takes on ``replicas`` mirrored devices, and what changed, in words ("" when nothing).

    Every batch must divide over the replicas (:func:`fit`): Keras 3 fails on an
    uneven one ("Inputs to operation AddN must have the same size"), and a
    replica with no image computes NaN batch statistics.  So the global batch is
    rounded up to a multiple of the replicas, the training images' last partial
    batch is left out (a different one each epoch, as they are shuffled) and so
    are the last ``validation_images % replicas`` validation images; every test
    image is scored (:func:`filled`).  Each replica normalises by its own
    part of the batch (batch statistics are not synchronised; the moving ones
    are averaged over the replicas).  Float16 becomes float32: Keras 3.15's
    loss scaling judges overflow on one replica's gradients before they are
    combined, and an overflow on another replica turned the weights into NaN.
    XLA is turned off, and op determinism with it stays on: on split devices
    XLA failed ("tf.Variable on a different device"), or Keras left it off while
    the run had given up determinism for it.
    """
    if replicas < 2:
        return protocol, chosen, ""
    left = validation_images % replicas
    said = ["any last partial batch of training images left out each epoch"
            + (f", and the last {left} validation images" if left > 1 else ", and the last validation image" if left else "")]
    batch = -(-protocol.batch_size // replicas) * replicas
    if batch > train_images:
        raise ValueError(f"{train_images} training images fill no batch of {batch} on {replicas} mirrored devices: "
                         "lower batch_size, or train one run per GPU (engine auto)")
    if batch != protocol.batch_size:
        said.append(f"batch {protocol.batch_size} rounded up to {batch} ({batch // replicas} per replica)")
        protocol = dataclasses.replace(protocol, batch_size=batch)
    if chosen.policy == "mixed_float16":
        chosen = precision.Precision("float32", f"{replicas} replicas: Keras' loss scaling checks one replica's gradients only")
        said.append("float32 instead of mixed_float16")
    if resolve_switch(protocol.jit_compile, "jit_compile"):
        protocol = dataclasses.replace(protocol, jit_compile=False)
        said.append("XLA off (a mirrored model's variables live on several devices, which XLA refused), so ops stay deterministic")
    return protocol, chosen, "; ".join(said)


#: Keras' mixed-precision policies, which ``mixed_precision`` may also name to choose one whatever the device.
MIXED_POLICIES = precision.MIXED_POLICIES


def choose_precision(
    mixed_precision: bool | str, *, model: str = "", work: str | Callable[[], str] = precision.WHOLE_NETWORK
) -> precision.Precision:
    """The precision ``model`` runs under here for ``mixed_precision`` (:func:`xrayutils.precision.choose` on this machine).

    ``auto`` on a CPU with native bfloat16 chooses per model and ``work`` from
    the stored measurement; a GPU gets float16, other CPUs float32.  A policy
    name of :data:`MIXED_POLICIES` takes that policy on any device:
    ``mixed_float16`` on a CPU runs slowly, but through the same loss scaling as
    on a GPU, which is how the tests try the GPU path here.  The classifiers
    compute their last layer in float32 (:mod:`xrayutils.models`), so
    probabilities and the loss keep full precision.
    """
    return precision.choose(mixed_precision, model=model, work=work, gpus=gpu_count(), flags=precision.cpu_flags(),
                            measured=precision.stored_speedups())


def use_precision(
    mixed_precision: bool | str, *, model: str = "", work: str | Callable[[], str] = precision.WHOLE_NETWORK
) -> precision.Precision:
    """Set Keras' global dtype policy for the models built next (:func:`choose_precision`) and return it with its reason."""
    chosen = choose_precision(mixed_precision, model=model, work=work)
    keras.mixed_precision.set_global_policy(chosen.policy)
    return chosen


def set_precision(
    mixed_precision: bool | str, *, model: str = "", work: str | Callable[[], str] = precision.WHOLE_NETWORK
) -> str:
    """:func:`use_precision`, returning only the policy's name."""
    return use_precision(mixed_precision, model=model, work=work).policy


def cpu_threads() -> int:
    """The threads TensorFlow's ops use here: ``TF_NUM_INTRAOP_THREADS``, its own setting, or every core.

    Recorded with each run: on the CPU the last digits of a trained model
    depend on it (a reduction split over more threads sums in another order).
    """
    configured = int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0) or tf.config.threading.get_intra_op_parallelism_threads()
    return configured or os.cpu_count() or 1


def clear_session() -> None:
    """``keras.backend.clear_session()`` that keeps the global dtype policy, which Keras 3 resets to float32 with the rest of its state.

    For loops that free each model before the next and must build every one at
    the precision chosen before the loop (the Performance page's measurements).
    """
    policy = keras.mixed_precision.global_policy()
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)


def work_of(build: Callable[[], keras.Model]) -> Callable[[], str]:
    """A function telling what training ``build``'s model mostly computes: its frozen base's forward pass, or every layer.

    A model with a frozen base (:func:`xrayutils.caching.split_frozen`) spends
    its time running the base forward, once per image and view with feature
    caching and every epoch without; else the whole network trains.  Telling
    needs the model built (in float32, then dropped), so it is called only when
    the precision depends on it, and once per ``build`` (every seed of a model shares it).
    """
    def work() -> str:
        if build not in _WORK:
            keras.mixed_precision.set_global_policy("float32")
            frozen = caching.split_frozen(build()) is not None
            keras.backend.clear_session()
            _WORK[build] = precision.FROZEN_FORWARD if frozen else precision.WHOLE_NETWORK
        return _WORK[build]

    return work


#: :func:`work_of`'s answers by model builder, kept while the builder lives.
_WORK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def speed_note(history: dict[str, Any]) -> str:
    """One sentence for a chapter's text: how the frozen base was run, and at which precision.

    Caching with few augmented views changes the protocol slightly (each image in
    ``views`` versions rather than a fresh one each epoch), so the reader is told.
    """
    cache = history.get("cache")
    if cache is None:
        how = "without feature caching: every epoch ran every image through the whole model"
    elif history.get("augmented"):
        how = (
            f"with feature caching: the frozen base ran once on each of {cache['views']} augmented views of every training image "
            f"({cache['encode_seconds']:.0f} s), and each epoch trained the head on one view per image drawn at random, "
            "where the published protocol drew a fresh augmentation every epoch"
        )
    else:
        how = f"with feature caching: the frozen base ran once per image ({cache['encode_seconds']:.0f} s) and only the head trained"
    xla = "on (so TensorFlow's ops were not made deterministic: a rerun differs slightly)" if history.get("jit_compile") else "off"
    reason = f" ({history['precision_reason']})" if history.get("precision_reason") else ""
    return f"{how}; precision {history.get('precision', 'float32')}{reason}, XLA {xla}"


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


def loss_for(num_classes: int) -> str:
    """Binary cross-entropy for one sigmoid unit, categorical cross-entropy for a softmax."""
    return "binary_crossentropy" if num_classes == 2 else "categorical_crossentropy"


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
    batches only (:func:`augmented`), so the saved model is the plain one and
    predicts on unaltered images: ``augmentation(seed)``'s layers where a
    chapter writes them on its page, else the study's published settings
    (:func:`augmentation_for`).

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


def model_filename(architecture: str, image_size: int, dataset: str, task: str) -> str:
    """Saved models are named by architecture, resolution and training data, e.g. ``vgg16-res224-covid-xray-two.keras``."""
    return f"{architecture.lower()}-res{image_size}-{dataset}-{task}.keras"


def save_model(model: keras.Model, path: Path, *, classes: list[str], history: dict, provenance: dict) -> Path:
    """Save ``model`` and a JSON sidecar (classes, image size, history, provenance), both atomically.

    A model saved earlier at ``path`` by a run with a different provenance is kept
    beside it (``<stem>.previous-<time>.keras`` and ``.json``), never overwritten.
    """
    return place_model(path, model.save, classes=classes, image_size=list(model.input_shape[1:3]), history=history,
                       provenance=provenance)


def place_model(
    path: Path, write: Callable[[Path], Any], *, classes: list[str], image_size: list[int], history: dict, provenance: dict
) -> Path:
    """:func:`save_model`'s file handling, for a model that ``write`` puts in the file it is given (``model.save``, or a worker's bytes)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"a model file must end in .keras, got {path.name}")
    sidecar = {"classes": list(classes), "image_size": list(image_size), "history": history}
    kept = results.save(path.with_suffix(".json"), sidecar, provenance)
    if kept is not None and path.exists():
        path.replace(kept.with_suffix(".keras"))
    partial = path.with_name(f"{path.stem}.partial.keras")
    write(partial)
    partial.replace(path)
    return path


@dataclass
class ModelRun:
    """What training and testing one model left: its history, test probabilities and file, or its error.

    From :func:`train_models`, a model trained over several seeds is one run:
    ``by_seed`` holds each seed's own run, ``probabilities`` are their mean (the
    seed ensemble), and ``model``, ``history`` and ``path`` are the first seed's,
    the one model that is saved.
    """

    name: str
    model: keras.Model | None = None
    history: dict[str, Any] | None = None
    probabilities: np.ndarray | None = None
    seconds_per_image: float | None = None
    path: Path | None = None
    weight_counts: dict[str, int] | None = None
    error: str | None = None
    predictions_file: str | None = None
    by_seed: dict[int, ModelRun] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def seeds(self) -> list[int]:
        return list(self.by_seed)

    @property
    def fit_seconds(self) -> float:
        """Training time over every seed."""
        runs = list(self.by_seed.values()) or [self]
        return round(sum(run.history["fit_seconds"] for run in runs), 1)

    def save_predictions(self, test: pd.DataFrame, classes: list[str], folder: Path) -> Path:
        """Write the per-image test results (:func:`~xrayutils.evaluate.predictions_frame`) beside the model.

        With several seeds these are the seed ensemble's.  Chapter 04 and the
        summary read them back through the results file, which names the file.
        """
        self.predictions_file = results.predictions_filename(self.name)
        path = Path(folder) / self.predictions_file
        results.write_atomic(path, evaluate.predictions_frame(test, self.probabilities, classes).to_csv(index=False))
        return path

    @property
    def seed_probabilities(self) -> dict[int, np.ndarray]:
        """Each training seed's own test probabilities (``probabilities`` is their mean)."""
        return {seed: run.probabilities for seed, run in self.by_seed.items()}

    def seed_table(self, y_true: np.ndarray, classes: list[str]) -> pd.DataFrame:
        """Each seed's test metrics (:func:`~xrayutils.evaluate.point_metrics`), one row per seed."""
        return evaluate.seed_metrics(y_true, self.seed_probabilities, classes=classes)

    def record(self, metrics: dict[str, Any] | None, weights: models.Weights, seeds: pd.DataFrame | None = None) -> dict[str, Any]:
        """This model's entry in its chapter's results file: metrics, history, size, times and weights, or its error.

        ``metrics`` score ``probabilities`` (the seed ensemble); ``seeds``
        (:meth:`seed_table`) adds each seed's metrics and their spread.
        """
        if not self.ok:
            return {"error": self.error, "weights": weights.description, "pretrained": weights.pretrained}
        entry = {
            "metrics": metrics,
            "history": self.history,
            "weight_counts": self.weight_counts,
            "fit_seconds": self.fit_seconds,
            "predict_seconds_per_image": self.seconds_per_image,
            "model_file": self.path.name,
            "model_seed": self.seeds[0] if self.seeds else None,
            "predictions_file": self.predictions_file,
            "precision": f"{self.history['precision']} ({self.history.get('precision_reason', 'as set')})",
            "weights": weights.description,
            "pretrained": weights.pretrained,
        }
        if seeds is not None:
            entry["seeds"] = {
                str(seed): {**{k: None if pd.isna(v) else v for k, v in row.items()},  # no NaN in the JSON file
                            "best_epoch": self.by_seed[seed].history["best_epoch"],
                            "fit_seconds": self.by_seed[seed].history["fit_seconds"]}
                for seed, row in seeds.to_dict("index").items()
            }
            entry["seed_spread"] = evaluate.seed_spread(seeds)
        return entry

    def status(self) -> str:
        """One line for the page: the seeds, the kept epochs, the time and how it trained, or the error."""
        if not self.ok:
            return f"{self.name}: FAILED: {self.error}"
        runs = self.by_seed or {None: self}
        epochs = "/".join(str(run.history["best_epoch"]) for run in runs.values())
        seeds = f"{len(runs)} seeds, " if len(runs) > 1 else ""
        return f"{self.name}: {seeds}kept epoch {epochs}, {self.fit_seconds:.0f} s, {speed_note(self.history)}"


def over_seeds(name: str, runs: dict[int, ModelRun]) -> ModelRun:
    """One model's runs, one per training seed, as one run: the seed ensemble (see :class:`ModelRun`).

    A seed that failed fails the model, its error naming the seed: a crash is
    never averaged away.
    """
    failed = [f"seed {seed}: {run.error}" for seed, run in runs.items() if not run.ok]
    if failed:
        return ModelRun(name, error="; ".join(failed), by_seed=runs)
    first = next(iter(runs.values()))
    ensemble = np.mean([run.probabilities for run in runs.values()], axis=0)
    return dataclasses.replace(first, name=name, probabilities=ensemble, by_seed=runs)


def train_and_test(
    name: str,
    build: Callable[[], keras.Model],
    frames: dict[str, pd.DataFrame],
    protocol: TrainingProtocol,
    *,
    path: Path | None,
    classes: list[str],
    provenance: dict[str, Any],
    keep_model: bool = True,
    architecture: str | None = None,
    fit_model: FitModel | None = None,
    augmentation: Callable[[int], keras.Layer] | None = None,
    mirrored: bool = False,
) -> ModelRun:
    """Seed, build, :func:`fit`, predict the test split and :func:`save_model`; an error is returned, not raised.

    ``frames`` are :func:`xrayutils.pipeline.split_frames`; ``protocol.seed`` is
    this run's training seed (:meth:`~xrayutils.protocol.TrainingProtocol.for_seed`).
    Each run is seeded afresh and gets fresh datasets (a reused dataset would
    continue its shuffle order), so its numbers do not depend on which models
    ran before it, and a failing model leaves the others' results intact.  With
    ``keep_model=False`` the model is dropped once saved and Keras' state is
    cleared, so that many models can run one after another in one process;
    ``path=None`` saves nothing.  Feature caching is skipped, with a message,
    for a model without a frozen base.  The model is built and trained in the
    :func:`distribution` scope (``mirrored``: one batch over every GPU, with
    :func:`for_replicas`' changes recorded in the history as ``replicated``),
    at the precision :func:`choose_precision` picks
    for its ``architecture`` (``name`` unless given) and work, recorded with the
    reason in its history, with the protocol's class weights and batch-normalisation
    momentum.  ``fit_model`` and ``augmentation`` are the chapter's own (:func:`fit`).
    """
    try:
        chosen = choose_precision(protocol.mixed_precision, model=architecture or name, work=work_of(build))
        strategy = distribution(mirrored)
        protocol, chosen, replicated = for_replicas(protocol, chosen, strategy.num_replicas_in_sync,
                                                    train_images=len(frames["train"]), validation_images=len(frames["validation"]))
        if replicated and protocol.seed == protocol.training_seeds[0]:
            print(f"{name} on {strategy.num_replicas_in_sync} mirrored devices: {replicated}")
        keras.mixed_precision.set_global_policy(chosen.policy)
        set_seed(protocol.seed, protocol.jit_compile)  # after choosing, which may have built a model
        with strategy.scope():
            model = build()
            if protocol.batchnorm_momentum is not None:
                models.set_batchnorm_momentum(model, protocol.batchnorm_momentum)
            cache = protocol.cache_features and caching.split_frozen(model) is not None
            if protocol.cache_features and not cache and protocol.seed == protocol.training_seeds[0]:  # once per model, not per seed
                print(f"{name}: no frozen base, so no feature caching: the whole model trains on images")
            protocol = dataclasses.replace(protocol, cache_features=cache)
            splits = pipeline.make_datasets(
                frames, image_size=protocol.image_size, batch_size=protocol.batch_size, num_classes=len(classes),
                seed=protocol.seed, shuffle_train=not cache,
            )
            class_weight = protocol.class_weights(frames["train"]["label"].to_numpy(), len(classes))
            label = run_label(name, protocol.seed)
            progress.report(f"{label}: {'encoding the training images' if cache else 'starting'}")
            shared = (protocol.image_size, data_key(frames))
            history = fit(model, splits["train"], splits["validation"], protocol, class_weight=class_weight,
                          callbacks=[EpochProgress(label, protocol.num_epochs)], verbose=0,  # the page: one line per model
                          fit_model=fit_model, augmentation=augmentation, shared=shared)
            history["precision_reason"] = chosen.reason
            if replicated:
                history["replicated"] = replicated
            history["threads"] = cpu_threads()
            history["layers"] = models.describe(model)
        replicas = strategy.num_replicas_in_sync
        if replicas > 1:  # every test image scored: the last batch filled up for the replicas, the fillers' answers dropped
            probabilities, seconds_per_image = evaluate.predict_proba(model, filled(splits["test"], replicas, protocol.batch_size))
            probabilities = probabilities[:len(frames["test"])]
        elif cache and not history["augmented"]:  # the frozen base's test encodings, shared between seeds like the training ones
            probabilities, seconds_per_image = predict_cached(model, splits["test"], key=(shared, "test"))
        else:
            probabilities, seconds_per_image = evaluate.predict_proba(model, splits["test"])
        check_finite(model, history, probabilities)
        if path is not None:
            save_model(model, path, classes=classes, history=history, provenance=provenance)
        weight_counts = dict(zip(("total", "trainable"), models.count_parameters(model)))
    except Exception as error:  # noqa: BLE001 - reported in the model's row; the other models go on
        traceback.print_exc()
        keras.backend.clear_session()
        return ModelRun(name, error=f"{type(error).__name__}: {error}")
    if not keep_model:
        del model
        model = None
        keras.backend.clear_session()
    return ModelRun(name, model, history, probabilities, seconds_per_image, None if path is None else Path(path), weight_counts)


def filled(batches: tf.data.Dataset, replicas: int, batch_size: int) -> tf.data.Dataset:
    """``batches`` rebatched to ``batch_size`` (a multiple of ``replicas``), the last one filled up with copies of the first image.

    A mirrored model cannot predict a batch that does not divide over its
    replicas (a replica left without an image fails); the caller drops the
    answers past its own number of images.
    """
    images = batches.unbatch()
    filler = images.take(1).repeat(replicas - 1)
    return images.concatenate(filler).batch(replicas, drop_remainder=True).rebatch(batch_size)


def data_key(frames: dict[str, pd.DataFrame]) -> str:
    """A short name for the images of every split, in order: runs on equal keys read the same images."""
    digest = hashlib.blake2b(digest_size=12)
    for split in sorted(frames):
        digest.update(f"{split}:{chr(10).join(map(str, frames[split]['path']))}".encode())
    return digest.hexdigest()


def predict_cached(model: keras.Model, images: tf.data.Dataset, *, key: Hashable) -> tuple[np.ndarray, float]:
    """:func:`xrayutils.evaluate.predict_proba` of a model with a frozen base, the base's output shared between runs.

    The seconds per image are the whole model's: the base's encoding (when it
    was computed) and the head's prediction.
    """
    encoder, head = caching.split_frozen(model)
    features, _, encode_seconds, _ = caching.encode_shared(encoder, images, key=key)
    probabilities, head_seconds = evaluate.predict_proba(head, tf.data.Dataset.from_tensor_slices(features[0]).batch(256))
    return probabilities, encode_seconds / max(len(probabilities), 1) + head_seconds


class NotFinite(ArithmeticError):
    """A run whose weights, losses or test probabilities hold NaN or infinity: it failed, whatever ``fit`` returned."""


def check_finite(model: keras.Model, history: dict[str, Any], probabilities: np.ndarray) -> None:
    """Raise :class:`NotFinite`, naming what, when a run's numbers are not finite.

    An overflow (a learning rate too high, half precision without loss scaling,
    an empty batch on a replica) leaves NaN weights or losses while Keras
    reports a finished ``fit``; saved and scored, such a model would be a row
    of metrics computed on NaN.  One NaN is enough: an epoch that diverged
    means the protocol did not train this model.
    """
    said = [f"{name} at epoch(s) {', '.join(str(i + 1) for i in np.flatnonzero(~np.isfinite(values)))}"
            for name in ("loss", "val_loss") if len(values := np.asarray(history.get(name, []), dtype=float))
            and not np.isfinite(values).all()]
    bad = [w.path for w in model.weights if not np.isfinite(keras.ops.convert_to_numpy(w)).all()]
    if bad:
        said.append(f"{len(bad)} weight tensor(s), the first {bad[0]}")
    unfinished = ~np.isfinite(np.asarray(probabilities, dtype=float))
    if unfinished.any():
        images = unfinished.any(axis=-1) if unfinished.ndim > 1 else unfinished
        said.append(f"the test probabilities of {int(images.sum())} image(s)")
    if said:
        raise NotFinite("not finite: " + "; ".join(said) + " (lower the learning rate, or train in float32)")


def run_label(name: str, seed: int) -> str:
    """How progress lines and the Ray engine name one run: ``"ResNet34, seed 2"``."""
    return f"{name}, seed {seed}"


@dataclass(frozen=True)
class Run:
    """One unit of a chapter's training: one model with one training seed, and where its model file goes.

    ``build`` makes the fresh model and ``fit_model`` trains it (:data:`FitModel`)
    on batches augmented by ``augmentation(seed)`` (:func:`fit`); all three may be
    defined on a chapter's page: cloudpickle carries them to Ray's workers.  ``protocol`` is this seed's
    (:meth:`~xrayutils.protocol.TrainingProtocol.for_seed`), ``path=None``
    saves nothing, and ``keep_model`` keeps the trained model in memory for the
    chapter.  An engine (:class:`LocalEngine`, :class:`xrayutils.cluster.RayEngine`)
    executes a chapter's runs with :func:`train_and_test`.
    """

    name: str
    build: Callable[[], keras.Model]
    protocol: TrainingProtocol
    path: Path | None = None
    keep_model: bool = False
    fit_model: FitModel | None = None
    augmentation: Callable[[int], keras.Layer] | None = None

    @property
    def seed(self) -> int:
        return self.protocol.seed

    @property
    def label(self) -> str:
        return run_label(self.name, self.seed)


@dataclass
class LocalEngine:
    """Runs a chapter's :class:`Run` s one after another in this process (a laptop, Colab, one GPU).

    ``mirrored``: each run spreads its batches over every GPU (:func:`distribution`).
    """

    mirrored: bool = False

    @property
    def description(self) -> str:
        return "local: one run after another in this kernel" + (", each over every GPU (mirrored)" if self.mirrored else "")

    def run(self, runs: list[Run], frames: dict[str, pd.DataFrame], *, classes: list[str],
            provenance: dict[str, Any]) -> Iterator[tuple[Run, ModelRun]]:
        """Yield each run with what it left (:func:`train_and_test`), in order."""
        for run in runs:
            yield run, train_and_test(run.name, run.build, frames, run.protocol, path=run.path, classes=classes,
                                      provenance=provenance, keep_model=run.keep_model, fit_model=run.fit_model,
                                      augmentation=run.augmentation, mirrored=self.mirrored)


def train_models(
    builders: dict[str, Callable[..., keras.Model]],
    protocol: TrainingProtocol,
    data: datasets.XrayDataset,
    frames: dict[str, pd.DataFrame],
    *,
    weights: dict[str, models.Weights],
    output_dir: Path,
    provenance: dict[str, Any],
    fit_model: FitModel | None = None,
    augmentation: Callable[[int], keras.Layer] | None = None,
    keep_models: bool = True,
    engine: LocalEngine | None = None,
) -> dict[str, ModelRun]:
    """Chapters 01-03: train and test each model once per training seed with ``fit_model``; save it and its predictions.

    ``builders`` maps each model's name to the function on the chapter's page
    that builds it, called as ``build(input_shape, num_classes)``, with
    ``weights=`` Keras' own choice where the model starts from a file or
    ImageNet (:func:`xrayutils.models.from_page`, which also runs its batch
    normalisation fused).  ``fit_model`` compiles and fits it, on batches
    augmented by ``augmentation(seed)`` where given (:func:`fit`).
    ``frames`` split ``data`` (:func:`load_split`).  Each model trains with
    every seed of ``protocol.training_seeds`` (:func:`over_seeds`), one
    :class:`Run` each, executed by ``engine`` (:class:`LocalEngine` unless
    given; :func:`xrayutils.cluster.engine` makes either); the first seed's
    model is saved, and kept in memory with ``keep_models``.  Prints one line
    per model (:meth:`ModelRun.status`) once its seeds are done.  A failed model
    is kept as such; only when every model failed is that an error.
    """
    todo: list[Run] = []
    seeds: dict[str, tuple[int, ...]] = {}
    names = list(builders)
    for name in names:
        own = protocol.for_model(name)
        build = functools.partial(models.from_page, builders[name], own.input_shape, len(data.classes), weights[name])
        path = Path(output_dir) / model_filename(name, own.image_size, data.name, data.task)
        seeds[name] = tuple(own.training_seeds)
        todo += [Run(name, build, own.for_seed(seed), path if i == 0 else None, keep_model=keep_models and i == 0,
                     fit_model=fit_model, augmentation=augmentation)
                 for i, seed in enumerate(seeds[name])]
    done: dict[str, dict[int, ModelRun]] = {name: {} for name in names}
    runs = {}
    for unit, result in (engine or LocalEngine()).run(todo, frames, classes=data.classes, provenance=provenance):
        done[unit.name][unit.seed] = result
        if len(done[unit.name]) == len(seeds[unit.name]):
            run = over_seeds(unit.name, {seed: done[unit.name][seed] for seed in seeds[unit.name]})
            if run.ok:
                run.save_predictions(frames["test"], data.classes, output_dir)
            print(run.status(), flush=True)
            runs[unit.name] = run
    runs = {name: runs[name] for name in names}  # the chapter's order, whatever order the runs finished in
    if not any(run.ok for run in runs.values()):
        raise RuntimeError("every model failed; see the errors above")
    return runs


def chapter_results(
    runs: dict[str, ModelRun],
    metrics: dict[str, dict[str, Any]],
    weights: dict[str, models.Weights],
    protocol: TrainingProtocol,
    classes: list[str],
    frames: dict[str, pd.DataFrame],
) -> dict[str, Any]:
    """What every modelling chapter's results file holds: the protocol, one entry per model, the classes and split sizes.

    A model's entry (:meth:`ModelRun.record`) holds its seed ensemble's ``metrics``
    and each seed's own under ``seeds``.
    """
    y_test = frames["test"]["label"].to_numpy()
    return {
        "protocol": protocol.to_dict(),
        "models": {name: run.record(metrics.get(name), weights[name], run.seed_table(y_test, classes) if run.ok else None)
                   for name, run in runs.items()},
        "classes": classes,
        "n": {split: len(frame) for split, frame in frames.items()},
    }


def runs_table(runs: dict[str, ModelRun]) -> pd.DataFrame:
    """One row per model: its size, the epoch kept, training and inference time, or why it failed."""
    rows = {}
    for name, run in runs.items():
        if not run.ok:
            rows[name] = {"status": f"FAILED: {run.error}"}
            continue
        rows[name] = {
            "parameters": f"{run.weight_counts['total']:,}",
            "trainable": f"{run.weight_counts['trainable']:,}",
            "seeds": len(run.by_seed) or 1,
            "epoch kept": "/".join(str(r.history["best_epoch"]) for r in (run.by_seed or {0: run}).values()),
            "training (s)": run.fit_seconds,
            "inference (ms/image)": round(1000 * run.seconds_per_image, 1),
            "status": "ok",
        }
    return pd.DataFrame(rows).T.fillna("")
