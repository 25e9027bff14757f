"""Frozen-base feature caching: run a frozen base once per image (or per augmented view), not once per epoch.

A model whose first layers train nothing (the frozen VGG16 of chapters 01, 02 and
chapter 04's retraining) computes the same base output for the same image at every
epoch: 40 epochs of the published task-1 protocol pay for the base 40 times.
:func:`split_frozen` cuts the model where training starts; :func:`encode` runs the
frozen part once over a dataset, ``views`` times when training is augmented (each
pass draws fresh random transforms); :func:`feature_dataset` then serves every image
once per epoch, in a seeded shuffled order, as one of its ``views`` cached views drawn
at random.  The head shares its layers with the model, so training the head on the
cached features trains the model itself (:func:`xrayutils.train.fit`).

With augmentation this is not the same as augmenting afresh at every epoch: each
image is seen in ``views`` versions only.  Chapters state the ``views`` they used.

Without augmentation a frozen base gives the same output for the same image in
every run that starts from the same weights: :func:`encode_shared` computes it
for the first training seed and hands it to the others (chapter 03's nine
frozen backbones, three seeds each, encode each image once, not three times).
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections.abc import Callable, Hashable, Iterator

import keras
import numpy as np
import tensorflow as tf
from keras import layers

#: Layers that act differently in training; a frozen part holding one cannot be cached.
STOCHASTIC_LAYERS = (layers.Dropout, layers.GaussianNoise, layers.GaussianDropout, layers.AlphaDropout)


def all_layers(model: keras.Model) -> Iterator[keras.Layer]:
    """Every layer of ``model``, nested models' layers included (after the nested model itself)."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def called_in_inference(layer: keras.Layer) -> bool:
    """Whether every call of ``layer`` in the models around it fixes ``training=False``, Keras' way to run a frozen base as at test time."""
    nodes = getattr(layer, "_inbound_nodes", [])
    return bool(nodes) and all(node.arguments.kwargs.get("training") is False for node in nodes)


def random_layers(model: keras.Model) -> Iterator[keras.Layer]:
    """The layers of ``model`` that are random in training (:data:`STOCHASTIC_LAYERS`), but not inside a model called in inference.

    EfficientNetV2's stochastic depth is dropout inside the backbone; called
    with ``training=False`` it never drops, so its output can be cached.
    """
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            if not called_in_inference(layer):
                yield from random_layers(layer)
        elif isinstance(layer, STOCHASTIC_LAYERS):
            yield layer


def split_frozen(model: keras.Model) -> tuple[keras.Model, keras.Model] | None:
    """``(encoder, head)``: the frozen first part of ``model`` and the trainable rest, sharing its layers.

    The same two objects for the same model while no layer's ``trainable`` changes,
    so the encoder that encoded the training images, traced once (:func:`forward`),
    also encodes the test images: tracing a large backbone took as long as encoding
    the test split.

    The cut is at the input of the first layer with trainable weights.  When that
    layer is a whole model ending ``model`` (a model behind chapter 04's region
    mask), the cut goes inside it.  ``None`` when there is nothing worth caching
    (the frozen part holds no weights, as in AlexNet or ResNet34) or when the cut
    does not separate the graph (a branch around it).

    Raises
    ------
    ValueError
        When the frozen part holds a layer that is random in training (dropout,
        noise): its cached output would not be what training sees.
    """
    flags = tuple(layer.trainable for layer in all_layers(model))
    if model in _SPLITS and _SPLITS[model][0] == flags:
        return _SPLITS[model][1]
    split = _split(model)
    _SPLITS[model] = (flags, split)
    return split


#: :func:`split_frozen`'s answers by model, with the ``trainable`` flags they were made under; kept while the model lives.
_SPLITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _split(model: keras.Model) -> tuple[keras.Model, keras.Model] | None:
    """:func:`split_frozen`, computed."""
    first = next((layer for layer in model.layers if layer.trainable_weights), None)
    if first is None:
        return None
    if isinstance(first, keras.Model):
        if first is not model.layers[-1] or len(model.layers) < 3:  # a trainable model inside: nothing frozen before it
            return None
        inner = split_frozen(first)
        if inner is None:
            return None
        # a nested model's .input is its own Input: what feeds it here is the previous layer's output
        before = keras.Model(model.inputs, model.layers[-2].output, name=f"{model.name}_before_{first.name}")
        return keras.Sequential([before, inner[0]], name=f"{model.name}_encoder"), inner[1]
    boundary = first.input
    encoder = keras.Model(model.inputs, boundary, name=f"{model.name}_encoder")
    if not encoder.weights:
        return None
    random = [layer.name for layer in random_layers(encoder)]
    if random:
        raise ValueError(
            f"{model.name}'s frozen part holds layers that are random in training ({', '.join(random)}): its output cannot be cached"
        )
    try:
        head = keras.Model(boundary, model.outputs, name=f"{model.name}_head")
    except ValueError:  # the outputs also depend on tensors before the cut
        return None
    if len(head.trainable_weights) != len(model.trainable_weights):
        return None
    return encoder, head


