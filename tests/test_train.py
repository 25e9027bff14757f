from __future__ import annotations

import dataclasses
import functools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from xrayutils import augmentations, caching, catalogue, chapter_models, devices, jobs, models, predict, train
from xrayutils.protocol import PUBLISHED_AUGMENTATION, TrainingProtocol
from xrayutils.runner import parameters


def tiny_model(image_size: int = 32, num_classes: int = 2) -> keras.Model:
    """A few thousand parameters, with the ``features`` layer the chapters look into."""
    inputs = keras.Input((image_size, image_size, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(8, activation="relu", name="features")(x)
    units, activation = (1, "sigmoid") if num_classes == 2 else (num_classes, "softmax")
    return keras.Model(inputs, layers.Dense(units, activation=activation, name="predictions")(x))


PUBLISHED = PUBLISHED_AUGMENTATION["class-challenge"]
PROTOCOL = TrainingProtocol(study="class-challenge", image_size=32, batch_size=4, num_epochs=2, optimizer="adam",
                            learning_rate=1e-2, validation_fraction=0.25, seed=3)


def _run(splits, tmp_path, name="m", build=None, provenance=None, protocol=PROTOCOL):
    data, frames = splits
    return jobs.train_and_test(
        name, build or (lambda: tiny_model(num_classes=4)), frames, protocol, path=tmp_path / f"{name}.keras", classes=data.classes,
        provenance=provenance or {"parameters": {"a": 1}},
    )


def test_augmentation_has_the_published_transforms_and_a_quarter_degree_shear():
    stack = augmentations.augmentation(**PUBLISHED)
    kinds = [type(layer).__name__ for layer in stack.layers]
    assert kinds == ["RandomRotation", "RandomTranslation", "RandomShear", "RandomZoom", "RandomBrightness", "RandomFlip"]
    shear = stack.layers[2]
    assert shear.x_factor[1] == pytest.approx(np.tan(np.radians(0.25)))
    assert stack.layers[0].factor[1] == pytest.approx(50 / 360)
    assert [type(x).__name__ for x in augmentations.augmentation(rotation_degrees=0, shear_degrees=0, flips=False).layers] == [
        "RandomTranslation", "RandomZoom", "RandomBrightness"
    ]


def test_augmentation_acts_in_training_only():
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    stack = augmentations.augmentation(**PUBLISHED, seed=1)
    assert np.array_equal(np.asarray(stack(images, training=False)), images)
    changed = np.asarray(stack(images, training=True))
    assert not np.allclose(changed, images) and changed.min() >= 0 and changed.max() <= 255


def test_best_epoch_weights_are_restored_at_the_end():
    model = tiny_model()
    callback = train._BestWeights(model)
    first = [w + 1.0 for w in model.get_weights()]
    for epoch, (weights, loss) in enumerate([(first, 0.5), ([w + 2.0 for w in first], 0.9)]):
        model.set_weights(weights)
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"val_loss": loss})
    callback.on_train_end()
    assert callback.best_epoch == 1
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), first))


def test_best_epoch_restores_what_training_changes_and_leaves_a_frozen_base_alone():
    from keras import layers

    base = keras.Sequential([keras.Input((4,)), layers.Dense(3), layers.BatchNormalization()], name="base")
    base.trainable = False
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Dense(1)(layers.BatchNormalization(name="head_norm")(base(inputs, training=False))))
    callback = train._BestWeights(model)
    head = model.get_layer("head_norm")
    assert len(callback.changing) == 6  # the head's batch norm (2 weights, 2 statistics) and Dense; nothing of the base
    callback.on_epoch_begin(0)
    callback.on_epoch_end(0, {"val_loss": 0.5})
    kept = keras.ops.convert_to_numpy(head.moving_mean).copy()
    head.moving_mean.assign(kept + 1.0)  # a later, worse epoch moved the statistics
    callback.on_epoch_begin(1)
    callback.on_epoch_end(1, {"val_loss": 0.9})
    callback.on_train_end()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(head.moving_mean), kept)


