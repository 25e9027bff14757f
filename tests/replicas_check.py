"""Run in a process of its own by tests/test_replicas.py: the CPU split into logical devices, and runs mirrored over them.

``python -m tests.replicas_check DATA REPLICAS BATCH PRECISION``. TensorFlow fixes its devices
when it starts, so this cannot run in the tests' own process. Prints one JSON line per run: its
error, or its replicas, what changed for them, its precision, whether every replica's copy of
every variable agrees and is finite, and how a reload of its saved file predicts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def in_sync(model) -> bool:
    """Every variable's copies on every replica equal and finite."""
    import numpy as np

    for variable in model.variables:
        copies = [np.asarray(v) for v in getattr(variable.value, "values", [variable.value])]
        if not all(np.isfinite(c).all() and np.array_equal(c, copies[0]) for c in copies):
            return False
    return True


def main(data_dir: Path, replicas: int, batch_size: int, mixed_precision: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)

    import keras
    import numpy as np

    from xrayutils import chapter_models, datasets, devices, evaluate, jobs, models, pipeline
    from xrayutils.protocol import TrainingProtocol

    devices.replica_devices = lambda: [device.name for device in tf.config.list_logical_devices("CPU")]
    data = datasets.load("covid-xray", task="all", data_dir=data_dir)
    frames = pipeline.split_frames(data, validation_fraction=1 / 3, seed=0)  # 8 training, 4 validation, 8 test images
    protocol = TrainingProtocol(study="class-challenge", image_size=32, batch_size=batch_size, num_epochs=2, optimizer="adam",
                                learning_rate=1e-3, validation_fraction=1 / 3, seed=3, augment=False,
                                mixed_precision={"false": False}.get(mixed_precision, mixed_precision))
    builders = {
        "ResNet34": lambda: models.with_fused_batch_norm(chapter_models.resnet34((32, 32, 3), 4)),  # fused batch norm, whole
        "VGG16 cached": lambda: chapter_models.vgg16_transfer((32, 32, 3), num_classes=4),  # a frozen base, features cached
        "ResNet34 masked": lambda: chapter_models.masked(models.with_fused_batch_norm(chapter_models.resnet34((32, 32, 3), 4)),
                                                         "center", 0.25),  # chapter 04's shortcut test
    }
    for name, build in builders.items():
        path = data_dir / f"{name}.keras"
        run = jobs.train_and_test(name, build, frames, dataclasses.replace(protocol, cache_features=name.endswith("cached")),
                                   path=path, classes=data.classes, provenance={}, mirrored=True)
        row = {"name": name, "error": run.error}
        if run.ok:
            test = pipeline.make_datasets(frames, image_size=32, batch_size=8, num_classes=4, seed=0)["test"]
            again = evaluate.as_probabilities(keras.saving.load_model(path).predict(test, verbose=0))  # one device
            row.update(replicas=run.history["replicas"], replicated=run.history.get("replicated", ""),
                       precision=run.history["precision"], in_sync=in_sync(run.model), val_loss=run.history["val_loss"],
                       test_images=len(run.probabilities), finite=bool(np.isfinite(run.probabilities).all()),
                       reloaded=float(np.abs(again - run.probabilities).max()))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
