"""Several GPUs without one (issue 42): the CPU split into logical devices, each run's batches mirrored over them.

``tests/replicas_check.py`` runs in a process of its own (TensorFlow fixes its devices when
it starts): three models one after another in one process (a fused-batch-norm ResNet34
trained whole, a VGG16 whose frozen base is cached, the ResNet34 behind chapter 04's region
mask), on 3 replicas, batch 4 and
mixed_float16 asked, 8 training, 4 validation and 8 test images. Each of those numbers
meets one defect: a second strategy in one process, a batch that does not divide, a last
batch smaller than the replicas (training and test), float16 loss scaling per replica.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from tests.conftest import make_tiny_data
from xrayutils import cli, cluster, devices, jobs, precision
from xrayutils.protocol import TrainingProtocol


def test_runs_mirrored_over_three_devices_train_in_sync_finite_and_score_every_test_image(tmp_path):
    data = make_tiny_data(tmp_path / "data")
    done = subprocess.run([sys.executable, "-m", "tests.replicas_check", str(data), "3", "4", "mixed_float16"],
                          cwd=cli.ROOT, capture_output=True, text=True, timeout=900)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [row["name"] for row in rows] == ["ResNet34", "VGG16 cached", "ResNet34 masked"], done.stdout + done.stderr[-3000:]
    for row in rows:
        assert row["error"] is None, row["error"]
        assert row["replicas"] == 3 and row["precision"] == "float32"  # float16's loss scaling is per replica
        assert "batch 4 rounded up to 6 (2 per replica)" in row["replicated"] and "the last validation image" in row["replicated"]
        assert row["in_sync"] and row["finite"] and all(v == v for v in row["val_loss"])  # no NaN from an empty replica
        assert row["test_images"] == 8 and row["reloaded"] < 1e-5  # every test image, and the saved model agrees


def test_the_replicas_change_of_a_protocol_is_said_and_a_batch_too_big_for_the_images_refused():
    protocol = TrainingProtocol(study="coronahack", image_size=32, batch_size=10, num_epochs=1, optimizer="adam",
                                learning_rate=1e-3, validation_fraction=0.1, seed=1)
    gpu = precision.Precision("mixed_float16", "auto: a GPU")
    same, chosen, said = devices.for_replicas(protocol, gpu, 1, train_images=100, validation_images=10)
    assert same is protocol and chosen is gpu and said == ""
    rounded, chosen, said = devices.for_replicas(protocol, gpu, 4, train_images=100, validation_images=10)
    assert rounded.batch_size == 12 and chosen.policy == "float32"
    assert said == ("any last partial batch of training images left out each epoch, and the last 2 validation images; "
                    "batch normalisation on each replica's share of the batch (its statistics not synchronised); "
                    "batch 10 rounded up to 12 (3 per replica); float32 instead of mixed_float16")
    xla = dataclasses.replace(protocol, jit_compile=True)
    compiled, _, said = devices.for_replicas(xla, gpu, 2, train_images=100, validation_images=10)
    assert compiled.jit_compile is False and said.endswith("XLA off (a mirrored model's variables live on several devices, which "
                                                           "XLA refused), so ops stay deterministic")
    with pytest.raises(ValueError, match="9 training images fill no batch of 12 on 4 mirrored devices"):
        devices.for_replicas(protocol, gpu, 4, train_images=9, validation_images=10)


def test_one_run_per_gpu_by_default_and_mirroring_only_when_asked(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(devices, "gpu_count", lambda: 1)
    assert isinstance(cluster.engine("auto"), jobs.LocalEngine)
    monkeypatch.setattr(devices, "gpu_count", lambda: 4)
    assert isinstance(cluster.engine("auto"), cluster.RayEngine)  # each run on a GPU of its own
    assert not jobs.LocalEngine().mirrored and cluster.engine("mirrored").mirrored
    assert type(devices.distribution()).__name__ != "MirroredStrategy"  # not without being asked, whatever the GPUs
    monkeypatch.setattr(devices, "replica_devices", lambda: ["/cpu:0"])
    assert type(devices.distribution(mirrored=True)).__name__ != "MirroredStrategy"  # one device: nothing to mirror


def test_a_run_on_a_gpu_asks_for_no_more_cpus_than_a_gpu_node_has():
    """A head with 2 CPUs and a GPU node with 1 CPU and 1 GPU: a run asked for 3 CPUs and 1 GPU, and never started."""
    engine = cluster.RayEngine()
    assert engine.resources(9, cpus=3, gpus=1, cpus_per_gpu=1) == {"num_cpus": 1, "num_gpus": 1}
    assert cluster.RayEngine(threads=4).resources(9, cpus=3, gpus=1, cpus_per_gpu=1)["num_cpus"] == 1
    assert engine.resources(9, cpus=16, gpus=2, cpus_per_gpu=8) == {"num_cpus": 8, "num_gpus": 1}
    assert engine.resources(9, cpus=8, gpus=0) == {"num_cpus": 1, "num_gpus": 0}  # CPUs only: shared out, as before
