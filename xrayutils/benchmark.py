"""How fast the task-1 model (chapter 01: VGG16 frozen, batch 10) trains here, measured three ways.

1. **compute only**: training steps on random tensors already in memory, the
   machine's ceiling for this model (augmentation of each batch included),
   also as achieved GFLOP/s;
2. **the book's pipeline** as chapter 01 uses it (``tf.data`` decoding, caching,
   prefetch, augmentation on the training batches), without and with feature caching;
3. **the original style**: Keras' ``ImageDataGenerator.flow_from_directory`` with
   the published augmentation, batch 10, as the reproduced notebooks trained.

Every method is timed ``repeats`` times and the median is kept: timings on a
shared machine are noisy.  The published protocol's time (40 epochs with
validation) is extrapolated from the measured epoch times.  Used by
``benchmarks/task1_speed.py`` and the book's Performance page.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import statistics
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from keras import layers

from xrayutils import augmentations, caching, catalogue, chapters, devices, jobs, models, pipeline, predict, results, train
from xrayutils.protocol import TrainingProtocol

#: The published task-1 protocol (../shared/reference): the benchmark's defaults.
PROTOCOL = TrainingProtocol(study="class-challenge", image_size=224, batch_size=10, num_epochs=40, optimizer="adam",
                            learning_rate=0.0005, validation_fraction=0.2, seed=42, weights="none")


def train_step_flops(model: keras.Model) -> int:
    """Floating-point operations of one training step per image, counted from the conv and dense layers.

    Depthwise convolutions (and the depthwise part of separable ones, as in
    Xception and EfficientNet) cost one filter per input channel.  Multiply and
    add count as two.  A trainable layer costs its forward pass three times
    (forward, gradient of the input, gradient of the weights); a frozen one only
    its forward pass, because nothing before a frozen base trains, so no gradient
    flows through it.  Pooling, activations and the optimiser are left out.
    """
    total = 0
    for layer in caching.all_layers(model):
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D)):
            _, height, width, channels = layer.output.shape
            kh, kw = layer.kernel_size
            inputs = layer.input.shape[-1]
            if isinstance(layer, layers.Conv2D):
                forward = 2 * height * width * channels * kh * kw * inputs
            elif isinstance(layer, layers.DepthwiseConv2D):
                forward = 2 * height * width * channels * kh * kw
            else:  # a depthwise filter per input channel, then a 1x1 convolution to the outputs
                forward = 2 * height * width * inputs * (kh * kw + channels)
        elif isinstance(layer, layers.Dense):
            forward = 2 * layer.units * layer.input.shape[-1]
        else:
            continue
        total += forward * (3 if layer.trainable else 1)
    return int(total)


class _PhaseTimer(keras.callbacks.Callback):
    """Seconds of each epoch spent training and spent validating."""

    def __init__(self) -> None:
        super().__init__()
        self.train_seconds: list[float] = []
        self.validation_seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = time.perf_counter()
        self._validation = 0.0

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._test = time.perf_counter()

    def on_test_end(self, logs: dict | None = None) -> None:
        self._validation += time.perf_counter() - self._test

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.train_seconds.append(time.perf_counter() - self._epoch - self._validation)
        self.validation_seconds.append(self._validation)

    def steady(self) -> tuple[float, float]:
        """Median training and validation seconds per epoch, the first epoch (tracing, filling caches) left out when there are more."""
        kept = slice(1, None) if len(self.train_seconds) > 1 else slice(None)
        return statistics.median(self.train_seconds[kept]), statistics.median(self.validation_seconds[kept])


@dataclass
class Measurement:
    """One method's timings: seconds per training epoch and per validation pass (medians), and one-off setup seconds."""

    method: str
    train_images: int
    epoch_seconds: float
    validation_seconds: float
    setup_seconds: float = 0.0
    whole_model: bool = True  # every image goes through the whole model every epoch (not so with caching)

    @property
    def images_per_second(self) -> float:
        return self.train_images / self.epoch_seconds

    def protocol_images_per_second(self, epochs: int) -> float:
        """Training images per second over the whole protocol, setup and validation included."""
        return epochs * self.train_images / self.protocol_seconds(epochs)

    def protocol_seconds(self, epochs: int, train_images: int | None = None) -> float:
        """Time of ``epochs`` epochs with a validation pass each, plus the setup (feature caching).

        With ``train_images``, every part is scaled to that many training images
        (validation kept in proportion): times per image are what was measured.
        """
        scale = (train_images or self.train_images) / self.train_images
        return scale * (self.setup_seconds + epochs * (self.epoch_seconds + self.validation_seconds))


