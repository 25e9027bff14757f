"""Model factories of both studies (chapters 01-03), Keras functional API.

Each factory takes the input shape, the class count and a weights choice, and
returns an uncompiled ``keras.Model``.  Two classes give one sigmoid unit, more
give a softmax, as in the published notebooks.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers

from xrayutils import caching

#: File Keras caches the ImageNet VGG16 convolutional base under (``~/.keras/models``).
VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
#: Smallest input side for which AlexNet's 11x11/4 stem and three 3/2 poolings leave a pixel.
ALEXNET_MIN_SIZE = 67

#: Name -> (keras.applications constructor, its preprocess_input, file Keras caches its ImageNet no-top weights under).
BACKBONES = {
    "Xception": ("Xception", "xception", "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "VGG16": ("VGG16", "vgg16", VGG16_NOTOP_FILE),
    "VGG19": ("VGG19", "vgg19", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "ResNet101V2": ("ResNet101V2", "resnet_v2", "resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "InceptionV3": ("InceptionV3", "inception_v3", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "InceptionResNetV2": ("InceptionResNetV2", "inception_resnet_v2", "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "EfficientNetV2S": ("EfficientNetV2S", "efficientnet_v2", "efficientnetv2-s_notop.h5"),
    "EfficientNetV2M": ("EfficientNetV2M", "efficientnet_v2", "efficientnetv2-m_notop.h5"),
}


@dataclass(frozen=True)
class Weights:
    """What a model's base starts from: ``keras_arg`` for ``keras.applications``, ``description`` for the reader."""

    keras_arg: str | None
    description: str

    @property
    def pretrained(self) -> bool:
        return self.keras_arg is not None


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
        constructor, _, cache_file = BACKBONES[architecture]
        cached = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / cache_file
        if cached.is_file():
            return Weights("imagenet", f"ImageNet (auto: found {cache_file} in the Keras cache)")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # Keras prints the URL it tries; the page need not show it
                getattr(keras.applications, constructor)(include_top=False, weights="imagenet", input_shape=(96, 96, 3))
        except Exception as error:  # offline: URL fetch failure, as Keras reports it
            reason = download_failure(error)
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
    """``architecture``'s weights file in ``folder``, under the name Keras caches its ImageNet file by (:data:`BACKBONES`).

    A user copies ``~/.keras/models`` to an offline machine and passes the folder
    as ``weights``: each backbone then takes its own file.  A backbone whose file
    is not there falls back, with a warning, to random initialisation, as
    ``auto`` does, and the chapter says so at its top.
    """
    name = BACKBONES[architecture][2]
    path = folder.resolve() / name
    if path.is_file():
        return Weights(str(path), f"file {name} from the folder {folder.resolve()}")
    warnings.warn(f"no {name} in {folder.resolve()} for {architecture}; falling back to random initialisation", stacklevel=3)
    return Weights(None, f"random initialisation ({architecture}'s file {name} is not in the folder {folder.resolve()})")


def _check_classes(num_classes: int) -> None:
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")


def _classifier(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    # float32 under a mixed-precision policy too: probabilities and the loss keep full precision
    if num_classes == 2:
        return layers.Dense(1, activation="sigmoid", name="predictions", dtype="float32")(x)
    return layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32")(x)


def vgg16_transfer(
    input_shape: tuple[int, int, int] = (224, 224, 3), num_classes: int = 2, weights: Weights | None = None
) -> keras.Model:
    """VGG16 convolutional base, frozen, then Flatten, Dense(256, relu) and the classifier.

    Inputs are images in [0, 255]; VGG16's own ``preprocess_input`` is part of the model.
    At 224x224 with two classes: 21,137,729 parameters, 6,423,041 trainable.
    """
    _check_classes(num_classes)
    weights = weights or resolve_weights("none")
    base = keras.applications.VGG16(include_top=False, weights=weights.keras_arg, input_shape=input_shape)
    base.trainable = False
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.applications.vgg16.preprocess_input(inputs)
    x = base(x, training=False)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, activation="relu", name="features")(x)
    outputs = _classifier(x, num_classes)
    return keras.Model(inputs, outputs, name="vgg16_transfer")


