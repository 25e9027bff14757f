"""The models the chapters define on their pages, for the code that reuses them. GENERATED: do not edit.

Each definition below is a ``#@save`` cell of the chapter named above it, copied
by ``python -m xrayutils.saved_cells`` (:mod:`xrayutils.saved_cells`).  To change
a model, change its chapter's cell and run that command.
"""

import keras
from keras import layers

from xrayutils import catalogue, constraints


# From notebooks/01_vgg16_binary.ipynb
def classifier(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    """The last layer: one sigmoid unit, P(second class), for two classes; else a softmax.

    In float32 always, so that probabilities and the loss keep full precision.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if num_classes == 2:
        return layers.Dense(1, activation="sigmoid", name="predictions", dtype="float32")(x)
    return layers.Dense(
        num_classes, activation="softmax", name="predictions", dtype="float32"
    )(x)


def vgg16_transfer(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    num_classes: int = 2,
    weights: str | None = None,
) -> keras.Model:
    """VGG16's convolutional base, frozen; Flatten, Dense(256, ReLU), the classifier.

    ``weights`` is Keras' own: ``None`` (random), ``"imagenet"`` or a weights file.
    """
    base = keras.applications.VGG16(
        include_top=False, weights=weights, input_shape=input_shape
    )
    base.trainable = False
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.applications.vgg16.preprocess_input(inputs)
    x = base(x, training=False)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, activation="relu", name="features")(x)
    return keras.Model(inputs, classifier(x, num_classes), name="vgg16_transfer")


# From notebooks/02_vgg16_vs_alexnet.ipynb
def alexnet(
    input_shape: tuple[int, int, int] = (224, 224, 3), num_classes: int = 4
) -> keras.Model:
    """AlexNet as in the class-challenge study, with batch normalisation, from scratch."""
    if min(input_shape[:2]) < 67:  # its stem and three poolings leave no pixel below 67
        raise ValueError(f"AlexNet needs images of at least 67x67, got {input_shape[:2]}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(96, 11, strides=4, activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D(3, strides=2)(x)
    x = layers.Conv2D(256, 5, padding="same", activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D(3, strides=2)(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D(3, strides=2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(4096, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Dense(4096, activation="relu", name="features")(x)
    x = layers.Dropout(0.5)(x)
    return keras.Model(inputs, classifier(x, num_classes), name="alexnet")


# From notebooks/03_coronahack_models.ipynb
def preprocessing(name: str):
    """The backbone's own input scaling: ``preprocess_input`` of its module in keras.applications (the catalogue names it)."""
    return getattr(keras.applications, catalogue.network(name).keras_module).preprocess_input


def backbone_classifier(
    name: str,
    input_shape: tuple[int, int, int] = (150, 150, 3),
    num_classes: int = 2,
    weights: str | None = None,
    fine_tune: bool = True,
) -> keras.Model:
    """The backbone ``name``, global average pooling, the classifier; the backbone trains too unless ``fine_tune=False``."""
    backbone = getattr(keras.applications, name)
    base = backbone(include_top=False, weights=weights, input_shape=input_shape)
    base.trainable = fine_tune
    inputs = keras.Input(shape=input_shape, name="image")
    x = preprocessing(name)(inputs)
    x = base(x, training=None if fine_tune else False)  # frozen, it runs as at test time: no dropout, fixed batch statistics
    # pooling outside the backbone, so that Grad-CAM reaches its last feature map
    x = layers.GlobalAveragePooling2D(name="features")(x)
    if not fine_tune:  # a linear probe: the features standardised, then the classifier
        x = layers.BatchNormalization(name="probe_norm")(x)
    return keras.Model(inputs, classifier(x, num_classes), name=name.lower())


# From notebooks/03_coronahack_models.ipynb
def residual_block(x: keras.KerasTensor, filters: int, stride: int) -> keras.KerasTensor:
    """Two 3x3 convolutions with batch normalisation, added to the block's input."""
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


def resnet34(
    input_shape: tuple[int, int, int] = (150, 150, 3), num_classes: int = 2
) -> keras.Model:
    """The CoronaHack study's self-defined ResNet34: 5x5/2 stem, blocks 3-4-6-3."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(64, 5, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for stage, (filters, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)]):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            x = residual_block(x, filters, stride)
    x = layers.GlobalAveragePooling2D(name="features")(x)
    return keras.Model(inputs, classifier(x, num_classes), name="resnet34")


# From notebooks/04_trust_checks.ipynb
@keras.saving.register_keras_serializable(package="xrayutils")
class RegionMask(layers.Layer):
    """Black out the image's centre (``keep="border"``) or its border (``keep="center"``).

    The border is ``border_fraction`` of the height and of the width on each side.
    """

    def __init__(self, keep: str, border_fraction: float, **kwargs):
        super().__init__(**kwargs)
        if keep not in ("border", "center"):
            raise ValueError(f"keep must be 'border' or 'center', got {keep!r}")
        constraints.check("border_fraction", border_fraction)  # in (0, 0.5)
        self.keep, self.border_fraction = keep, border_fraction

    def call(self, images):
        height, width = images.shape[1], images.shape[2]
        dy, dx = round(height * self.border_fraction), round(width * self.border_fraction)
        rows = keras.ops.arange(height)[:, None]
        cols = keras.ops.arange(width)[None, :]
        center = (rows >= dy) & (rows < height - dy) & (cols >= dx) & (cols < width - dx)
        kept = center if self.keep == "center" else keras.ops.logical_not(center)
        return images * keras.ops.cast(kept[..., None], images.dtype)

    def get_config(self):
        config = super().get_config()
        return {**config, "keep": self.keep, "border_fraction": self.border_fraction}


def masked(model: keras.Model, keep: str, border_fraction: float) -> keras.Model:
    """``model`` behind a RegionMask: trained, tested and saved with the mask in place."""
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    x = RegionMask(keep, border_fraction, name=f"keep_{keep}")(inputs)
    return keras.Model(inputs, model(x), name=f"{model.name}_{keep}_only")
