from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from keras import layers

from xrayutils import augmentations, caching, chapter_models, datasets, jobs, pipeline, train
from xrayutils.protocol import TrainingProtocol


def frozen_base_model(image_size: int = 32) -> keras.Model:
    """A small frozen conv base, then Flatten, Dense(8) and a sigmoid: the shape of the VGG16 transfer model."""
    base = keras.Sequential([layers.Conv2D(4, 3, strides=2, activation="relu"), layers.Conv2D(4, 3, strides=2)], name="base")
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = base(layers.Rescaling(1 / 255)(inputs), training=False)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(8, activation="relu", name="features")(x)
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid", name="predictions")(x))


@pytest.fixture
def frames(data_dir):
    data = datasets.load("covid-xray", task="two", data_dir=data_dir)
    return pipeline.split_frames(data, validation_fraction=0.25, seed=0)


def test_split_frozen_cuts_where_training_starts_and_shares_the_layers():
    model = frozen_base_model()
    encoder, head = caching.split_frozen(model)
    assert encoder.output_shape == (None, 196) and not encoder.trainable_weights
    assert [w.path for w in head.trainable_weights] == [w.path for w in model.trainable_weights]
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(head(encoder(images)), model(images), atol=1e-6)


def test_split_frozen_finds_nothing_to_cache_in_models_trained_whole():
    assert caching.split_frozen(chapter_models.alexnet((72, 72, 3), 4)) is None
    assert caching.split_frozen(chapter_models.resnet34((32, 32, 3), 2)) is None


def test_split_frozen_reaches_through_the_region_mask():
    masked = chapter_models.masked(frozen_base_model(), "border", 0.25)
    encoder, head = caching.split_frozen(masked)
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(head(encoder(images)), masked(images), atol=1e-6)


def test_a_random_layer_in_the_frozen_part_is_refused():
    inputs = keras.Input((8, 8, 3))
    frozen = layers.Conv2D(2, 3, trainable=False)(layers.Dropout(0.5)(inputs))
    model = keras.Model(inputs, layers.Dense(1)(layers.Flatten()(frozen)))
    with pytest.raises(ValueError, match="random in training"):
        caching.split_frozen(model)


