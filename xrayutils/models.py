"""What surrounds the chapters' models: the weights they start from, fused batch normalisation, building one by name.

The models themselves are written on the chapters' pages (VGG16's head in
chapter 01, AlexNet in 02, the nine CoronaHack networks in 03) and copied into
:mod:`xrayutils.chapter_models` (:mod:`xrayutils.saved_cells`); :func:`build`
makes any of them by study and name for the code that is not a chapter
(``plan``, the benchmarks, chapter 04's retrainings).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import pandas as pd
from keras import layers

from xrayutils import caching, catalogue, chapter_models


@dataclass(frozen=True)
class Weights:
    """What a model's base starts from: ``keras_arg`` for ``keras.applications``, ``description`` for the reader."""

    keras_arg: str | None
    description: str
    drawn: bool = False  # a file of random weights (:func:`one_random_draw`): Keras loads it, but it learned nothing

    @property
    def pretrained(self) -> bool:
        return self.keras_arg is not None and not self.drawn


def resolve_weights(choice: str, *, architecture: str = "VGG16") -> Weights:
    """Turn the ``weights`` parameter (``imagenet``, ``none``, ``auto``, a file or a folder of files) into a :class:`Weights`.

    ``auto`` takes ImageNet when Keras has ``architecture``'s file cached (or can
    download it) and otherwise falls back, with a warning, to random
    initialisation: the chapter then says so at its top, so a model trained from
    random weights never looks like transfer learning.
    """
    if choice == "none":
        return Weights(None, "random initialisation (weights=none)")
    if choice == "imagenet":
        return Weights("imagenet", "ImageNet (weights=imagenet)")
    if choice == "auto":
        cache_file = catalogue.network(architecture).imagenet_file
        cached = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / cache_file
        if cached.is_file():
            return Weights("imagenet", f"ImageNet (auto: found {cache_file} in the Keras cache)")
        try:
            if _OFFLINE:  # one backbone found no network: the next would wait for the same answer
                raise OSError(_OFFLINE[0])
            with contextlib.redirect_stdout(io.StringIO()):  # Keras prints the URL it tries; the page need not show it
                getattr(keras.applications, architecture)(include_top=False, weights="imagenet", input_shape=(96, 96, 3))
        except Exception as error:  # offline: URL fetch failure, as Keras reports it
            reason = download_failure(error)
            if reason.endswith("no network"):
                _OFFLINE[:] = ["[Errno -3] Temporary failure in name resolution"]
            warnings.warn(f"ImageNet weights unavailable ({reason}); falling back to random initialisation", stacklevel=2)
            return Weights(None, f"random initialisation (auto: {reason})")
        return Weights("imagenet", "ImageNet (auto: downloaded by Keras)")
    path = Path(choice).expanduser()
    if path.is_dir():
        return weights_in_folder(path, architecture)
    if not path.is_file():
        raise ValueError(f"weights must be 'imagenet', 'none', 'auto', an existing file or a folder of weights files; "
                         f"{choice!r} is none of these")
    return Weights(str(path.resolve()), f"file {path.resolve()}")


#: Set once a download found no network, for the rest of the process (a kernel runs one chapter).
_OFFLINE: list[str] = []


def download_failure(error: BaseException) -> str:
    """Why Keras could not fetch ImageNet weights, in a sentence for the page: no network, or the error's first line.

    Keras reports an offline machine as ``URL fetch failure on https://...: None --
    [Errno -3] Temporary failure in name resolution``; a reader needs "no network",
    not the socket error, and never the build machine's details.

    >>> download_failure(OSError("URL fetch failure on https://x/y.h5: None -- [Errno -2] Name or service not known"))
    'ImageNet weights could not be downloaded: no network'
    """
    text = str(error).strip()
    if re.search(r"Errno -[23]|Name or service not known|name resolution|Network is unreachable|timed out", text):
        return "ImageNet weights could not be downloaded: no network"
    first = text.splitlines()[0][:200] if text else type(error).__name__
    first = re.sub(r"\s+on https?://\S+?(:?)(?=\s|$)", r"\1", first)
    return f"ImageNet weights could not be downloaded ({first})"


def weights_in_folder(folder: Path, architecture: str) -> Weights:
    """``architecture``'s weights file in ``folder``, under the name Keras caches its ImageNet file by (:mod:`~xrayutils.catalogue`).

    A user copies ``~/.keras/models`` to an offline machine and passes the folder
    as ``weights``: each backbone then takes its own file.  A backbone whose file
    is not there falls back, with a warning, to random initialisation, as
    ``auto`` does, and the chapter says so at its top.
    """
    name = catalogue.network(architecture).imagenet_file
    path = folder.resolve() / name
    if path.is_file():
        return Weights(str(path), f"file {name} from the folder {folder.resolve()}")
    warnings.warn(f"no {name} in {folder.resolve()} for {architecture}; falling back to random initialisation", stacklevel=3)
    return Weights(None, f"random initialisation ({architecture}'s file {name} is not in the folder {folder.resolve()})")


