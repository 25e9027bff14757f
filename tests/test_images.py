"""The one Pillow reader: every mode to ``[0, 1]``, high bit depths scaled as in training."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import save_image, synthetic_xray
from xrayutils import images


def test_a_16_bit_png_reads_like_its_8_bit_original_not_clipped(tmp_path):
    array = synthetic_xray(0)
    eight = images.read(save_image(tmp_path / "eight.png", array, "L"), gray=True)
    sixteen = images.read(save_image(tmp_path / "sixteen.png", array, "I;16"), gray=True)
    assert sixteen.dtype == np.float32 and sixteen.shape == array.shape
    np.testing.assert_allclose(sixteen, eight, atol=1e-6)  # 257 * v / 65535 == v / 255
    assert sixteen.mean() < 0.9  # Pillow's own convert("L") would make it nearly white


def test_12_bit_data_in_16_bits_stays_dark_as_the_model_sees_it(tmp_path):
    path = tmp_path / "twelve.png"
    Image.fromarray(np.full((4, 4), 4095, dtype=np.uint16)).save(path)
    np.testing.assert_allclose(images.read(path), 4095 / 65535, rtol=1e-6)  # what tf.io.decode_image gives


def test_an_rgba_png_loses_its_alpha_and_keeps_its_colours(tmp_path):
    rgba = np.dstack([synthetic_xray(1), synthetic_xray(2), synthetic_xray(3), np.full((40, 48), 7, np.uint8)])
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    rgb = images.read(path)
    assert rgb.shape == (40, 48, 3)
    assert np.array_equal(images.to_uint8(rgb), rgba[..., :3])  # alpha 7 does not darken anything
    gray = images.read(path, gray=True)
    assert gray.shape == (40, 48)
    assert np.array_equal(images.to_uint8(gray), np.asarray(Image.fromarray(rgba[..., :3]).convert("L")))


@pytest.mark.parametrize("dtype, scale", [(np.int32, 1000), (np.float32, 3.0)])
def test_32_bit_and_float_images_are_scaled_by_their_maximum(tmp_path, dtype, scale):
    array = synthetic_xray(4)
    path = tmp_path / "deep.tiff"
    Image.fromarray(array.astype(dtype) * dtype(scale)).save(path)
    expected = array / array.max()
    np.testing.assert_allclose(images.read(path, gray=True), expected, atol=1e-6)
    np.testing.assert_allclose(images.read(path), np.repeat(expected[..., None], 3, axis=2), atol=1e-6)


def test_max_size_shrinks_to_fit_and_keeps_the_aspect_ratio(tmp_path):
    path = save_image(tmp_path / "wide.jpeg", synthetic_xray(5, size=(60, 120)))
    assert images.read(path, gray=True, max_size=30).shape == (15, 30)
    assert images.read(path, gray=True, max_size=500).shape == (60, 120)  # never enlarged


def test_to_uint8_gives_back_every_8_bit_level_exactly(tmp_path):
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = save_image(tmp_path / "levels.png", levels)
    assert np.array_equal(images.to_uint8(images.read(path, gray=True)), levels)


def test_a_non_image_raises_what_callers_catch(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(OSError):  # PIL.UnidentifiedImageError is an OSError
        images.read(path)