def _compile(model: keras.Model, protocol: TrainingProtocol) -> None:
    """Compile as ``protocol`` says; op determinism set as training sets it, since Keras silently drops XLA while it is on."""
    train.set_seed(protocol.seed, protocol.jit_compile)
    train.compile_model(model, num_classes=max(2, model.output_shape[-1]), optimizer=protocol.optimizer,
                        learning_rate=protocol.learning_rate, jit_compile=protocol.jit_compile)


def original_generator(*, augment: bool = True, **options: Any):
    """Keras' ``ImageDataGenerator``, with the published task-1 augmentation unless ``augment`` is off.

    ``options`` go to the generator too (e.g. ``validation_split``).  Keras 3 keeps
    ``ImageDataGenerator`` only as legacy code (``keras.src.legacy``), so it is
    imported from there; it needs SciPy for its transforms.
    """
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    if not augment:
        return ImageDataGenerator(**options)
    return ImageDataGenerator(
        rotation_range=50, width_shift_range=0.2, height_shift_range=0.2, shear_range=0.25, zoom_range=0.1,
        channel_shift_range=20, horizontal_flip=True, vertical_flip=True, fill_mode="constant", **options,
    )


def _train_book(build, frames: dict[str, pd.DataFrame], protocol: TrainingProtocol,
                callbacks: list[keras.callbacks.Callback] | None = None):
    """Chapter 01's training (:func:`xrayutils.train.fit`): returns the model, its history and the datasets."""
    train.set_seed(protocol.seed, protocol.jit_compile)
    model = build()
    ds = pipeline.make_datasets(frames, image_size=protocol.image_size, batch_size=protocol.batch_size,
                                num_classes=2, seed=protocol.seed, shuffle_train=not protocol.cache_features)
    history = train.fit(model, ds["train"], ds["validation"], protocol, callbacks=callbacks, verbose=0)
    return model, history, ds


def compute_only(build, protocol: TrainingProtocol, *, steps: int) -> float:
    """Seconds per training step on one random batch held in memory (after a warm-up epoch), augmentation included if ``protocol.augment``.

    Any model of ``protocol``'s study: ``benchmarks/whole_network_speed.py`` times chapter 03's this way.
    """
    size, batch = protocol.image_size, protocol.batch_size
    images = tf.random.uniform((batch, size, size, 3), 0, 255, seed=0)
    layer = augmentations.augmentation_for(dataclasses.replace(protocol, seed=0))
    return timed_steps(build(), images, protocol, steps=steps, augment=layer)


def timed_steps(trainer: keras.Model, inputs: tf.Tensor, protocol: TrainingProtocol, *, steps: int,
                augment: keras.Layer | None = None, warmup_steps: int = 2) -> float:
    """Seconds per training step of ``trainer`` compiled as ``protocol`` says, on the batch ``inputs`` repeated (tracing left out).

    ``augment`` runs on each batch as in training (:func:`xrayutils.augmentations.augmented`).
    Also times a head alone on cached features (:mod:`xrayutils.plan`).
    """
    _compile(trainer, protocol)
    classes = trainer.output_shape[-1]
    drawn = tf.random.uniform((len(inputs),), 0, max(2, classes), dtype=tf.int32, seed=1)
    labels = tf.one_hot(drawn, classes) if classes > 1 else tf.cast(drawn[:, None], tf.float32)
    data = tf.data.Dataset.from_tensors((inputs, labels)).repeat()
    if augment is not None:
        data = augmentations.augmented(data, augment)
    trainer.fit(data, steps_per_epoch=warmup_steps, epochs=1, verbose=0, shuffle=False)  # trace and warm up
    timer = _PhaseTimer()
    trainer.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
    return timer.train_seconds[0] / steps


