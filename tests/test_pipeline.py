from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import save_image, synthetic_xray
from xrayutils import pipeline


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16"])
def test_every_mode_decodes_to_three_channels_in_0_255(tmp_path, mode):
    array = synthetic_xray(3)
    path = save_image(tmp_path / f"image-{mode.replace(';', '')}.png", array, mode)
    image = pipeline.load_image(str(path), (32, 32)).numpy()
    assert image.shape == (32, 32, 3)
    assert np.allclose(image[..., 0], image[..., 2], atol=1.0)  # grey stays grey
    assert image.min() >= 0.0 and image.max() <= 255.0
    expected = np.asarray(pipeline.tf.image.resize(array[..., None].astype(np.float32), (32, 32)))[..., 0]
    assert np.abs(image[..., 0] - expected).mean() < 2.0  # 16-bit is scaled like 8-bit


def test_decode_error_names_the_problem(tmp_path):
    good = save_image(tmp_path / "good.jpeg", synthetic_xray(1))
    bad = tmp_path / "bad.jpeg"
    bad.write_bytes(b"not an image")
    assert pipeline.decode_error(str(good)) is None
    assert "Unknown image file format" in pipeline.decode_error(str(bad))
    assert "No such file" in pipeline.decode_error(str(tmp_path / "missing.png"))
    tiny = save_image(tmp_path / "tiny.png", synthetic_xray(2, size=(1, 1)))
    assert "1x1" in pipeline.decode_error(str(tiny))  # decodable, but too small to train on


def test_split_is_seeded_stratified_and_disjoint():
    labels = np.array([0] * 50 + [1] * 30)
    train, val = pipeline.split_train_validation(labels, validation_fraction=0.2, seed=42)
    again, _ = pipeline.split_train_validation(labels, validation_fraction=0.2, seed=42)
    other, _ = pipeline.split_train_validation(labels, validation_fraction=0.2, seed=7)
    assert len(val) == 16 and not set(train) & set(val) and len(train) + len(val) == 80
    assert np.array_equal(train, again) and not np.array_equal(train, other)
    assert np.bincount(labels[val]).tolist() == [10, 6]


def test_split_rejects_a_bad_fraction():
    with pytest.raises(ValueError, match="validation_fraction"):
        pipeline.split_train_validation([0, 1], validation_fraction=1.5, seed=0)


def test_dataset_batches_one_hot_labels_and_shuffles_by_seed(tmp_path):
    paths = [str(save_image(tmp_path / f"{i}.jpeg", synthetic_xray(i))) for i in range(5)]
    labels = [0, 1, 2, 0, 1]
    ds = pipeline.make_dataset(paths, labels, image_size=(16, 16), batch_size=2, num_classes=3)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    assert batches[0][0].shape[1:] == (16, 16, 3)
    assert np.array_equal(np.argmax(np.concatenate([b[1] for b in batches]), axis=1), labels)

    def order(seed):
        ds = pipeline.make_dataset(paths, labels, image_size=(8, 8), batch_size=5, shuffle=True, seed=seed)
        return next(iter(ds))[0].numpy().mean(axis=(1, 2, 3)).round(3).tolist()

    assert order(1) == order(1)  # seeded...
    assert order(1) != order(2)  # ...and each seed its own order...
    assert sorted(order(1)) == sorted(order(2))  # ...of the same images


def test_dataset_images_are_the_decoded_files_in_order_every_epoch(tmp_path):
    paths = [str(save_image(tmp_path / f"{i}.jpeg", synthetic_xray(i))) for i in range(3)]
    ds = pipeline.make_dataset(paths, [0, 1, 0], image_size=(16, 16), batch_size=2)
    expected = np.stack([pipeline.load_image(p, (16, 16)).numpy() for p in paths])
    for _ in range(2):  # the second epoch comes from the cache: no augmentation or other change in between
        np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in ds]), expected)


def test_dataset_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="2 paths but 1 labels"):
        pipeline.make_dataset(["a", "b"], [0], image_size=(8, 8), batch_size=1)


def test_split_frames_hold_out_a_stratified_validation_part_of_train_only(data_dir):
    from xrayutils import datasets

    data = datasets.load("covid-xray", task="all", data_dir=data_dir)
    frames = pipeline.split_frames(data, validation_fraction=0.34, seed=1)
    assert set(frames) == {"train", "validation", "test"}
    assert frames["test"]["file"].tolist() == data.subset("test")["file"].tolist()
    assert not set(frames["train"]["file"]) & set(frames["validation"]["file"])
    assert len(frames["train"]) + len(frames["validation"]) == len(data.subset("train"))
    assert set(frames["validation"]["label"]) == {0, 1, 2, 3}  # 5 of 12 images, every class: stratified
    again = pipeline.split_frames(data, validation_fraction=0.34, seed=1)
    assert again["validation"]["file"].tolist() == frames["validation"]["file"].tolist()


def test_make_datasets_one_hot_labels_only_for_a_softmax(data_dir):
    from xrayutils import datasets

    data = datasets.load("covid-xray", task="all", data_dir=data_dir)
    frames = pipeline.split_frames(data, validation_fraction=0.25, seed=1)
    four = pipeline.make_datasets(frames, image_size=16, batch_size=64, num_classes=4, seed=0)
    images, labels = next(iter(four["test"]))
    assert images.shape == (8, 16, 16, 3) and labels.shape == (8, 4)
    two = pipeline.make_datasets(frames, image_size=16, batch_size=64, num_classes=2, seed=0)
    assert next(iter(two["test"]))[1].shape == (8,)


def test_split_counts_has_every_class_in_order_even_an_empty_one():
    frames = {"train": pd.DataFrame({"class_name": ["b", "a", "b"]}), "test": pd.DataFrame({"class_name": ["a"]})}
    counts = pipeline.split_counts(frames, ["a", "b", "c"])
    assert counts.index.tolist() == ["a", "b", "c"] and counts.loc["b", "train"] == 2 and counts.loc["c", "test"] == 0


def test_a_corrupt_jpeg_is_named_without_libjpegs_own_line_on_standard_error(tmp_path, capfd):
    """libjpeg writes "Improper call to JPEG library in state 201" to fd 2 itself; a chapter's page showed it as a stray line."""
    good = save_image(tmp_path / "good.jpeg", synthetic_xray(1)).read_bytes()
    corrupt = tmp_path / "corrupt.jpeg"
    corrupt.write_bytes(good[:200] + bytes(100))
    assert "Invalid JPEG data" in pipeline.decode_error(str(corrupt))
    assert "JPEG library" not in capfd.readouterr().err
    with open(2, "w", closefd=False) as stderr:  # fd 2 works again afterwards
        print("still here", file=stderr, flush=True)
    assert "still here" in capfd.readouterr().err