def test_same_seed_gives_the_same_model_and_numbers(splits, tmp_path):
    a = _run(splits, tmp_path / "a")
    b = _run(splits, tmp_path / "b")
    assert a.ok and b.ok
    assert a.history["loss"] == b.history["loss"] and a.history["val_loss"] == b.history["val_loss"]
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    assert a.probabilities.shape == (8, 4)
    np.testing.assert_allclose(a.probabilities.sum(axis=1), 1, rtol=1e-5)


def test_history_records_epochs_times_and_the_kept_epoch(splits, tmp_path):
    history = _run(splits, tmp_path).history
    assert len(history["loss"]) == len(history["val_accuracy"]) == len(history["seconds"]) == 2
    assert history["best_epoch"] == 1 + int(np.argmin(history["val_loss"]))
    assert history["fit_seconds"] > 0


def test_a_failing_model_is_reported_not_raised(splits, tmp_path, capsys):
    def broken():
        raise ValueError("cannot build this one")

    result = _run(splits, tmp_path, build=broken)
    assert not result.ok and result.error == "ValueError: cannot build this one"
    assert result.probabilities is None and not (tmp_path / "m.keras").exists()
    assert result.record(None, models.resolve_weights("none"))["error"] == "ValueError: cannot build this one"
    assert "cannot build this one" in capsys.readouterr().err


def test_a_run_that_diverges_to_nan_fails_with_its_reason_and_saves_nothing(splits, tmp_path):
    diverging = dataclasses.replace(PROTOCOL, optimizer="sgd", learning_rate=1e30)  # the first update overflows
    result = _run(splits, tmp_path, protocol=diverging)
    assert not result.ok and result.error.startswith("NotFinite: not finite: loss at epoch(s) ")
    assert "weight tensor(s)" in result.error and "lower the learning rate" in result.error
    assert not (tmp_path / "m.keras").exists()  # never saved, never scored as if it had trained


def test_saved_model_predicts_like_the_trained_one(splits, tmp_path):
    data, frames = splits
    result = _run(splits, tmp_path)
    model, classes = predict.load_model(result.path)
    assert classes == data.classes
    sidecar = json.loads(result.path.with_suffix(".json").read_text())
    assert sidecar["results"]["image_size"] == [32, 32] and sidecar["results"]["history"]["best_epoch"] >= 1
    table = predict.predict_files(model, classes, frames["test"]["path"])
    np.testing.assert_allclose(table[[f"p_{c}" for c in classes]].to_numpy(float), result.probabilities, atol=1e-5)


def test_a_rerun_with_other_parameters_keeps_the_earlier_model(splits, tmp_path):
    _run(splits, tmp_path, provenance={"parameters": {"epochs": 1}})
    _run(splits, tmp_path, provenance={"parameters": {"epochs": 2}})
    kept = sorted(p.name for p in tmp_path.glob("m.previous-*"))
    assert len(kept) == 2 and {p.rsplit(".", 1)[1] for p in kept} == {"json", "keras"}
    assert json.loads((tmp_path / "m.json").read_text())["provenance"]["parameters"] == {"epochs": 2}


def test_bad_arguments_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="must end in .keras"):
        jobs.save_model(tiny_model(), tmp_path / "m.h5", classes=["a", "b"], history={}, provenance={})


def test_model_files_are_named_by_architecture_resolution_and_data():
    assert jobs.model_filename("VGG16", 224, "covid-xray", "two") == "vgg16-res224-covid-xray-two.keras"


def test_brightness_factor_multiplies_each_image_within_the_range():
    layer = augmentations.RandomBrightnessFactor(0.5, 1.3, seed=0)
    images = np.full((16, 4, 4, 3), 100.0, dtype="float32")
    assert np.array_equal(np.asarray(layer(images, training=False)), images)
    out = np.asarray(layer(images, training=True))
    per_image = out.reshape(16, -1)
    assert np.all(per_image.min(axis=1) == per_image.max(axis=1))  # one factor per image
    assert per_image.min() >= 50 and per_image.max() <= 130 and per_image.std() > 0
    assert np.asarray(layer(np.full((2, 2, 2, 3), 250.0), training=True)).max() <= 255
    with pytest.raises(ValueError, match="brightness_range"):
        augmentations.RandomBrightnessFactor(1.3, 0.5)