def one_random_draw(name: str, weights: Weights, input_shape: tuple[int, int, int], *, seed: int, folder: Path) -> Weights:
    """``weights``, unless it is random for a backbone: then one random draw of its base, saved for every seed to load.

    A frozen base is what training leaves alone: from ImageNet weights, every
    training seed starts from the same base and draws only the head.  Drawn by
    each seed, a frozen random base would differ from seed to seed, the spread
    over seeds would mix two things, and its output could not be computed once
    for all seeds (:func:`xrayutils.caching.encode_shared`).  Drawn once, with
    ``seed``, and saved in ``folder``, it plays the part ImageNet weights play,
    on any engine: a Ray worker loads the same file.
    """
    if weights.keras_arg is not None or name not in catalogue.BACKBONES:
        return weights
    path = Path(folder) / f"{name.lower()}_{input_shape[0]}px_random_seed{seed}_notop.weights.h5"
    if not path.is_file():
        keras.utils.set_random_seed(seed)
        base = getattr(keras.applications, name)(include_top=False, weights=None, input_shape=input_shape)
        partial = path.with_name(f".{path.name}.partial.weights.h5")
        path.parent.mkdir(parents=True, exist_ok=True)
        base.save_weights(partial)
        partial.replace(path)  # a file with this name is whole
        keras.backend.clear_session()
    return Weights(str(path), f"random initialisation, drawn once (seed {seed}) for every training seed", drawn=True)


def set_batchnorm_momentum(model: keras.Model, momentum: float) -> int:
    """Set the moving-statistics momentum of every batch-normalisation layer in ``model`` (nested ones too); returns how many.

    Keras reads ``momentum`` at every call, so this holds for a built model.
    """
    found = [layer for layer in caching.all_layers(model) if isinstance(layer, layers.BatchNormalization)]
    for layer in found:
        layer.momentum = momentum
    return len(found)


