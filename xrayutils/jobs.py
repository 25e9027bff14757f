"""A chapter's training jobs: one model and one seed each, executed by an engine, tested, saved, gathered over seeds.

:class:`Run` is one unit of work; :class:`LocalEngine` (or
:class:`xrayutils.cluster.RayEngine`) executes it with :func:`train_and_test`;
:func:`train_models` trains every model of a chapter with every seed and
:func:`over_seeds` gathers each model's seeds into one :class:`ModelRun`, the
seed ensemble's predictions and each seed's.  ``save_model`` writes the
``.keras`` file with a JSON sidecar (classes, image size, history, provenance)
so that :mod:`xrayutils.predict` can use it later.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import traceback
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from xrayutils import caching, datasets, evaluate, models, pipeline, progress, results
from xrayutils.devices import choose_precision, cpu_threads, distribution, for_replicas, work_of
from xrayutils.protocol import TrainingProtocol
from xrayutils.train import EpochProgress, FitModel, fit, set_seed


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
    reuse_base: bool = False,
) -> ModelRun:
    """Seed, build, :func:`~xrayutils.train.fit`, predict the test split and :func:`save_model`; an error is returned, not raised.

    ``frames`` are :func:`xrayutils.pipeline.split_frames`; ``protocol.seed`` is
    this run's training seed (:meth:`~xrayutils.protocol.TrainingProtocol.for_seed`).
    Each run is seeded afresh and gets fresh datasets (a reused dataset would
    continue its shuffle order), so its numbers do not depend on which models
    ran before it, and a failing model leaves the others' results intact.  With
    ``keep_model=False`` the model is dropped once saved and Keras' state is
    cleared, so that many models can run one after another in one process;
    ``path=None`` saves nothing.  Feature caching is skipped, with a message,
    for a model without a frozen base.  The model is built and trained in the
    :func:`~xrayutils.devices.distribution` scope (``mirrored``: one batch over every GPU, with
    :func:`~xrayutils.devices.for_replicas`' changes recorded in the history as ``replicated``),
    at the precision :func:`~xrayutils.devices.choose_precision` picks
    for its ``architecture`` (``name`` unless given) and work, recorded with the
    reason in its history, with the protocol's class weights and batch-normalisation
    momentum.  ``fit_model`` and ``augmentation`` are the chapter's own (:func:`~xrayutils.train.fit`).
    ``reuse_base``: ``build``'s frozen base is the same for every seed (ImageNet's, a file's, or
    :func:`~xrayutils.models.one_random_draw`'s), so the model may be the one the previous seed trained, its
    head drawn afresh (:func:`redraw_head`): building EfficientNetV2M again and loading its base took about 5 s per seed.
    """
    reuse = reuse_base and not mirrored
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
            model = _BUILT.pop((build, chosen.policy), None) if reuse else None
            if model is None:
                _BUILT.clear()  # another model's: not needed any more
                model = build()
            if reuse and not redraw_head(model, protocol.seed):
                reuse = False  # no frozen base: nothing to keep for the next seed
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
        _BUILT.clear()
        keras.backend.clear_session()
        return ModelRun(name, error=f"{type(error).__name__}: {error}")
    if not keep_model:
        if reuse:  # for the next seed of this model (train_models lets it go when every run is done)
            _BUILT[build, chosen.policy] = model
        del model
        model = None
        keras.backend.clear_session()
    return ModelRun(name, model, history, probabilities, seconds_per_image, None if path is None else Path(path), weight_counts)


#: The model a run with ``reuse_base`` left for the next seed of the same ``build``, by ``(build, dtype policy)``: one at most.
_BUILT: dict[tuple[Callable[[], keras.Model], str], keras.Model] = {}


def redraw_head(model: keras.Model, seed: int) -> bool:
    """Draw the trainable head of ``model`` afresh from ``seed``, in place, its frozen base kept; ``False`` when it has none.

    Each layer with state after the frozen base (:func:`xrayutils.caching.split_frozen`)
    is made again from its config, with Keras' random seed set to ``seed``, and
    its new state copied in: weights, batch-normalisation statistics and a
    dropout layer's random seed.  Every run with a reusable base draws its head
    here, a model built afresh as well as one the previous seed trained, so a
    seed's starting head is the same whichever engine ran it and whichever run came before.
    """
    try:
        split = caching.split_frozen(model)
    except ValueError:  # a random layer in the frozen part: not a base to keep
        return False
    if split is None:
        return False
    stateful = [layer for layer in split[1].layers if layer.variables]
    if any(isinstance(layer, keras.Model) for layer in stateful):  # a nested model in the head: not redrawn layer by layer
        return False
    keras.utils.set_random_seed(seed)
    for layer in stateful:
        fresh = type(layer).from_config(layer.get_config())
        fresh.build(layer.input.shape)
        for old, new in zip(layer.variables, fresh.variables, strict=True):
            old.assign(new)
    return True


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

    ``build`` makes the fresh model and ``fit_model`` trains it (:data:`~xrayutils.train.FitModel`)
    on batches augmented by ``augmentation(seed)`` (:func:`~xrayutils.train.fit`); all three may be
    defined on a chapter's page: cloudpickle carries them to Ray's workers.  ``protocol`` is this seed's
    (:meth:`~xrayutils.protocol.TrainingProtocol.for_seed`), ``path=None``
    saves nothing, and ``keep_model`` keeps the trained model in memory for the
    chapter.  ``reuse_base``: every seed's model starts from the same frozen base (:func:`train_and_test`).
    An engine (:class:`LocalEngine`, :class:`xrayutils.cluster.RayEngine`)
    executes a chapter's runs with :func:`train_and_test`.
    """

    name: str
    build: Callable[[], keras.Model]
    protocol: TrainingProtocol
    path: Path | None = None
    keep_model: bool = False
    fit_model: FitModel | None = None
    augmentation: Callable[[int], keras.Layer] | None = None
    reuse_base: bool = False

    @property
    def seed(self) -> int:
        return self.protocol.seed

    @property
    def label(self) -> str:
        return run_label(self.name, self.seed)


@dataclass
class LocalEngine:
    """Runs a chapter's :class:`Run` s one after another in this process (a laptop, Colab, one GPU).

    ``mirrored``: each run spreads its batches over every GPU (:func:`~xrayutils.devices.distribution`).
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
                                      augmentation=run.augmentation, mirrored=self.mirrored, reuse_base=run.reuse_base)


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
    augmented by ``augmentation(seed)`` where given (:func:`~xrayutils.train.fit`).
    ``frames`` split ``data`` (:func:`~xrayutils.train.load_split`).  Each model trains with
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
                     fit_model=fit_model, augmentation=augmentation,
                     reuse_base=weights[name].keras_arg is not None)  # a base from a file or ImageNet: every seed's
                 for i, seed in enumerate(seeds[name])]
    done: dict[str, dict[int, ModelRun]] = {name: {} for name in names}
    runs = {}
    try:
        for unit, result in (engine or LocalEngine()).run(todo, frames, classes=data.classes, provenance=provenance):
            done[unit.name][unit.seed] = result
            if len(done[unit.name]) == len(seeds[unit.name]):
                run = over_seeds(unit.name, {seed: done[unit.name][seed] for seed in seeds[unit.name]})
                if run.ok:
                    run.save_predictions(frames["test"], data.classes, output_dir)
                print(run.status(), flush=True)
                runs[unit.name] = run
    finally:
        _BUILT.clear()
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