def test_a_model_not_kept_is_freed_but_its_results_are(splits, tmp_path):
    data, frames = splits
    protocol = dataclasses.replace(PROTOCOL, study="coronahack", num_epochs=1, optimizer="adamax", learning_rate=1e-3, seed=0)
    result = jobs.train_and_test("m", lambda: tiny_model(num_classes=4), frames, protocol, path=tmp_path / "m.keras",
                                  classes=data.classes, provenance={}, keep_model=False)
    assert result.ok and result.model is None and result.path.exists()
    assert result.weight_counts == dict(zip(("total", "trainable"), models.count_parameters(tiny_model(num_classes=4))))
    record = result.record({"accuracy": 1.0}, models.resolve_weights("none"))
    assert record["weight_counts"] == result.weight_counts and record["model_file"] == "m.keras" and not record["pretrained"]
    assert result.probabilities.shape == (8, 4)


def test_accelerator_switches_resolve_auto_to_the_devices_present(monkeypatch):
    monkeypatch.setattr(devices, "gpu_count", lambda: 0)
    assert devices.resolve_switch("auto", "jit_compile") is False  # XLA gains little on a CPU
    assert type(devices.distribution()).__name__ != "MirroredStrategy"
    monkeypatch.setattr(devices, "gpu_count", lambda: 1)
    assert devices.resolve_switch("auto", "jit_compile") is True
    assert devices.resolve_switch(False, "jit_compile") is False  # an explicit choice wins over the device
    assert type(devices.distribution()).__name__ != "MirroredStrategy"  # one GPU: no replicas to mirror
    monkeypatch.undo()
    with pytest.raises(ValueError, match="jit_compile must be"):
        devices.resolve_switch("yes", "jit_compile")
    with pytest.raises(ValueError, match="mixed_precision must be"):
        devices.set_precision("yes")


def test_mixed_precision_computes_in_half_precision_but_predicts_in_float32():
    try:
        low = "float16" if devices.gpu_count() else "bfloat16"
        assert devices.set_precision(True) == f"mixed_{low}"
        model = chapter_models.vgg16_transfer((32, 32, 3))
        assert model.get_layer("features").compute_dtype == low
        assert model.get_layer("predictions").compute_dtype == "float32"
    finally:
        devices.set_precision(False)
    assert keras.mixed_precision.global_policy().name == "float32"


def test_clearing_the_session_keeps_the_precision_keras_would_reset():
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        keras.backend.clear_session()
        assert keras.mixed_precision.global_policy().name == "float32"  # Keras 3: why the helper exists
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        devices.clear_session()
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_train_and_test_caches_a_frozen_base_and_says_so(splits, tmp_path):
    def build():
        return chapter_models.vgg16_transfer((32, 32, 3), num_classes=4)

    cached = dataclasses.replace(PROTOCOL, learning_rate=1e-3, cache_features=True, augmented_views=3)
    run = _run(splits, tmp_path, name="vgg", build=build, protocol=cached)
    assert run.ok, run.error
    assert run.history["cache"]["views"] == 3 and len(run.history["loss"]) == 2
    assert "3 augmented views" in jobs.speed_note(run.history)
    skipped = _run(splits, tmp_path, name="tiny", protocol=cached)  # a model trained whole: no cache
    assert "cache" not in skipped.history and "without feature caching" in jobs.speed_note(skipped.history)