def test_each_image_comes_once_per_epoch_as_one_of_its_views():
    views, n = 3, 7
    features = np.stack([np.arange(n) + 100 * v for v in range(views)]).astype("float32")[..., None]
    labels = np.tile(np.arange(n, dtype="float32"), (views, 1))
    ds = caching.feature_dataset(features, labels, batch_size=3, shuffle=True, seed=0)
    seen_views = set()
    for _ in range(4):
        x, y = (np.concatenate(a) for a in zip(*[(xb.numpy()[:, 0], yb.numpy()) for xb, yb in ds]))
        assert sorted(y) == list(range(n))  # every image once
        np.testing.assert_array_equal(x % 100, y)  # a view of that image
        seen_views |= set((x // 100).astype(int))
    assert seen_views == {0, 1, 2}


def test_augmented_views_differ_and_one_view_without_augmentation_is_required(frames):
    encoder, _ = caching.split_frozen(frozen_base_model())
    images = pipeline.make_dataset(frames["train"]["path"], frames["train"]["label"], image_size=(32, 32), batch_size=2)
    calls = []
    features, labels = caching.encode(encoder, images, views=2, augmentation=augmentations.augmentation(seed=0),
                                      on_batch=lambda done, total: calls.append((done, total)))
    assert features.shape == (2, len(frames["train"]), 196) and labels.shape == (2, len(frames["train"]))
    batches = -(-len(frames["train"]) // 2)
    assert calls == [(done, 2 * batches) for done in range(1, 2 * batches + 1)]  # every batch of both views, counted on
    assert not np.allclose(features[0], features[1])
    with pytest.raises(ValueError, match="views=1"):
        caching.encode(encoder, images, views=2)


def test_head_trained_on_cached_features_predicts_as_the_model_trained_on_images(frames):
    """Same initial weights, same unaugmented batches in the same shuffled order: same model."""
    train.set_seed(0)
    ordinary = frozen_base_model()
    cached = frozen_base_model()
    cached.set_weights(ordinary.get_weights())
    protocol = TrainingProtocol(study="class-challenge", image_size=32, batch_size=2, num_epochs=3, optimizer="adam",
                                learning_rate=1e-2, validation_fraction=0.25, seed=5, augment=False)

    def images(shuffle: bool):
        return pipeline.make_datasets(frames, image_size=32, batch_size=2, num_classes=2, seed=5, shuffle_train=shuffle)

    train.set_seed(0)
    a = images(shuffle=True)
    history_a = train.fit(ordinary, a["train"], a["validation"], protocol, verbose=0)
    train.set_seed(0)
    b = images(shuffle=False)
    history_b = train.fit(cached, b["train"], b["validation"], dataclasses.replace(protocol, cache_features=True), verbose=0)

    assert history_b["cache"]["views"] == 1
    np.testing.assert_allclose(history_a["loss"], history_b["loss"], rtol=1e-4)
    np.testing.assert_allclose(history_a["val_loss"], history_b["val_loss"], rtol=1e-4)
    test = a["test"].map(lambda x, y: x)
    np.testing.assert_allclose(ordinary.predict(test, verbose=0), cached.predict(test, verbose=0), atol=1e-5)
    assert not np.allclose(ordinary.get_weights()[-2], frozen_base_model().get_weights()[-2])  # it did train


def test_caching_a_model_without_a_frozen_base_is_an_error(frames):
    ds = pipeline.make_datasets(frames, image_size=72, batch_size=2, num_classes=2, seed=0)
    with pytest.raises(ValueError, match="no frozen base"):
        protocol = TrainingProtocol(study="class-challenge", image_size=72, batch_size=2, num_epochs=1, optimizer="adam",
                                    learning_rate=1e-3, validation_fraction=0.25, seed=0, cache_features=True)
        train.fit(chapter_models.alexnet((72, 72, 3), 2), ds["train"], ds["validation"], protocol)


def test_an_encoder_is_traced_once_for_every_split_and_batch_size_and_not_kept_alive(frames):
    """Tracing a large backbone costs as much as encoding the test split: once per encoder, whatever the last batch's size."""
    import gc
    import weakref

    encoder, _ = caching.split_frozen(frozen_base_model())
    used = []
    for split, batch_size in (("train", 2), ("validation", 3), ("test", 5)):
        images = pipeline.make_dataset(frames[split]["path"], frames[split]["label"], image_size=(32, 32), batch_size=batch_size)
        features, _ = caching.encode(encoder, images)
        assert features.shape == (1, len(frames[split]), 196)
        used += caching._FORWARD[encoder].values()
    step = used[0]
    assert all(f is step for f in used) and step.experimental_get_tracing_count() == 1
    alive = weakref.ref(encoder)
    del encoder, step
    gc.collect()  # frees the model, and with it split_frozen's entry for it
    gc.collect()  # then the encoder
    assert alive() is None  # the traced function does not hold the encoder


def test_a_frozen_base_is_encoded_once_for_every_run_that_starts_from_its_weights(frames):
    """Seeds sharing a frozen base share its encoding; a base with other weights, or other images, is encoded afresh."""
    ds = pipeline.make_datasets(frames, image_size=32, batch_size=2, num_classes=2, seed=0, shuffle_train=False)
    train.set_seed(0)
    model = frozen_base_model()
    encoder, _ = caching.split_frozen(model)
    first = caching.encode_shared(encoder, ds["train"], key="train")
    again = caching.encode_shared(encoder, ds["train"], key="train")
    assert not first[3] and again[3] and again[0] is first[0]
    assert not caching.encode_shared(encoder, ds["test"], key="test")[3]  # other images
    other = frozen_base_model()  # another random draw
    encoder_b, _ = caching.split_frozen(other)
    fresh = caching.encode_shared(encoder_b, ds["train"], key="train")
    assert not fresh[3] and not np.allclose(fresh[0], first[0])
    assert not caching.encode_shared(encoder, ds["train"], key="train")[3]  # only the latest base's encodings are kept


def test_training_seeds_of_a_frozen_base_share_its_encoding_and_predict_as_the_whole_model(frames):
    protocol = TrainingProtocol(study="coronahack", image_size=32, batch_size=2, num_epochs=2, optimizer="adam", learning_rate=1e-2,
                                validation_fraction=0.25, seed=5, augment=False, cache_features=True, seeds=(1, 2))
    weights = frozen_base_model().get_weights()

    def build():  # one frozen base for both seeds, as from ImageNet or a drawn file; the head drawn by each seed
        model = frozen_base_model()
        model.get_layer("base").set_weights(weights[:4])
        return model

    runs = [jobs.train_and_test("tiny", build, frames, protocol.for_seed(s), path=None, classes=["covid", "normal"], provenance={},
                                 keep_model=True) for s in (1, 2)]
    assert [r.history["cache"]["reused"] for r in runs] == [False, True]
    assert not np.allclose(runs[0].probabilities, runs[1].probabilities)  # the heads differ
    images = pipeline.make_datasets(frames, image_size=32, batch_size=2, num_classes=2, seed=0)["test"].map(lambda x, y: x)
    whole = runs[1].model.predict(images, verbose=0)[:, 0]
    np.testing.assert_allclose(runs[1].probabilities[:, 1], whole, atol=1e-5)


def test_a_later_seed_reuses_the_frozen_base_and_starts_from_the_head_a_fresh_build_would(frames):
    """With ``reuse_base`` seed 2 trains the model seed 1 left, its head (weights, statistics, dropout seed) drawn anew:
    built once, and the same numbers as seed 2 built afresh (as on another engine, or run alone)."""
    protocol = TrainingProtocol(study="coronahack", image_size=32, batch_size=2, num_epochs=2, optimizer="adam", learning_rate=1e-2,
                                validation_fraction=0.25, seed=5, augment=False, cache_features=True, seeds=(1, 2))
    weights = frozen_base_model().get_weights()[:4]
    built = []

    def build():
        base = keras.Sequential([layers.Conv2D(4, 3, strides=2, activation="relu"), layers.Conv2D(4, 3, strides=2)], name="base")
        base.trainable = False
        inputs = keras.Input((32, 32, 3), name="image")
        x = layers.Flatten()(base(layers.Rescaling(1 / 255)(inputs), training=False))
        x = layers.Dropout(0.5)(layers.BatchNormalization(name="probe_norm")(layers.Dense(8, activation="relu")(x)))
        model = keras.Model(inputs, layers.Dense(1, activation="sigmoid", name="predictions")(x))
        base.set_weights(weights)
        built.append(model)
        return model

    def run(seed: int, reuse: bool) -> jobs.ModelRun:
        return jobs.train_and_test("tiny", build, frames, protocol.for_seed(seed), path=None, classes=["covid", "normal"],
                                   provenance={}, keep_model=False, reuse_base=reuse)

    together = [run(1, True), run(2, True)]
    assert len(built) == 1  # seed 2 trained the model seed 1 left
    jobs._BUILT.clear()
    alone = run(2, True)
    assert len(built) == 2
    np.testing.assert_array_equal(together[1].probabilities, alone.probabilities)
    assert not np.allclose(together[0].probabilities, together[1].probabilities)  # each seed its own head
    run(1, False), run(2, False)
    assert len(built) == 4  # without reuse_base every run builds its model


def test_a_models_split_is_made_once_while_its_trainable_flags_stay_and_does_not_keep_it_alive():
    """Training and testing share one encoder (traced once); unfreezing the base makes a new split; a dropped model is freed."""
    import gc
    import weakref

    model = frozen_base_model()
    encoder, head = caching.split_frozen(model)
    assert caching.split_frozen(model) == (encoder, head)
    model.get_layer("base").trainable = True
    assert caching.split_frozen(model) is None  # the whole model trains now
    model.get_layer("base").trainable = False
    assert caching.split_frozen(model)[0] is not encoder  # made again: the flags changed in between
    alive = weakref.ref(model)
    del model, encoder, head
    gc.collect()
    assert alive() is None