def encode(
    encoder: keras.Model,
    images: tf.data.Dataset,
    *,
    views: int = 1,
    augmentation: keras.Layer | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's output for every batch of ``images``, ``views`` times.

    Parameters
    ----------
    images : tf.data.Dataset
        Batched ``(images, labels)``; iterated once per view.
    views : int
        Passes over ``images``, each through ``augmentation`` (training mode) first.
    augmentation : keras layer, optional
        Without it every view would be the same, so ``views`` must be 1.
    on_batch : callable, optional
        Called with (batches done, batches in all views; 0 when the dataset does
        not know its length) after each batch: encoding is most of a cached
        training's time, and the runner shows how far it is.

    Returns
    -------
    features : ndarray, shape ``(views, n, *encoder output shape)``
    labels : ndarray, shape ``(views, n, *label shape)``
        Labels are kept per view, so a shuffled ``images`` still pairs them right.
    """
    if views < 1:
        raise ValueError(f"views must be at least 1, got {views}")
    if augmentation is None and views > 1:
        raise ValueError(f"without augmentation all {views} views would be the same image: use views=1")

    spec = images.element_spec[0]
    step = forward(encoder, augmentation, tf.TensorSpec([None, *spec.shape[1:]], spec.dtype))
    per_view = int(images.cardinality())  # negative when unknown
    total, done = max(views * per_view, 0), 0
    features, labels = [], []
    for _ in range(views):
        batches = []
        for x, y in images:
            batches.append((step(x).numpy(), y.numpy()))
            done += 1
            if on_batch is not None:
                on_batch(done, total)
        features.append(np.concatenate([f for f, _ in batches]))
        labels.append(np.concatenate([y for _, y in batches]))
    return np.stack(features), np.stack(labels)


def forward(encoder: keras.Model, augmentation: keras.Layer | None, spec: tf.TensorSpec) -> Callable[[tf.Tensor], tf.Tensor]:
    """``encoder`` run as at test time on a batch of ``spec`` images (after ``augmentation``, in training mode), traced once.

    Tracing a large backbone's graph takes longer than running it on a few
    hundred small images (EfficientNetV2M at 96 px: about 10 s, against 10 s for
    the 624 test images), so one traced function, for any batch size, serves
    every split and every view an encoder encodes, kept while the encoder lives.
    """
    traced = _FORWARD.setdefault(encoder, {})
    key = (id(augmentation), spec)  # the function holds the augmentation, so its id is not reused while the entry lives
    if key not in traced:
        model = weakref.ref(encoder)  # not the encoder itself: the entry would keep its own key alive

        @tf.function(input_signature=[spec])
        def step(x: tf.Tensor) -> tf.Tensor:
            if augmentation is not None:
                x = augmentation(x, training=True)
            return model()(x, training=False)

        traced[key] = step
    return traced[key]


#: :func:`forward`'s traced functions by encoder.
_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def weights_fingerprint(model: keras.Model) -> str:
    """A hash of every weight of ``model``: two encoders with equal fingerprints compute the same features.

    Computed once per model object (a frozen encoder's weights do not change);
    hashing a large backbone takes a fraction of a second.
    """
    if model in _FINGERPRINTS:
        return _FINGERPRINTS[model]
    digest = hashlib.blake2b(digest_size=16)
    for weight in model.weights:
        digest.update(str(tuple(weight.shape)).encode())  # not its path: a name Keras numbers anew in each model
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    _FINGERPRINTS[model] = digest.hexdigest()
    return _FINGERPRINTS[model]


#: :func:`weights_fingerprint` by encoder, kept while the encoder lives.
_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


#: :func:`encode_shared`'s encodings of one encoder (its fingerprint): ``{key: (features, labels, seconds)}``.
_SHARED: dict[tuple[str, Hashable], tuple[np.ndarray, np.ndarray, float]] = {}


def encode_shared(
    encoder: keras.Model, images: tf.data.Dataset, *, key: Hashable, on_batch: Callable[[int, int], None] | None = None
) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """:func:`encode` of unaugmented ``images`` (one view), reused while the same encoder meets the same ``key`` again.

    ``key`` names what ``images`` holds, in order (a split's image files and
    size); the encoder is named by its :func:`weights_fingerprint`, so a base
    whose weights differ (a random one drawn afresh by another seed) is encoded
    afresh.  Only the latest encoder's encodings are kept, so memory holds one
    model's features whatever the number of models.

    Returns
    -------
    features, labels
        As :func:`encode` returns them.
    seconds : float
        What encoding took when it was computed.
    reused : bool
        Whether it was computed by an earlier call.
    """
    name = (weights_fingerprint(encoder), key)
    if name in _SHARED:
        return (*_SHARED[name], True)
    for old in [k for k in _SHARED if k[0] != name[0]]:
        del _SHARED[old]
    started = time.perf_counter()
    features, labels = encode(encoder, images, on_batch=on_batch)
    _SHARED[name] = (features, labels, time.perf_counter() - started)
    return (*_SHARED[name], False)


def feature_dataset(
    features: np.ndarray, labels: np.ndarray, *, batch_size: int, shuffle: bool, seed: int
) -> tf.data.Dataset:
    """Batches of cached ``(features, labels)`` from :func:`encode`: each image once per epoch, one view drawn at random.

    The order is shuffled afresh every epoch as :func:`xrayutils.pipeline.make_dataset`
    shuffles images (same buffer, same seed), so with one view and no augmentation
    the batches are those of the image pipeline.
    """
    views, n = features.shape[:2]
    features, labels = tf.constant(features), tf.constant(labels)
    order = tf.data.Dataset.range(n)
    if shuffle:
        order = order.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if views > 1:
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).map(lambda r: tf.math.floormod(r, views))
    else:
        draws = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).repeat()
    pairs = tf.data.Dataset.zip(order, draws)
    batches = pairs.map(lambda i, v: (features[v, i], labels[v, i]), num_parallel_calls=tf.data.AUTOTUNE)
    return batches.batch(batch_size).prefetch(tf.data.AUTOTUNE)