def test_train_models_trains_each_model_of_the_study_and_saves_its_predictions(splits, tmp_path, capsys):
    data, frames = splits
    protocol = dataclasses.replace(PROTOCOL, image_size=72, num_epochs=1, augment=False)
    weights = {name: models.resolve_weights("none") for name in ("AlexNet", "VGG16")}
    builders = {"AlexNet": chapter_models.alexnet, "VGG16": chapter_models.vgg16_transfer}
    runs = jobs.train_models(builders, protocol, data, frames, weights=weights, output_dir=tmp_path, provenance={})
    assert all(run.ok for run in runs.values()) and (tmp_path / "alexnet-res72-covid-xray-all.keras").exists()
    assert (tmp_path / runs["VGG16"].predictions_file).exists()
    assert "AlexNet: kept epoch 1" in capsys.readouterr().out
    table = jobs.runs_table(runs)
    assert table.loc["VGG16", "status"] == "ok" and table.loc["AlexNet", "trainable"] != table.loc["VGG16", "trainable"]
    saved = jobs.chapter_results(runs, {}, weights, protocol, data.classes, frames)
    assert TrainingProtocol(**saved["protocol"]) == protocol and saved["n"]["test"] == len(frames["test"])
    def lenet(input_shape, num_classes):
        raise ValueError("LeNet is not written yet")

    with pytest.raises(RuntimeError, match="every model failed"):
        jobs.train_models({"LeNet": lenet}, protocol, data, frames, weights={"LeNet": weights["VGG16"]}, output_dir=tmp_path,
                           provenance={})


def test_a_chapters_own_model_fit_and_augmentation_are_what_trains_and_what_is_recorded(splits, tmp_path):
    """A head changed on a page, its own optimiser and augmentation: the run trains them and its record says so."""
    data, frames = splits
    protocol = dataclasses.replace(PROTOCOL, image_size=32, num_epochs=2, seeds=(1,))
    calls = []

    def small_head(input_shape, num_classes):
        inputs = keras.Input(input_shape)
        x = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3, name="conv")(layers.Rescaling(1 / 255)(inputs)))  # raw pixels: NaN
        x = layers.Dropout(0.5, name="dropout")(layers.Dense(8, activation="relu", name="features")(x))
        return keras.Model(inputs, chapter_models.classifier(x, num_classes))

    def fit_model(model, train_batches, validation, own, callbacks):
        calls.append(own.seed)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="categorical_crossentropy", metrics=["accuracy"])
        return model.fit(train_batches, validation_data=validation, epochs=own.num_epochs, callbacks=callbacks, verbose=0)

    def flip_only(seed):
        calls.append(f"augmentation {seed}")
        return keras.Sequential([layers.RandomFlip("horizontal", seed=seed)])

    run = jobs.train_models({"Small": small_head}, protocol, data, frames, weights={"Small": models.resolve_weights("none")},
                             fit_model=fit_model, augmentation=flip_only, output_dir=tmp_path, provenance={})["Small"]
    assert run.ok, run.error
    assert calls == ["augmentation 1", 1]
    history = run.history
    assert (history["optimizer"], history["loss_function"]) == ("SGD", "categorical_crossentropy")
    assert history["learning_rate"] == pytest.approx(0.01)
    assert "features: Dense(8, relu)" in history["layers"] and "dropout: Dropout(0.5)" in history["layers"]
    assert len(history["loss"]) == 2 and history["best_epoch"] in (1, 2)  # the package's callbacks reached the page's fit
    record = run.record({}, models.resolve_weights("none"))
    assert record["history"]["layers"] == history["layers"] and record["weight_counts"]["total"] == run.model.count_params()
    assert json.loads(run.path.with_suffix(".json").read_text())["results"]["history"]["layers"] == history["layers"]  # its sidecar

    def forgot_to_return(model, train_batches, validation, own, callbacks):
        fit_model(model, train_batches, validation, own, callbacks)

    failed = jobs.train_and_test("Small", lambda: small_head((32, 32, 3), 4), frames, protocol, path=None, classes=data.classes,
                                  provenance={}, fit_model=forgot_to_return)
    assert failed.error == "TypeError: fit_model must return what model.fit returns (a History), got NoneType"


