from __future__ import annotations

import keras
import numpy as np
import pytest

from xrayutils import catalogue, chapter_models, models


def test_vgg16_binary_has_the_published_parameter_counts():
    model = chapter_models.vgg16_transfer((224, 224, 3), num_classes=2)
    assert models.count_parameters(model) == (21_137_729, 6_423_041)
    assert model.output_shape == (None, 1)


def test_alexnet_four_classes_has_the_published_parameter_count():
    model = chapter_models.alexnet((224, 224, 3), num_classes=4)
    assert model.count_params() == 46_768_900
    assert model.output_shape == (None, 4)


def test_auto_weights_fall_back_visibly_when_imagenet_is_unavailable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setattr(models, "_OFFLINE", [])

    def offline(*args, **kwargs):
        print("Downloading data from https://storage.googleapis.com/vgg16.h5")
        raise Exception("URL fetch failure on https://storage.googleapis.com/vgg16.h5: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(models.keras.applications, "VGG16", offline)
    with pytest.warns(UserWarning, match="falling back to random initialisation"):
        weights = models.resolve_weights("auto")
    assert not weights.pretrained
    assert weights.description == "random initialisation (auto: ImageNet weights could not be downloaded: no network)"
    assert "https://" not in capsys.readouterr().out  # the page does not show the URL Keras tried
    monkeypatch.setattr(models.keras.applications, "Xception", lambda **kw: pytest.fail("asked the network again"))
    with pytest.warns(UserWarning, match="falling back"):  # no network for one backbone: none for the next
        assert models.resolve_weights("auto", architecture="Xception").description == weights.description


def test_a_download_failure_other_than_no_network_keeps_its_first_line_without_the_url():
    error = OSError("URL fetch failure on https://example.org/w.h5: 403 -- Forbidden\nmore detail")
    assert models.download_failure(error) == "ImageNet weights could not be downloaded (URL fetch failure: 403 -- Forbidden)"


def test_auto_weights_use_the_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / catalogue.network("VGG16").imagenet_file).write_bytes(b"")
    assert models.resolve_weights("auto").keras_arg == "imagenet"


def test_weights_file_is_really_loaded(tmp_path):
    """Save a base's weights, build a model from that file, and find the same numbers in it."""
    source = models.keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16-notop.weights.h5"
    source.save_weights(path)
    weights = models.resolve_weights(str(path))
    assert weights.pretrained and str(path) in weights.description
    model = chapter_models.vgg16_transfer((32, 32, 3), num_classes=4, weights=weights.keras_arg)
    loaded = model.get_layer("vgg16").get_weights()
    fresh = chapter_models.vgg16_transfer((32, 32, 3), num_classes=4).get_layer("vgg16").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(loaded, source.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(fresh, source.get_weights()))


def test_bad_weights_choice_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="imagenet', 'none', 'auto'"):
        models.resolve_weights(str(tmp_path / "missing.h5"))


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="num_classes"):
        chapter_models.alexnet((72, 72, 3), num_classes=1)


#: Each backbone's preprocessing module in keras.applications, as Keras' documentation pairs them (written here, not read
#: from the catalogue, so that a backbone given another's scaling there or on the page fails).
KERAS_PREPROCESSING = {"Xception": "xception", "VGG16": "vgg16", "VGG19": "vgg19", "ResNet101V2": "resnet_v2",
                       "InceptionV3": "inception_v3", "InceptionResNetV2": "inception_resnet_v2",
                       "EfficientNetV2S": "efficientnet_v2", "EfficientNetV2M": "efficientnet_v2"}


@pytest.mark.parametrize("name", list(catalogue.BACKBONES))
def test_every_backbone_builds_with_pooling_its_preprocessing_and_one_sigmoid(name):
    model = chapter_models.backbone_classifier(name, (75, 75, 3), num_classes=2)
    assert model.output_shape == (None, 1)
    assert len(model.get_layer("features").output.shape) == 2  # global average pooling
    base = next(layer for layer in model.layers if isinstance(layer, models.keras.Model))
    assert base.trainable and base.trainable_weights  # fine-tuned whole, unlike chapter 01's frozen base
    images = np.random.default_rng(0).uniform(0, 255, (2, 75, 75, 3)).astype("float32")
    preprocess = getattr(keras.applications, KERAS_PREPROCESSING[name]).preprocess_input
    expected = keras.layers.GlobalAveragePooling2D()(base(preprocess(images.copy()), training=False))
    features = keras.Model(model.inputs, model.get_layer("features").output)(images, training=False)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)  # the backbone sees its own scaling of [0, 255]