def count_parameters(model: keras.Model) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts."""
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    return model.count_params(), trainable


def feature_extractor(model: keras.Model, layer: str = "features") -> keras.Model:
    """The model up to its ``features`` layer (Dense(256) of VGG16, the last Dense(4096) of AlexNet), for t-SNE."""
    return keras.Model(model.inputs, model.get_layer(layer).output, name=f"{model.name}_{layer}")


# CoronaHack comparison (chapter 03): eight keras.applications backbones, fine-tuned whole, and a ResNet34.

@keras.saving.register_keras_serializable(package="xrayutils")
class FusedBatchNormalization(layers.BatchNormalization):
    """Keras' BatchNormalization, computed by TensorFlow's fused kernel: same weights, outputs and moving statistics.

    Keras 3 computes batch normalisation op by op (the batch moments, then the
    scale and shift, and the gradient of each), which took 17% of the op time of
    an EfficientNetV2S training step on the CPU (``benchmarks/step_profile.py``);
    TensorFlow's fused kernel does it in one pass.  Swapped in
    (:func:`with_fused_batch_norm`; AlexNet is built with it), chapter 03's models trained faster on a 2-core
    Xeon, 96 px, batch 16 (``benchmarks/whole_network_speed.py`` with and without
    ``--keras-batch-norm``, two alternating runs of 8 steps): ResNet34 at 48.5
    against 44.0 images/s, EfficientNetV2S 28.0 against 24.0.  Anything but a 4-D
    channels-last input with scale and offset, or another backend, is left to
    Keras' own computation.
    """

    def call(self, inputs, training=None, mask=None):
        if (len(inputs.shape) != 4 or self.axis not in (-1, 3) or not (self.center and self.scale) or mask is not None
                or keras.backend.backend() != "tensorflow"):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, "float32")  # as Keras does under a mixed policy: the statistics in float32
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(x, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
            count = tf.cast(tf.size(x) // tf.shape(x)[-1], "float32")
            variance = variance * (count - 1) / count  # the kernel returns the unbiased variance; Keras keeps the batch's own
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1 - self.momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, self.gamma, self.beta, mean=self.moving_mean, variance=self.moving_variance,
                                                       epsilon=self.epsilon, is_training=False)
        return tf.cast(y, self.compute_dtype)


def _fusable(layer: keras.Layer) -> bool:
    """A Keras BatchNormalization that trains, on images (4-D): where the fused kernel saves time."""
    if type(layer) is not layers.BatchNormalization or not layer.trainable:
        return False
    try:
        return len(layer.input.shape) == 4
    except (AttributeError, ValueError):  # never called: the fused layer itself falls back on other inputs
        return True


def with_fused_batch_norm(model: keras.Model) -> keras.Model:
    """``model`` with each BatchNormalization layer that trains on images (nested ones too) fused, its weights kept.

    Each becomes a :class:`FusedBatchNormalization`.  A frozen layer computes
    the same few operations either way, so a frozen backbone (chapter 03's
    probes) is returned as built: cloning a large model for nothing took
    seconds per training seed.
    """
    if not any(_fusable(layer) for layer in caching.all_layers(model)):
        return model

    def swap(layer: keras.Layer) -> keras.Layer:
        kind = FusedBatchNormalization if _fusable(layer) else type(layer)
        return kind.from_config(layer.get_config())

    clone = keras.models.clone_model(model, clone_function=swap, recursive=True)
    clone.set_weights(model.get_weights())  # ImageNet weights too: cloning builds fresh ones
    return clone


def coronahack_model(name: str, input_shape: tuple[int, int, int], num_classes: int, weights: Weights, *,
                     fused_batch_norm: bool = True, fine_tune: bool = True) -> keras.Model:
    """Any of chapter 03's models by name (:data:`xrayutils.catalogue.CORONAHACK_CHOICES`): a backbone, or ``"ResNet34"``.

    Its batch normalisation runs fused (:class:`FusedBatchNormalization`) unless
    ``fused_batch_norm=False``; ``fine_tune=False`` freezes a backbone (chapter 03's probes).
    """
    if name == "ResNet34":
        page = chapter_models.resnet34
    elif name in catalogue.BACKBONES:
        page = functools.partial(chapter_models.backbone_classifier, name, fine_tune=fine_tune)
    else:
        raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(catalogue.CORONAHACK_CHOICES)}")
    return from_page(page, input_shape, num_classes, weights, fused_batch_norm=fused_batch_norm)


def starting_weights(name: str, choice: str) -> Weights:
    """The weights model ``name`` starts from under the ``weights`` parameter ``choice`` (:mod:`~xrayutils.catalogue`: some take none)."""
    return resolve_weights("none") if name in catalogue.FROM_SCRATCH else resolve_weights(choice, architecture=name)


def from_page(build: Callable[..., keras.Model], input_shape: tuple[int, int, int], num_classes: int, weights: Weights, *,
              fused_batch_norm: bool = True) -> keras.Model:
    """A fresh model from a chapter's own ``build(input_shape, num_classes)``, starting from ``weights``, its batch norm fused.

    ``weights=`` (Keras' own argument) is passed only when the model starts from
    ImageNet or a file, so a page's model trained from scratch (AlexNet,
    ResNet34) needs no such argument.  Fused batch normalisation
    (:class:`FusedBatchNormalization`) gives the same numbers faster; a model
    without batch normalisation is returned as built.
    """
    model = build(input_shape, num_classes, weights=weights.keras_arg) if weights.keras_arg else build(input_shape, num_classes)
    return with_fused_batch_norm(model) if fused_batch_norm else model


def build(study: str, name: str, input_shape: tuple[int, int, int], num_classes: int, weights: Weights, *,
          fused_batch_norm: bool = True, fine_tune: bool = True) -> keras.Model:
    """A fresh model ``name`` as ``study`` defined it: class-challenge's VGG16 head and AlexNet, or CoronaHack's nine.

    The two studies put different heads on VGG16, so the name alone does not say which model it is.
    ``fused_batch_norm`` as :func:`coronahack_model` takes it (AlexNet's too).
    """
    if study == "coronahack":
        return coronahack_model(name, input_shape, num_classes, weights, fused_batch_norm=fused_batch_norm, fine_tune=fine_tune)
    pages = {"VGG16": chapter_models.vgg16_transfer, "AlexNet": chapter_models.alexnet}
    if study == "class-challenge" and name in pages:
        return from_page(pages[name], input_shape, num_classes, weights, fused_batch_norm=fused_batch_norm)
    raise ValueError(f"the {study} study has no model {name!r}")


def describe(model: keras.Model) -> list[str]:
    """``model``'s top-level layers in a few words each, for its results file and stamp: ``"features: Dense(256, relu)"``.

    A nested model (a backbone) is one entry, marked frozen when it does not
    train, so an edit to a chapter's head shows in what the run recorded.
    """
    return [f"{layer.name}: {_layer_words(layer)}" for layer in model.layers if not isinstance(layer, layers.InputLayer)]


def layer_table(model: keras.Model) -> pd.DataFrame:
    """One row per top-level layer of ``model``: what it is, its output shape, its parameters and whether they train.

    For a chapter's page: shorter than ``model.summary()``, which also lists
    each operation of a backbone's input scaling and runs wider than the text column.
    """
    rows = {layer.name: {"layer": _layer_words(layer), "output shape": str(tuple(layer.output.shape[1:])),
                         "parameters": f"{layer.count_params():,}", "trains": "yes" if layer.trainable and layer.weights else "no"}
            for layer in model.layers if not isinstance(layer, layers.InputLayer)}
    total, trainable = count_parameters(model)
    rows["all layers"] = {"layer": "", "output shape": "", "parameters": f"{total:,}", "trains": f"{trainable:,} of them"}
    return pd.DataFrame(rows).T


def _layer_words(layer: keras.Layer) -> str:
    config = layer.get_config()
    if isinstance(layer, keras.Model):
        return f"{type(layer).__name__} ({layer.count_params():,} parameters{'' if layer.trainable else ', frozen'})"
    if isinstance(layer, layers.Dense):
        return f"Dense({config['units']}, {config['activation']})"
    if isinstance(layer, layers.Conv2D):
        return f"Conv2D({config['filters']}, {config['kernel_size'][0]}, strides {config['strides'][0]})"
    if isinstance(layer, layers.Dropout):
        return f"Dropout({config['rate']})"
    return type(layer).__name__