def test_seeds_change_initial_weights_and_order_and_nothing_else(splits, tmp_path, capsys):
    data, frames = splits
    protocol = dataclasses.replace(PROTOCOL, image_size=72, num_epochs=1, augment=False, learning_rate=1e-4, seeds=(1, 2))
    weights = {"AlexNet": models.resolve_weights("none")}
    builders = {"AlexNet": chapter_models.alexnet}
    run = jobs.train_models(builders, protocol, data, frames, weights=weights, output_dir=tmp_path, provenance={})["AlexNet"]
    assert run.ok and run.seeds == [1, 2] and "2 seeds" in capsys.readouterr().out
    one, two = run.by_seed[1].probabilities, run.by_seed[2].probabilities
    assert not np.allclose(one, two)  # the seeds trained different models...
    np.testing.assert_allclose(run.probabilities, (one + two) / 2)  # ...whose mean is the ensemble
    assert sorted(p.name for p in tmp_path.glob("*.keras")) == ["alexnet-res72-covid-xray-all.keras"]  # the first seed's
    np.testing.assert_allclose(run.model.predict(np.zeros((1, 72, 72, 3)), verbose=0),
                               keras.models.load_model(run.path).predict(np.zeros((1, 72, 72, 3)), verbose=0), atol=1e-6)
    # a seed's run is the same as a chapter trained with that seed alone: the split and the rest are untouched
    alone = jobs.train_models(builders, dataclasses.replace(protocol, seeds=(2,)), data, frames, weights=weights,
                               output_dir=tmp_path / "alone", provenance={})["AlexNet"]
    np.testing.assert_array_equal(alone.probabilities, two)
    saved = jobs.chapter_results({"AlexNet": run}, {}, weights, protocol, data.classes, frames)
    entry = saved["models"]["AlexNet"]
    assert set(entry["seeds"]) == {"1", "2"} and entry["model_seed"] == 1 and saved["protocol"]["seed"] == PROTOCOL.seed
    assert entry["seed_spread"]["accuracy"]["n"] == 2 and entry["fit_seconds"] == run.fit_seconds
    assert jobs.runs_table({"AlexNet": run}).loc["AlexNet", "seeds"] == 2


def test_balanced_class_weights_reach_the_loss(splits, tmp_path):
    data, frames = splits
    plain = _run(splits, tmp_path / "a", build=lambda: tiny_model(num_classes=4), protocol=dataclasses.replace(PROTOCOL, augment=False))
    counts = np.bincount(frames["train"]["label"], minlength=4)
    assert counts.min() != counts.max()  # imbalanced, so the weights differ from 1
    balanced = dataclasses.replace(PROTOCOL, augment=False, class_weight="balanced")
    weighted = _run(splits, tmp_path / "b", build=lambda: tiny_model(num_classes=4), protocol=balanced)
    assert weighted.history["class_weight"] == {str(c): round(w, 4) for c, w in balanced.class_weights(frames["train"]["label"], 4).items()}
    assert "class_weight" not in plain.history
    assert weighted.history["loss"][0] != pytest.approx(plain.history["loss"][0], rel=1e-6)
    assert weighted.history["val_loss"] != plain.history["val_loss"]


def test_class_weights_become_sample_weights_for_one_hot_and_binary_labels():
    images = tf.zeros((4, 2, 2, 3))
    binary = tf.data.Dataset.from_tensor_slices((images, tf.constant([0.0, 1.0, 1.0, 0.0]))).batch(2)
    one_hot = tf.data.Dataset.from_tensor_slices((images, tf.one_hot([2, 0, 1, 2], 3))).batch(2)
    weights = lambda ds: np.concatenate([w.numpy() for _, _, w in train.with_class_weights(ds, {0: 0.5, 1: 2.0, 2: 3.0})])  # noqa: E731
    np.testing.assert_allclose(weights(binary), [0.5, 2.0, 2.0, 0.5])
    np.testing.assert_allclose(weights(one_hot), [3.0, 0.5, 2.0, 3.0])