def test_vgg16_backbone_has_the_keras_parameter_count_plus_one_unit():
    # keras.applications.VGG16(include_top=False) holds 14,714,688 parameters; Dense(1) on 512 features adds 513
    assert models.count_parameters(chapter_models.backbone_classifier("VGG16", (150, 150, 3)))[0] == 14_715_201


def test_resnet34_is_the_standard_resnet34_with_a_5x5_stem():
    # torchvision's resnet34 without its fc layer: 21,284,672; a 5x5 stem instead of 7x7 saves 4,608;
    # Dense(1) adds 513. Keras also counts BatchNorm's moving mean and variance (2 x 8,512), not trainable.
    total, trainable = models.count_parameters(chapter_models.resnet34((150, 150, 3), num_classes=2))
    assert trainable == 21_284_672 - 4_608 + 513
    assert total == trainable + 2 * 8_512


def test_auto_weights_try_the_named_architecture(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(models, "_OFFLINE", [])
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / catalogue.network("EfficientNetV2S").imagenet_file).write_bytes(b"")
    assert models.resolve_weights("auto", architecture="EfficientNetV2S").pretrained
    tried = []
    monkeypatch.setattr(models.keras.applications, "Xception", lambda **kw: tried.append(kw) or (_ for _ in ()).throw(OSError("offline")))
    with pytest.warns(UserWarning, match="falling back"):
        assert not models.resolve_weights("auto", architecture="Xception").pretrained
    assert tried and tried[0]["weights"] == "imagenet"


def test_coronahack_model_names_are_checked():
    with pytest.raises(ValueError, match="unknown backbone 'ResNet50'"):
        models.coronahack_model("ResNet50", (75, 75, 3), 2, models.resolve_weights("none"))
    assert models.coronahack_model("ResNet34", (75, 75, 3), 2, models.resolve_weights("none")).name == "resnet34"


@pytest.mark.parametrize(("keep", "kept_corner", "kept_center"), [("border", 1.0, 0.0), ("center", 0.0, 1.0)])
def test_region_mask_keeps_only_its_region(keep, kept_corner, kept_center):
    mask = chapter_models.RegionMask(keep, 0.25)
    out = mask(np.full((1, 8, 12, 3), 200.0, np.float32)).numpy()
    assert out[0, 0, 0, 0] == 200.0 * kept_corner and out[0, 4, 6, 2] == 200.0 * kept_center
    assert out[0, 1, :, 0].tolist() == [200.0 * kept_corner] * 12  # rows 0-1 (2 = 8 x 0.25) are border
    assert out[0, 2, 3, 0] == 200.0 * kept_center  # columns 3-8 (3 = 12 x 0.25) are centre
    with pytest.raises(ValueError, match="keep"):
        chapter_models.RegionMask("lungs", 0.2)
    with pytest.raises(ValueError, match="border_fraction"):
        chapter_models.RegionMask("border", 0.5)


def test_masked_model_saves_and_loads_with_its_mask(tmp_path):
    import keras

    masked = chapter_models.masked(chapter_models.resnet34((32, 32, 3), 2), "border", 0.2)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    masked.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), masked.predict(images, verbose=0), rtol=1e-5)
    # what the centre holds cannot change the prediction of a model that sees only the border
    changed = images.copy()
    changed[:, 10:22, 10:22] = 0.0
    np.testing.assert_allclose(loaded.predict(changed, verbose=0), loaded.predict(images, verbose=0), rtol=1e-6)


def test_batchnorm_momentum_reaches_every_batch_normalisation_layer_nested_ones_too():
    inner = chapter_models.alexnet((72, 72, 3), 2)
    outer = keras.Sequential([keras.Input((72, 72, 3)), inner])
    assert models.set_batchnorm_momentum(outer, 0.9) == 5  # AlexNet's five convolutions
    assert {layer.momentum for layer in inner.layers if isinstance(layer, keras.layers.BatchNormalization)} == {0.9}


