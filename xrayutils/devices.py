"""Where and at what precision training runs: GPUs and their memory, replicas, XLA, mixed precision, threads.

:func:`distribution` makes the one ``MirroredStrategy`` a process may hold (only
when asked: one run per GPU is the default), :func:`for_replicas` changes a
protocol so that its batches divide over the replicas, :func:`choose_precision`
picks each model's policy (:mod:`xrayutils.precision`).  GPU memory grows as
needed in every process that imports this module (:func:`grow_gpu_memory`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import weakref
from collections.abc import Callable

import keras
import tensorflow as tf

from xrayutils import caching, precision
from xrayutils.protocol import TrainingProtocol


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

    Every batch must divide over the replicas (:func:`~xrayutils.train.fit`): Keras 3 fails on an
    uneven one ("Inputs to operation AddN must have the same size"), and a
    replica with no image computes NaN batch statistics.  So the global batch is
    rounded up to a multiple of the replicas, the training images' last partial
    batch is left out (a different one each epoch, as they are shuffled) and so
    are the last ``validation_images % replicas`` validation images; every test
    image is scored (:func:`~xrayutils.jobs.filled`).  Each replica normalises by its own
    part of the batch, and the page says so: batch statistics are not synchronised
    (the book's fused batch normalisation cannot be; the moving ones are averaged
    over the replicas).  Float16 becomes float32: Keras 3.15's
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
            + (f", and the last {left} validation images" if left > 1 else ", and the last validation image" if left else ""),
            "batch normalisation on each replica's share of the batch (its statistics not synchronised)"]
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


def choose_precision(
    mixed_precision: bool | str, *, model: str = "", work: str | Callable[[], str] = precision.WHOLE_NETWORK
) -> precision.Precision:
    """The precision ``model`` runs under here for ``mixed_precision`` (:func:`xrayutils.precision.choose` on this machine).

    ``auto`` on a CPU with native bfloat16 chooses per model and ``work`` from
    the stored measurement; a GPU gets float16, other CPUs float32.  A policy
    name of :data:`~xrayutils.precision.MIXED_POLICIES` takes that policy on any device:
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