def test_the_cpu_profile_chapter03_protocol_trains_each_of_its_models(data_dir, tmp_path):
    """Chapter 03 as the cpu profile sets it, on generated images, shrunk in image size, epochs, seeds and models.

    ResNet34 trained whole; VGG16 and EfficientNetV2S (whose stochastic depth is
    dropout inside the frozen base) as probes, each base one random draw that both
    seeds load and encode once.
    """
    notebook = parameters.ROOT / "notebooks" / "03_coronahack_models.ipynb"
    chosen = parameters.with_defaults(notebook, parameters.resolve_parameters(notebook, "cpu", {}))
    assert chosen["model_names"] == list(catalogue.published("coronahack")) and not chosen["fine_tune"]  # all nine, backbones frozen
    protocol = TrainingProtocol.from_parameters({**chosen, "image_size": 75, "num_epochs": 1, "seeds": [1, 2]}, study="coronahack")
    protocol = dataclasses.replace(protocol, model_settings={"ResNet34": {**protocol.model_settings["ResNet34"], "num_epochs": 1}})
    data, frames = train.load_split("coronahack", "two", protocol, data_dir)
    names = ["ResNet34", "VGG16", "EfficientNetV2S"]
    weights = {name: models.one_random_draw(name, models.starting_weights(name, "none"), protocol.input_shape, seed=42, folder=tmp_path)
               for name in names}
    builders = {name: chapter_models.resnet34 if name == "ResNet34"
                else functools.partial(chapter_models.backbone_classifier, name, fine_tune=protocol.fine_tune) for name in names}
    runs = jobs.train_models(builders, protocol, data, frames, weights=weights, output_dir=tmp_path, provenance={}, keep_models=False)
    expected_weights = protocol.class_weights(frames["train"]["label"].to_numpy(), 2)
    assert expected_weights and protocol.batchnorm_momentum is not None  # what the cpu profile sets for training from scratch
    for name, run in runs.items():
        assert run.ok, f"{name}: {run.error}"
        assert run.history["class_weight"] == {str(c): round(w, 4) for c, w in expected_weights.items()}
        saved = keras.models.load_model(run.path)
        momenta = {layer.momentum for layer in caching.all_layers(saved) if isinstance(layer, layers.BatchNormalization)}
        assert momenta == {protocol.batchnorm_momentum}, name
        cached = [seed_run.history.get("cache") for seed_run in run.by_seed.values()]
        if name == "ResNet34":
            assert cached == [None, None] and run.history["augmented"]  # whole, on augmented images
        else:
            assert [c["reused"] for c in cached] == [False, True] and not run.history["augmented"], name


def test_a_class_left_without_test_images_stops_the_chapter_naming_class_split_and_file(data_dir):
    for image in (data_dir / "covid-xray" / "two" / "test" / "covid").iterdir():
        image.write_bytes(b"not an image")
    protocol = TrainingProtocol(study="class-challenge", image_size=32, batch_size=2, num_epochs=1, optimizer="adam",
                                learning_rate=1e-3, validation_fraction=0.2, seed=0, weights="none")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"no covid image left in the test split .*covid-test-0"):
        train.load_split("covid-xray", "two", protocol, data_dir)


def test_feature_caching_reports_how_far_encoding_is(monkeypatch):
    lines = []
    monkeypatch.setattr(train.progress, "report", lines.append)
    reporter = train.EpochProgress("VGG16, seed 1", epochs=40)
    for done in (1, 2, 4):
        reporter.encoding(done, 4)
    assert lines[0].startswith("VGG16, seed 1: encoding the training images, batch 1/4, 0:00 so far, about 0:0")
    assert lines[-1].endswith("batch 4/4, 0:00 so far, about 0:00 left")
    reporter.encoding(1, 0)  # a dataset that does not know its length: no estimate
    assert lines[-1].endswith("batch 1/?, 0:00 so far")


def test_asking_for_xla_turns_op_determinism_off_and_the_page_says_so():
    from tensorflow.python.framework.config import is_op_determinism_enabled

    try:
        train.set_seed(0, jit_compile=True)  # Keras would otherwise refuse XLA and train without it, silently
        assert not is_op_determinism_enabled()
        assert "XLA on (so TensorFlow's ops were not made deterministic" in jobs.speed_note({"jit_compile": True})
    finally:
        train.set_seed(0)
    assert is_op_determinism_enabled()
    assert jobs.speed_note({"jit_compile": False}).endswith("XLA off")
