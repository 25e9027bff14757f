"""Image files to numpy arrays with Pillow: one reader, whatever the file's mode.

Outside the ``tf.data`` pipeline (:mod:`xrayutils.pipeline`) pixels are read in
three places: chapter 00's audit (grey levels, perceptual hashes), the figures'
thumbnails, and :func:`xrayutils.predict.read_image` for files TensorFlow
cannot decode.  All three use :func:`read`, so that a 16-bit image looks the
same in each and as the training pipeline decodes it, where Pillow's own
conversion to 8 bits would clip it to white.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

#: Pillow modes of more than 8 bits per pixel, which ``Image.convert`` clips rather than scales.
HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "F")


def read(path: str | os.PathLike, *, gray: bool = False, max_size: int | None = None) -> np.ndarray:
    """The image at ``path`` as float32 in ``[0, 1]``: ``(height, width)`` luminance if ``gray``, else ``(height, width, 3)``.

    Parameters
    ----------
    path : str or path
    gray : bool
        One luminance channel (Pillow's ``convert("L")`` weights) instead of RGB.
    max_size : int, optional
        First shrink the image to fit a ``max_size`` square, aspect ratio kept
        (``Image.thumbnail``), which decodes a large JPEG at reduced scale: cheap
        thumbnails of full-resolution data.

    Raises
    ------
    PIL.UnidentifiedImageError, OSError
        For a file Pillow cannot read.

    Examples
    --------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "deep.png")
    >>> Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)).save(path)
    >>> read(path, gray=True).tolist()  # 16 bits scaled, not clipped at 255
    [[0.0, 1.0]]
    """
    with Image.open(path) as image:
        if max_size is not None:
            image.thumbnail((max_size, max_size))
        return _unit_range(image, gray=gray)


def _unit_range(image: Image.Image, *, gray: bool) -> np.ndarray:
    """float32 in ``[0, 1]`` from any Pillow mode (16- and 32-bit integer, float, palette, CMYK...).

    16-bit images are divided by 65535, as ``tf.io.decode_image`` scales them in
    training, so that 12-bit data stored in 16 bits stays as dark as the model
    sees it; 32-bit integer and float images, which have no fixed range, by their
    maximum.  Other modes go through Pillow's own conversion to 8-bit L or RGB.
    """
    if image.mode in HIGH_DEPTH_MODES:
        array = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        array = np.clip(array / top, 0.0, 1.0)
        return array if gray else np.repeat(array[..., None], 3, axis=2)
    return np.asarray(image.convert("L" if gray else "RGB"), dtype=np.float32) / 255.0


def to_uint8(array: np.ndarray) -> np.ndarray:
    """``[0, 1]`` values as 0-255 integers, rounded: exactly the original pixels of an 8-bit image :func:`read` read.

    >>> to_uint8(np.array([0.0, 0.5, 1.0])).tolist()
    [0, 128, 255]
    """
    return np.rint(np.asarray(array) * 255.0).astype(np.uint8)