def alexnet(input_shape: tuple[int, int, int] = (224, 224, 3), num_classes: int = 4, *,
            fused_batch_norm: bool = True) -> keras.Model:
    """AlexNet as in the class-challenge study, with batch norm, trained from scratch.

    At 224x224 with four classes: 46,768,900 parameters.  Inputs in [0, 255] are
    rescaled to [0, 1] inside the model.  The three poolings need at least 67x67 pixels.
    Its batch normalisation runs fused (:class:`FusedBatchNormalization`, the same
    numbers) unless ``fused_batch_norm=False``.
    """
    _check_classes(num_classes)
    if min(input_shape[:2]) < ALEXNET_MIN_SIZE:
        raise ValueError(f"AlexNet needs images of at least {ALEXNET_MIN_SIZE}x{ALEXNET_MIN_SIZE}, got {input_shape[:2]}")
    norm = FusedBatchNormalization if fused_batch_norm else layers.BatchNormalization
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(96, 11, strides=4, activation="relu")(x)
    x = norm()(x)
    x = layers.MaxPooling2D(3, strides=2)(x)
    x = layers.Conv2D(256, 5, padding="same", activation="relu")(x)
    x = norm()(x)
    x = layers.MaxPooling2D(3, strides=2)(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu")(x)
    x = norm()(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu")(x)
    x = norm()(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu")(x)
    x = norm()(x)
    x = layers.MaxPooling2D(3, strides=2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(4096, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Dense(4096, activation="relu", name="features")(x)
    x = layers.Dropout(0.5)(x)
    outputs = _classifier(x, num_classes)
    return keras.Model(inputs, outputs, name="alexnet")


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


def with_fused_batch_norm(model: keras.Model) -> keras.Model:
    """``model`` with every BatchNormalization layer (nested ones too) a :class:`FusedBatchNormalization`, its weights kept."""
    if not any(type(layer) is layers.BatchNormalization for layer in caching.all_layers(model)):
        return model

    def swap(layer: keras.Layer) -> keras.Layer:
        kind = FusedBatchNormalization if type(layer) is layers.BatchNormalization else type(layer)
        return kind.from_config(layer.get_config())

    clone = keras.models.clone_model(model, clone_function=swap, recursive=True)
    clone.set_weights(model.get_weights())  # ImageNet weights too: cloning builds fresh ones
    return clone


def backbone_classifier(
    name: str, input_shape: tuple[int, int, int] = (150, 150, 3), num_classes: int = 2, weights: Weights | None = None
) -> keras.Model:
    """A ``keras.applications`` backbone, global average pooling and the classifier; the whole network trains.

    Inputs are images in [0, 255]; the backbone's own ``preprocess_input`` is part of the model.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)} or ResNet34")
    _check_classes(num_classes)
    constructor, module, _ = BACKBONES[name]
    weights = weights or resolve_weights("none")
    base = getattr(keras.applications, constructor)(include_top=False, weights=weights.keras_arg, input_shape=input_shape)
    inputs = keras.Input(shape=input_shape, name="image")
    x = getattr(keras.applications, module).preprocess_input(inputs)
    x = base(x)
    # pooling outside the backbone (as its pooling="avg" would do inside), so Grad-CAM can reach the last feature map
    x = layers.GlobalAveragePooling2D(name="features")(x)
    return keras.Model(inputs, _classifier(x, num_classes), name=name.lower())


def _basic_block(x: keras.KerasTensor, filters: int, stride: int) -> keras.KerasTensor:
    shortcut = x
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut)
        shortcut = layers.BatchNormalization()(shortcut)
    return layers.ReLU()(layers.Add()([x, shortcut]))


def resnet34(input_shape: tuple[int, int, int] = (150, 150, 3), num_classes: int = 2) -> keras.Model:
    """The CoronaHack study's self-defined ResNet34, trained from scratch: 5x5/2 stem, BasicBlocks 3-4-6-3."""
    _check_classes(num_classes)
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(64, 5, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for stage, (filters, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)]):
        for block in range(blocks):
            x = _basic_block(x, filters, stride=2 if stage > 0 and block == 0 else 1)
    x = layers.GlobalAveragePooling2D(name="features")(x)
    return keras.Model(inputs, _classifier(x, num_classes), name="resnet34")


def coronahack_model(name: str, input_shape: tuple[int, int, int], num_classes: int, weights: Weights, *,
                     fused_batch_norm: bool = True) -> keras.Model:
    """Any of chapter 03's nine models by name: a :data:`BACKBONES` entry, or ``"ResNet34"`` (always from scratch).

    Its batch normalisation runs fused (:class:`FusedBatchNormalization`) unless ``fused_batch_norm=False``.
    """
    model = resnet34(input_shape, num_classes) if name == "ResNet34" else backbone_classifier(name, input_shape, num_classes, weights)
    return with_fused_batch_norm(model) if fused_batch_norm else model


#: The models the studies trained from random weights, whatever the ``weights`` parameter says.
FROM_SCRATCH = frozenset({"AlexNet", "ResNet34"})


def starting_weights(name: str, choice: str) -> Weights:
    """The weights model ``name`` starts from under the ``weights`` parameter ``choice`` (:data:`FROM_SCRATCH` take none)."""
    return resolve_weights("none") if name in FROM_SCRATCH else resolve_weights(choice, architecture=name)


def build(study: str, name: str, input_shape: tuple[int, int, int], num_classes: int, weights: Weights, *,
          fused_batch_norm: bool = True) -> keras.Model:
    """A fresh model ``name`` as ``study`` defined it: class-challenge's VGG16 head and AlexNet, or CoronaHack's nine.

    The two studies put different heads on VGG16, so the name alone does not say which model it is.
    ``fused_batch_norm`` as :func:`coronahack_model` takes it (AlexNet's too).
    """
    if study == "coronahack":
        return coronahack_model(name, input_shape, num_classes, weights, fused_batch_norm=fused_batch_norm)
    if study == "class-challenge" and name == "VGG16":
        return vgg16_transfer(input_shape, num_classes=num_classes, weights=weights)
    if study == "class-challenge" and name == "AlexNet":
        return alexnet(input_shape, num_classes=num_classes, fused_batch_norm=fused_batch_norm)
    raise ValueError(f"the {study} study has no model {name!r}")


#: Chapter 03's nine models, in the study's order.
CORONAHACK_MODELS = (*BACKBONES, "ResNet34")


def check_names(names: list[str]) -> None:
    """Chapter 03's ``model_names`` must all be CoronaHack models: say which are not and what there is."""
    unknown = sorted(set(names) - set(CORONAHACK_MODELS))
    if unknown:
        raise ValueError(f"unknown model names {unknown}; choose from {list(CORONAHACK_MODELS)}")


# Shortcut test (chapter 04): the same model, shown only part of each image.

@keras.saving.register_keras_serializable(package="xrayutils")
class RegionMask(layers.Layer):
    """Black out the central region (``keep="border"``) or the outer border (``keep="center"``) of every image.

    The border is ``border_fraction`` of the height and of the width on each side.
    A model behind ``keep="border"`` never sees the lung fields, so whatever it
    learns comes from the image's edges: text, markers, collimation, body outline.
    """

    def __init__(self, keep: str, border_fraction: float, **kwargs) -> None:
        super().__init__(**kwargs)
        if keep not in ("border", "center"):
            raise ValueError(f"keep must be 'border' or 'center', got {keep!r}")
        if not 0 < border_fraction < 0.5:
            raise ValueError(f"border_fraction must be in (0, 0.5), got {border_fraction}")
        self.keep, self.border_fraction = keep, border_fraction

    def call(self, images: keras.KerasTensor) -> keras.KerasTensor:
        return images * keras.ops.cast(self.mask(images.shape[1], images.shape[2]), images.dtype)

    def mask(self, height: int, width: int) -> keras.KerasTensor:
        """``(height, width, 1)`` of ones where the image is kept."""
        dy, dx = round(height * self.border_fraction), round(width * self.border_fraction)
        rows = keras.ops.arange(height)[:, None]
        cols = keras.ops.arange(width)[None, :]
        center = (rows >= dy) & (rows < height - dy) & (cols >= dx) & (cols < width - dx)
        kept = center if self.keep == "center" else keras.ops.logical_not(center)
        return keras.ops.expand_dims(keras.ops.cast(kept, "float32"), -1)

    def get_config(self) -> dict:
        return {**super().get_config(), "keep": self.keep, "border_fraction": self.border_fraction}


def with_region_mask(model: keras.Model, *, keep: str, border_fraction: float) -> keras.Model:
    """``model`` behind a :class:`RegionMask`: saved, tested and explained with the mask in place."""
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    masked = RegionMask(keep, border_fraction, name=f"keep_{keep}")(inputs)
    return keras.Model(inputs, model(masked), name=f"{model.name}_{keep}_only")