STEP_TIMES = results.MEASUREMENTS / "coronahack_step_times.json"


def stored_step_times(protocol: TrainingProtocol, path: Path = STEP_TIMES) -> dict[str, dict[str, Any]]:
    """The training-step times ``benchmarks/whole_network_speed.py`` stored at ``path`` for ``protocol``'s image and batch size.

    ``{model: {"s/step", "device", "commit"}}``, empty when nothing matching was
    stored.  Timing the models a profile leaves out takes minutes (each must be
    built and traced), so a short build can show a stored measurement instead,
    labelled with the machine it was taken on.
    """
    if not Path(path).is_file():
        return {}
    stored = results.read_json(path)
    wanted = (protocol.image_size, protocol.batch_size, protocol.augment, "false")
    return {row["model"]: {"s/step": row["s/step"], "device": stored["device"], "commit": stored.get("commit", "unknown")}
            for row in stored["rows"] if (row["image size"], row["batch"], row["augment"], row["XLA asked"]) == wanted}


def epoch_times(
    names: list[str],
    protocol: TrainingProtocol,
    runs: dict[str, jobs.ModelRun],
    *,
    train_images: int,
    steps: int = 2,
    stored: dict[str, dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Seconds per training epoch of each of chapter 03's ``names`` here, and what ``protocol`` (epochs x seeds) costs with it.

    A model in ``runs`` that trained gives its measured epochs (median, validation
    included).  Any other is timed :func:`compute_only` for ``steps`` steps from
    random weights and scaled to ``train_images``: a lower bound, without
    decoding or validation.  With ``stored`` (from :func:`stored_step_times`) the
    others take their stored step time instead, and one not stored is left out.
    Chapter 03 shows it for the models a profile leaves out, so that what a full
    run would cost is measured, not guessed.
    """
    rows = []
    for name in names:
        run, own = runs.get(name), protocol.for_model(name)
        steps_per_epoch = np.ceil(train_images / own.batch_size)
        once = 0.0  # seconds paid once for all epochs and seeds: a frozen base's shared encoding
        if run is not None and run.ok:
            seconds, how = statistics.median(run.history["seconds"]), "measured (median epoch, validation included)"
            cache = run.history.get("cache")
            if cache is not None and not run.history.get("augmented"):
                once = cache["encode_seconds"]
                how = f"measured: the frozen base's encoding once ({once:.0f} s, shared by the seeds), then the head's epochs"
        elif stored is not None:
            if name not in stored:
                continue
            seconds = stored[name]["s/step"] * steps_per_epoch
            how = f"stored: in-memory steps (lower bound) on {stored[name]['device']}, commit {stored[name]['commit']}"
        else:
            keras.backend.clear_session()
            build = partial(models.build, own.study, name, own.input_shape, 2, models.resolve_weights("none"))
            seconds = compute_only(build, own, steps=steps) * steps_per_epoch
            how = f"estimated from {steps} in-memory steps (lower bound)"
        rows.append({"model": name, "trained here": run is not None and run.ok, "s per epoch": round(seconds, 1), "how": how,
                     f"{protocol.num_epochs} epochs x {len(protocol.training_seeds)} seed(s) (min)":
                     round((once + seconds * own.num_epochs * len(own.training_seeds)) / 60, 1)})
    keras.backend.clear_session()
    return pd.DataFrame(rows).set_index("model")


def model_costs(
    model_names: list[str], protocol: TrainingProtocol, runs: dict[str, jobs.ModelRun], *, train_images: int, left_out: str
) -> pd.DataFrame:
    """Chapter 03's cost table: :func:`epoch_times` of the models run, and of the nine models' others as ``left_out`` says.

    ``left_out`` is the chapter's ``left_out_costs``: ``measure`` (time a few
    steps of each here), ``stored`` (:func:`stored_step_times`) or ``none``.
    """
    if left_out not in ("measure", "stored", "none"):
        raise ValueError(f"left_out_costs must be measure, stored or none, got {left_out!r}")
    names = model_names if left_out == "none" else list(catalogue.published("coronahack"))
    stored = stored_step_times(protocol) if left_out == "stored" else None
    return epoch_times(names, protocol, runs, train_images=train_images, stored=stored)


def book_pipeline(build, frames: dict[str, pd.DataFrame], protocol: TrainingProtocol) -> Measurement:
    """Chapter 01's training under ``protocol`` (a few epochs), timed per phase; the caching pass is the setup."""
    timer = _PhaseTimer()
    _, history, _ = _train_book(build, frames, protocol, callbacks=[timer])
    cached = protocol.cache_features
    return Measurement(
        f"book pipeline, {'feature caching (' + str(protocol.augmented_views) + ' views)' if cached else 'no caching'}",
        len(frames["train"]), *timer.steady(), history["cache"]["encode_seconds"] if cached else 0.0, whole_model=not cached,
    )


def original_style(build, images: pd.DataFrame, protocol: TrainingProtocol) -> Measurement:
    """The reproduced notebook's loop: :func:`original_generator` with a 20% validation split, batch 10.

    ``images`` (``path`` and ``class_name`` columns) are the training images, read
    with ``flow_from_dataframe`` (the published notebook read the whole folder with
    ``flow_from_directory``, which :func:`full_protocol` does), so that a timing
    on fewer images uses the same images as the book's pipeline.
    """
    generator = original_generator(validation_split=protocol.validation_fraction)
    flow = dict(dataframe=images, x_col="path", y_col="class_name", target_size=(protocol.image_size,) * 2,
                batch_size=protocol.batch_size, class_mode="binary", seed=protocol.seed)
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints "Found N validated image filenames": a log line, not a result
        training = generator.flow_from_dataframe(subset="training", shuffle=True, **flow)
        validation = generator.flow_from_dataframe(subset="validation", shuffle=False, **flow)
    train.set_seed(protocol.seed)
    model = build()
    _compile(model, protocol)
    timer = _PhaseTimer()
    model.fit(training, validation_data=validation if validation.samples else None, epochs=protocol.num_epochs, verbose=0,
              callbacks=[timer])
    return Measurement("original style: ImageDataGenerator", training.samples, *timer.steady())


def run(data_dir: str | Path | None = None, *, image_size: int = 224, timed_epochs: int = 2, repeats: int = 3,
        augmented_views: int = 3, compute_steps: int = 20, max_images_per_class: int | None = None, seed: int = 42,
        weights: models.Weights | None = None) -> dict[str, Any]:
    """Measure the three methods ``repeats`` times each (medians kept) and return the table and the ratios.

    ``timed_epochs`` per timed fit (the first is left out of the medians); the
    published protocol's 40 epochs on every training image are extrapolated from
    them.  ``max_images_per_class`` times on fewer images, to keep the benchmark short.
    """
    from xrayutils import datasets

    weights = weights or models.resolve_weights("none")
    published = dataclasses.replace(PROTOCOL, image_size=image_size, seed=seed)
    timed = dataclasses.replace(published, num_epochs=timed_epochs)
    full = datasets.load("covid-xray", task="two", data_dir=data_dir, check_images=False, seed=seed)
    n_protocol = len(pipeline.split_frames(full, validation_fraction=published.validation_fraction, seed=seed)["train"])
    data = datasets.load("covid-xray", task="two", data_dir=data_dir, max_images_per_class=max_images_per_class, seed=seed)
    frames = pipeline.split_frames(data, validation_fraction=published.validation_fraction, seed=seed)

    def build() -> keras.Model:
        return models.build("class-challenge", "VGG16", published.input_shape, 2, weights)

    n_train, epochs_published = len(frames["train"]), published.num_epochs
    step = statistics.median(compute_only(build, timed, steps=compute_steps) for _ in range(repeats))
    compute = Measurement("compute only (random tensors in memory)", n_train, step * np.ceil(n_train / timed.batch_size), 0.0)
    trials = {
        "plain": lambda: book_pipeline(build, frames, timed),
        "cached": lambda: book_pipeline(build, frames, dataclasses.replace(timed, cache_features=True, augmented_views=augmented_views)),
        "original": lambda: original_style(build, data.subset("train"), timed),
    }
    measured = {}
    for name, measure in trials.items():
        repeated = [measure() for _ in range(repeats)]
        devices.clear_session()  # the next method is built at this one's precision
        first = repeated[0]
        measured[name] = Measurement(
            first.method, first.train_images, statistics.median(t.epoch_seconds for t in repeated),
            statistics.median(t.validation_seconds for t in repeated), statistics.median(t.setup_seconds for t in repeated),
            first.whole_model,
        )
    plain, cached, original = measured["plain"], measured["cached"], measured["original"]
    flops = train_step_flops(build())
    rows = []
    for m in (compute, plain, cached, original):
        protocol_known = m is not compute  # compute only has no validation pass to extrapolate with
        rows.append({
            "method": m.method,
            "images/s per epoch": m.images_per_second,
            "GFLOP/s": m.images_per_second * flops / 1e9 if m.whole_model else np.nan,
            "setup s": m.setup_seconds,
            f"{epochs_published}-epoch protocol, s": m.protocol_seconds(epochs_published, n_protocol) if protocol_known else np.nan,
            "images/s over the protocol": m.protocol_images_per_second(epochs_published) if protocol_known else np.nan,
        })
    return {
        "table": pd.DataFrame(rows),
        "train_step_gflop_per_image": flops / 1e9,
        "ratios": {
            "pipeline / compute only": plain.images_per_second / compute.images_per_second,
            "pipeline / original style": plain.images_per_second / original.images_per_second,
            "original style / cached pipeline (protocol time)":
                original.protocol_seconds(epochs_published) / cached.protocol_seconds(epochs_published),
        },
        "settings": {"image_size": image_size, "batch_size": timed.batch_size, "timed_epochs": timed_epochs, "repeats": repeats,
                     "augmented_views": augmented_views, "compute_steps": compute_steps, "train_images": n_train,
                     "protocol_train_images": n_protocol,
                     "published_epochs": epochs_published,
                     "validation_images": len(frames["validation"]), "weights": weights.description},
    }


#: The three ways :func:`full_protocol` trains the task-1 protocol.
STYLES = ("book: feature caching", "book: no caching", "original: ImageDataGenerator")
#: A fourth way: feature caching under Keras' ``mixed_bfloat16`` policy, what ``mixed_precision: auto`` runs on a CPU with native bfloat16.
CACHED_BFLOAT16 = "book: feature caching, bfloat16"
#: The book's styles: whether each caches the frozen base's features, and the Keras policy it trains under.
_BOOK_STYLES = {STYLES[0]: (True, "float32"), STYLES[1]: (False, "float32"), CACHED_BFLOAT16: (True, "mixed_bfloat16")}


def full_protocol(data_dir: str | Path | None = None, *, image_size: int = 224, augmented_views: int = 3, seeds: tuple[int, ...] = (42,),
                  num_epochs: int = PROTOCOL.num_epochs, bootstrap_resamples: int = 1000,
                  weights: models.Weights | None = None, styles: tuple[str, ...] = STYLES) -> pd.DataFrame:
    """Train the task-1 model through the whole published protocol in each of ``styles`` (:data:`STYLES`), once per seed.

    Returns one row per seed and style: wall time end to end (data to test
    predictions), test accuracy with its 95% bootstrap interval and ROC AUC.  The
    book's split is drawn once (seed 42, as chapter 01); the original style splits
    as the published notebook did (``validation_split`` on the train folder); both
    score the same test folder.  A seed draws the model's initial weights (the
    whole VGG16 when it starts from random weights), the augmentation and the
    order, the same for every style, so that styles can be compared seed by seed
    (:func:`seed_comparison`).  Each run prints one line as it ends: the whole
    takes hours on a CPU.
    """
    from xrayutils import datasets, evaluate

    weights = weights or models.resolve_weights("none")
    protocol = dataclasses.replace(PROTOCOL, image_size=image_size, num_epochs=num_epochs)
    data = datasets.load("covid-xray", task="two", data_dir=data_dir, seed=protocol.seed)
    frames = pipeline.split_frames(data, validation_fraction=protocol.validation_fraction, seed=protocol.seed)
    y_test = frames["test"]["label"].to_numpy()

    def build() -> keras.Model:
        return models.build("class-challenge", "VGG16", protocol.input_shape, 2, weights)

    def scored(style: str, seed: int, y_true: np.ndarray, proba: np.ndarray, started: float) -> dict[str, Any]:
        m = evaluate.bootstrap_metrics(y_true, proba, classes=data.classes, n_resamples=bootstrap_resamples, seed=seed)
        keras.backend.clear_session()
        row = {"seed": seed, "style": style, "seconds": round(time.perf_counter() - started, 1), "test images": len(y_true),
               "accuracy": m["accuracy"]["value"], "accuracy low": m["accuracy"]["low"], "accuracy high": m["accuracy"]["high"],
               "roc_auc": m["roc_auc"]["value"]}
        print(f"seed {seed}, {style}: accuracy {row['accuracy']:.3f}, ROC AUC {row['roc_auc']:.3f}, {row['seconds']:.0f} s", flush=True)
        return row

    rows = []
    for seed in seeds:
        for style in styles:
            started = time.perf_counter()
            if style == STYLES[2]:
                test, proba = _train_original(build, data.root, dataclasses.replace(protocol, seed=seed))
                rows.append(scored(style, seed, test.classes, proba, started))
                continue
            cache, policy = _BOOK_STYLES[style]
            keras.mixed_precision.set_global_policy(policy)
            try:
                model, _, ds = _train_book(build, frames, dataclasses.replace(protocol, seed=seed, cache_features=cache,
                                                                              augmented_views=augmented_views))
                proba = evaluate.predict_proba(model, ds["test"])[0]
            finally:
                keras.mixed_precision.set_global_policy("float32")
            rows.append(scored(style, seed, y_test, proba, started))
    return pd.DataFrame(rows)


def _train_original(build, root: Path, protocol: TrainingProtocol):
    """The published notebook's training (``flow_from_directory``, validation split of ``two/train``); test generator, probabilities."""
    generator = original_generator(validation_split=protocol.validation_fraction)
    flow = dict(target_size=(protocol.image_size,) * 2, batch_size=protocol.batch_size, class_mode="binary", seed=protocol.seed)
    train.set_seed(protocol.seed)
    model = build()
    _compile(model, protocol)
    best = train._BestWeights(model)  # the book keeps the lowest-validation-loss epoch: so does this run, for a fair test score
    quiet = partial(contextlib.redirect_stdout, io.StringIO())  # Keras' "Found N images belonging to 2 classes" stays off the page
    with quiet():
        validation = generator.flow_from_directory(str(root / "two" / "train"), subset="validation", shuffle=False, **flow)
        training = generator.flow_from_directory(str(root / "two" / "train"), subset="training", shuffle=True, **flow)
    model.fit(training, validation_data=validation if validation.samples else None, epochs=protocol.num_epochs, verbose=0,
              callbacks=[best])
    with quiet():
        test = original_generator(augment=False).flow_from_directory(str(root / "two" / "test"), shuffle=False, **flow)
    return test, model.predict(test, verbose=0)


def seed_comparison(table: pd.DataFrame, *, against: str = STYLES[2], called: str = "original") -> pd.DataFrame:
    """Per style of a :func:`full_protocol` table: accuracy and ROC AUC over seeds (mean ± sd), and the difference to style ``against``.

    The difference is taken seed by seed (same initial weights), with a 95%
    t-interval over seeds: an interval that holds 0 means the style's gap to
    ``against`` (the original style, or float32 caching for bfloat16's) is within
    seed noise.  Its column is named ``"<metric> minus <called> [95% CI]"``.
    """
    from scipy import stats

    from xrayutils import evaluate

    original = table[table["style"] == against].set_index("seed")
    rows = []
    for style, runs in table.groupby("style", sort=False):
        runs = runs.set_index("seed")
        row = {"style": style, "seeds": len(runs), "minutes (mean)": round(runs["seconds"].mean() / 60, 1)}
        for metric in ("accuracy", "roc_auc"):
            row[metric] = evaluate.spread_text(evaluate.seed_spread(runs[[metric]])[metric])
            if style != against:
                diff = (runs[metric] - original[metric].reindex(runs.index)).dropna()
                if len(diff) > 1:
                    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
                    mean = diff.mean()
                    ci = {"value": mean, "low": mean - half, "high": mean + half}
                    row[f"{metric} minus {called} [95% CI]"] = evaluate.signed_interval(ci)
                elif len(diff):
                    row[f"{metric} minus {called} [95% CI]"] = f"{evaluate.signed(diff.mean())} (1 seed)"
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


#: Where ``benchmarks/task1_speed.py --full-protocol --seeds N --output`` leaves the seed table the Performance page shows.
SEED_RESULTS = results.MEASUREMENTS / "task1_seeds.json"
#: The same with ``--bfloat16``: feature caching in bfloat16 against float32, seed by seed, on a CPU with native bfloat16.
BFLOAT16_SEED_RESULTS = SEED_RESULTS.with_name("task1_bfloat16_seeds.json")


def stored_seed_comparison(path: Path = SEED_RESULTS) -> dict[str, Any] | None:
    """The seed table ``task1_speed.py --full-protocol --seeds N`` stored at ``path``: runs, comparison, verdict and where it ran.

    ``None`` when it was never run there.  The Performance page shows it as
    measured, with its device and commit, because training the protocol three
    ways over several seeds takes hours on a CPU, far beyond a book build.
    """
    if not Path(path).is_file():
        return None
    stored = results.read_json(path)
    runs, comparison = pd.DataFrame(stored["full_protocol"]), pd.DataFrame(stored["seed_comparison"])
    settings = stored["full_protocol_settings"]
    about = (f"{settings['seeds']} seeds, {settings['image_size']} px, {settings['num_epochs']} epochs, "
             f"{settings['augmented_views']} cached views; measured on {stored['device']}, commit {stored['commit']}")
    return {"runs": runs, "comparison": comparison, "verdict": gap_verdict(comparison, called=stored.get("called", "original")),
            "about": about}


def gap_verdict(comparison: pd.DataFrame, metric: str = "accuracy", *, called: str = "original") -> str:
    """One sentence per style of a :func:`seed_comparison` table: within seed noise of the ``called`` style, or not."""
    column = f"{metric} minus {called} [95% CI]"
    sentences = []
    for row in comparison.to_dict("records"):
        text = row.get(column, "")
        if not text:
            continue
        if "[" not in text:
            sentences.append(f"{row['style']}: {text} {metric} against the {called} style, one seed only, so no verdict.")
            continue
        low, high = (float(v) for v in text[text.index("[") + 1:-1].split(","))
        if low <= 0 <= high:  # no difference detected; that is not equivalence, which would need a declared margin
            verdict = (f"shows no difference from the {called} style's {metric} that these seeds can detect "
                       f"(difference {text}; an interval this wide does not show the two equal)")
        else:
            verdict = f"differs from the {called} style's {metric} beyond seed noise (difference {text})"
        sentences.append(f"{row['style']} {verdict}.")
    return " ".join(sentences)


def chapter01_beside(output_root: str | Path, table: pd.DataFrame) -> str:
    """A sentence setting chapter 01's real training time in this build beside the extrapolated original style.

    Only when chapter 01 ran the published protocol (224 px, 40 epochs) with the
    benchmark's image size; otherwise says why it cannot be compared.
    """
    try:
        saved = results.load(output_root, chapters.TASK1)
    except FileNotFoundError:
        return "Chapter 01 did not run in this build, so there is no real training time to compare with."
    protocol, entry = TrainingProtocol.from_results(saved), saved["results"]["models"].get("VGG16", {})
    if "fit_seconds" not in entry:
        return "Chapter 01's model failed in this build, so there is no real training time to compare with."
    if (protocol.image_size, protocol.num_epochs) != (PROTOCOL.image_size, PROTOCOL.num_epochs):
        return (f"Chapter 01 ran a shrunk protocol in this build ({protocol.image_size} px, {protocol.num_epochs} epoch(s)), "
                "so its training time cannot be set beside the published protocol's.")
    original = table.set_index("method").filter(like="original", axis=0).iloc[0, :]
    extrapolated = original[f"{PROTOCOL.num_epochs}-epoch protocol, s"]
    cache = entry["history"].get("cache")
    how = f"with feature caching ({cache['views']} views)" if cache else "without feature caching"
    return (f"Chapter 01 trained the published protocol for real in this build, {how}, in {entry['fit_seconds']:.0f} s "
            f"(data to trained model): {extrapolated / entry['fit_seconds']:.1f} times less than the original style's "
            f"extrapolated {extrapolated:.0f} s.")


def prediction_speed(model: keras.Model, files: list[Path], *, batch_size: int = 16, repeats: int = 3) -> dict[str, float]:
    """Images/s of one model two ways, timed in one run, alternately, medians of ``repeats``: its ceiling and ``xray-book predict``.

    ``forward-only`` runs the model on random batches already in memory;
    ``predict`` is :func:`xrayutils.predict.probabilities` on ``files``, read,
    decoded and batched as they stream from disk.  Their ratio says whether
    reading files is hidden behind the model's compute (:func:`pipeline_verdict`).
    A first pass of each (tracing, the disk cache) is left out.
    """
    shape = model.input_shape[1:]
    batches = [tf.random.uniform((min(batch_size, len(files) - i), *shape), 0, 255, seed=i) for i in range(0, len(files), batch_size)]

    def forward() -> None:
        for batch in batches:
            model.predict_on_batch(batch)

    def stream() -> None:
        predict.probabilities(model, files, batch_size=batch_size)

    seconds: dict[str, list[float]] = {"forward-only": [], "predict": []}
    for i in range(repeats + 1):
        for name, method in (("forward-only", forward), ("predict", stream)):
            started = time.perf_counter()
            method()
            if i:
                seconds[name].append(time.perf_counter() - started)
    rates = {f"{name} images/s": len(files) / statistics.median(times) for name, times in seconds.items()}
    return {"images": len(files), "batch": batch_size, **rates,
            "predict / forward-only": rates["predict images/s"] / rates["forward-only images/s"]}


def ceiling_note(table: pd.DataFrame) -> str:
    """Why the original style may beat the "compute-only ceiling", when it did here; empty otherwise.

    The compute-only step includes the book's augmentation, run before each
    step and waited for (:func:`compute_only`); ``ImageDataGenerator`` augments
    in Python with SciPy, and Keras pulls its next batch while the step
    computes.  GFLOP/s counts the model's work only, so on a machine with a
    spare core the original style can pass a ceiling that is the book's step,
    augmentation included, not the model's alone.
    """
    rate = table.set_index("method")["GFLOP/s"]
    compute, original = rate.filter(like="compute only").iloc[0], rate.filter(like="original style").iloc[0]
    if not original > compute:
        return ""
    return (f"The original style ({original:.0f} GFLOP/s) ran above the compute-only rate ({compute:.0f}): that rate is the "
            "book's training step with its augmentation run first and waited for, while ImageDataGenerator augments in "
            "Python, on another core, while the previous step computes; GFLOP/s counts the model's work only. So "
            "the compute-only rate is the ceiling of the book's step, not of the model alone.")


def pipeline_verdict(ratio: float, *, target: float = 0.9) -> str:
    """What the pipeline / compute-only ratio says, in words for the page: loading hidden (at or above ``target``) or not."""
    if ratio >= target:
        return f"data loading was hidden behind compute (at least {target:.0%} of the compute-only rate)"
    return f"data loading was not fully hidden behind compute (below {target:.0%} of the compute-only rate)"
