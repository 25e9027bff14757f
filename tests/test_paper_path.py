"""The path users run on a GPU (the ``paper`` profile), tried here on a CPU: every CoronaHack model under the paper switches.

Each of chapter 03's nine models trains one epoch of one step through the book's own
:func:`xrayutils.jobs.train_and_test` (``fit``, test predictions, ``save_model``),
under ``mixed_float16`` (the GPU policy, with the loss scaling a GPU uses), is
reloaded by :func:`xrayutils.predict.load_model` and predicts image files with
:func:`xrayutils.predict.predict_files`.  Each at the smallest size it accepts
(each one's ``min_image_size`` in :mod:`xrayutils.catalogue`: 32 px, 71 for Xception, 75 for the Inceptions)
and on 3 training images: float16 is slow on a CPU without it, and VGG19 took 394 s at 75 px.  With
XLA for VGG16, whose compilation is cheap on 2 cores (see ``XLA``).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from xrayutils import catalogue, jobs, models, predict, train
from xrayutils.protocol import TrainingProtocol
from xrayutils.runner import parameters

#: Models also compiled with XLA here: VGG16's compilation costs seconds on 2 cores, ResNet34's about 40 s and
#: EfficientNetV2M's about 3 minutes, more than CI's 30 minutes leave once the nine models have traced (2-4 minutes
#: each for InceptionResNetV2 and the EfficientNets).
XLA = {"VGG16"}


@pytest.fixture(autouse=True)
def float32_after():
    """Leave Keras' global policy as every other test expects it."""
    yield
    keras.mixed_precision.set_global_policy("float32")


def paper_protocol(name: str) -> TrainingProtocol:
    """Chapter 03 as the paper profile sets it, shrunk only in image size, images and epochs, from random weights, at mixed_float16.

    Float16 has no fast kernels on most CPUs: VGG19's test took 86 s at 32 px with 8 training images and two
    epochs, and 23 s with 3 and one (a loss-scaled step, validation and test predictions all run in the first epoch).
    """
    notebook = parameters.ROOT / "notebooks" / "03_coronahack_models.ipynb"
    chosen = parameters.with_defaults(notebook, parameters.resolve_parameters(notebook, "paper", {}))
    shrunk = {"image_size": catalogue.network(name).min_image_size, "num_epochs": 1, "seeds": [1], "weights": "none",
              "max_images_per_class": 2,  # 3 training images, 1 for validation: one step, as on the GPU, at a third of its cost
              "mixed_precision": "mixed_float16",
              "jit_compile": name in XLA}
    return TrainingProtocol.from_parameters({**chosen, **shrunk}, study="coronahack")


@pytest.mark.parametrize("name", catalogue.published("coronahack"))
def test_every_coronahack_model_trains_saves_and_predicts_under_the_paper_switches(name, data_dir, tmp_path):
    protocol = paper_protocol(name)
    data, frames = train.load_split("coronahack", "two", protocol, data_dir)
    own = protocol.for_model(name)
    build = lambda: models.build(own.study, name, own.input_shape, len(data.classes), models.starting_weights(name, own.weights))  # noqa: E731
    path = tmp_path / jobs.model_filename(name, own.image_size, data.name, data.task)
    run = jobs.train_and_test(name, build, frames, own, path=path, classes=data.classes, provenance={}, keep_model=False)
    assert run.ok, run.error
    history = run.history
    assert (history["precision"], history["loss_scaling"], history["jit_compile"]) == ("mixed_float16", True, name in XLA)
    assert np.isfinite(history["loss"] + history["val_loss"]).all()
    print(f"{name}: {history['seconds'][0]:.1f} s for its epoch, with tracing{' and XLA compilation' if name in XLA else ''} "
          f"(one step on {len(frames['train'])} images at {own.image_size} px, validation on {len(frames['validation'])})")
    assert np.isfinite(run.probabilities).all() and run.probabilities.shape == (len(frames["test"]), 2)

    keras.mixed_precision.set_global_policy("float32")  # a user's fresh session reloads the file
    model, classes = predict.load_model(path)
    assert classes == data.classes
    table = predict.predict_files(model, classes, list(frames["test"]["path"]))
    probabilities = table[[f"p_{c}" for c in classes]].to_numpy()
    assert (table["error"] == "").all() and probabilities.dtype == np.float64
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    # the file predicts what the trained model did on the same images (half-precision compute: to a few parts in a thousand)
    np.testing.assert_allclose(probabilities, run.probabilities, atol=5e-3)