def _keras_named_weights_file(model: keras.Model, path) -> None:
    """Write ``model``'s weights as Keras' ImageNet files are written (the legacy HDF5 layout Keras 3 still loads by that name)."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, model)


def test_a_weights_folder_gives_each_backbone_its_own_file_and_a_missing_one_falls_back_visibly(tmp_path):
    """A copy of ~/.keras/models made here: VGG16's file is there, Xception's is not."""
    keras.utils.set_random_seed(7)
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    vgg16_file = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"  # as Keras caches it
    _keras_named_weights_file(source, tmp_path / vgg16_file)
    weights = models.resolve_weights(str(tmp_path), architecture="VGG16")
    assert weights.pretrained and weights.description == f"file {vgg16_file} from the folder {tmp_path.resolve()}"

    keras.utils.set_random_seed(8)  # other initial weights: only the file can make the two agree
    images = np.random.default_rng(0).uniform(-100, 150, (3, 32, 32, 3)).astype("float32")
    for model in (chapter_models.backbone_classifier("VGG16", (32, 32, 3), 2, weights.keras_arg),
                  chapter_models.vgg16_transfer((32, 32, 3), 2, weights.keras_arg)):
        np.testing.assert_array_equal(model.get_layer("vgg16").predict(images, verbose=0), source.predict(images, verbose=0))

    with pytest.warns(UserWarning, match="no xception_weights_tf_dim_ordering_tf_kernels_notop.h5 in .*; falling back"):
        missing = models.resolve_weights(str(tmp_path), architecture="Xception")
    assert not missing.pretrained
    assert "Xception's file xception_weights_tf_dim_ordering_tf_kernels_notop.h5 is not in" in missing.description
    assert not models.starting_weights("ResNet34", str(tmp_path)).pretrained  # from scratch whatever the folder holds


def _bn_net(fused: bool) -> keras.Model:
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.5)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.BatchNormalization()(x)  # 2-D: Keras' own computation, fused or not
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    return models.with_fused_batch_norm(model) if fused else model


def test_fused_batch_norm_trains_and_predicts_as_keras_batch_norm_does():
    keras.utils.set_random_seed(0)
    plain = _bn_net(fused=False)
    fused = _bn_net(fused=True)
    kinds = [type(layer).__name__ for layer in fused.layers]
    assert kinds.count("FusedBatchNormalization") == 1 and kinds.count("BatchNormalization") == 1  # the 2-D one stays Keras' own
    fused.set_weights(plain.get_weights())
    images = np.random.default_rng(0).normal(size=(8, 6, 6, 3)).astype("float32")
    labels = np.arange(8, dtype="float32")[:, None]
    np.testing.assert_allclose(fused(images, training=True), plain(images, training=True), atol=1e-5)  # batch statistics
    for model in (plain, fused):
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.fit(images, labels, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for ours, theirs in zip(fused.get_weights(), plain.get_weights()):  # the gradient and the moving statistics alike
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    np.testing.assert_allclose(fused.predict(images, verbose=0), plain.predict(images, verbose=0), atol=1e-5)


@pytest.mark.parametrize(("study", "name", "size"), [("coronahack", "ResNet34", 32), ("class-challenge", "AlexNet", 72)])
def test_the_models_trained_whole_run_fused_batch_norm_and_load_back_with_it(tmp_path, study, name, size):
    from xrayutils import predict

    model = models.build(study, name, (size, size, 3), 2, models.resolve_weights("none"))
    assert not [layer for layer in model.layers if type(layer) is keras.layers.BatchNormalization]
    assert models.set_batchnorm_momentum(model, 0.9) > 0  # still batch normalisation for everything that looks for it
    keras_own = models.build(study, name, (size, size, 3), 2, models.resolve_weights("none"), fused_batch_norm=False)
    assert len(keras_own.get_weights()) == len(model.get_weights())
    model.save(tmp_path / "m.keras")
    loaded, _ = predict.load_model(tmp_path / "m.keras")
    images = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    assert any(isinstance(layer, models.FusedBatchNormalization) for layer in loaded.layers)
    without = _bn_net(fused=False)
    plain = keras.Model(without.input, without.layers[1].output)  # the convolution alone: no batch norm to swap
    assert models.with_fused_batch_norm(plain) is plain


def test_a_frozen_random_backbone_is_one_draw_that_every_training_seed_loads(tmp_path):
    random = models.resolve_weights("none")
    drawn = models.one_random_draw("VGG16", random, (32, 32, 3), seed=42, folder=tmp_path)
    assert drawn.keras_arg and not drawn.pretrained and "drawn once (seed 42)" in drawn.description
    assert models.one_random_draw("VGG16", drawn, (32, 32, 3), seed=42, folder=tmp_path) == drawn  # a file is kept as it is
    assert models.one_random_draw("ResNet34", random, (32, 32, 3), seed=42, folder=tmp_path) is random  # no backbone to freeze
    built = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        built.append(models.coronahack_model("VGG16", (32, 32, 3), 2, drawn, fine_tune=False))
    (a, b) = built
    for wa, wb in zip(a.get_layer("vgg16").get_weights(), b.get_layer("vgg16").get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.allclose(a.get_layer("predictions").get_weights()[0], b.get_layer("predictions").get_weights()[0])
    assert not a.get_layer("vgg16").trainable_weights and a.get_layer("probe_norm").trainable_weights
    frozen = chapter_models.backbone_classifier("InceptionV3", (75, 75, 3), 2, fine_tune=False)
    assert models.with_fused_batch_norm(frozen) is frozen  # nothing that trains to fuse: no clone of the whole backbone
