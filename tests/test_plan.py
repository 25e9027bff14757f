from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from xrayutils import cli, plan, results
from xrayutils.protocol import TrainingProtocol

PROTOCOL = TrainingProtocol(study="class-challenge", image_size=224, batch_size=10, num_epochs=40, optimizer="adam",
                            learning_rate=5e-4, validation_fraction=0.2, seed=1, cache_features=True, augmented_views=3)
IMAGES = {"train": 95, "validation": 24, "test": 30, "classes": 2}


def test_a_plan_multiplies_measured_costs_by_images_epochs_and_runs():
    work = plan.Work("01", "VGG16", PROTOCOL, IMAGES, runs=3)
    whole = {"step": 2.0, "forward": 0.1, "cached": False}
    assert work.seconds(whole) == pytest.approx(3 * (40 * (10 * 2.0 + 24 * 0.1) + 30 * 0.1))
    cached = {"step": 0.01, "forward": 0.25, "cached": True}  # the base once per view and validation image, then the head's epochs
    assert work.seconds(cached) == pytest.approx(3 * ((3 * 95 + 24) * 0.25 + 40 * 10 * 0.01 + 30 * 0.25))
    plain = plan.Work("03", "VGG16", dataclasses.replace(PROTOCOL, augment=False), IMAGES, runs=3)  # encoded once, for every seed
    assert plain.seconds(cached) == pytest.approx((95 + 24 + 30) * 0.25 + 3 * 40 * 10 * 0.01)


def test_a_gpu_figure_comes_only_from_a_step_time_stored_on_a_gpu(tmp_path):
    row = {"model": "VGG16", "image size": 224, "batch": 10, "augment": True, "XLA asked": "true", "s/step": 0.05}
    for name, device in (("cpu_step_times.json", "CPU (2 cores: AMD EPYC), no GPU"), ("h100_step_times.json", "GPU: NVIDIA H100")):
        (tmp_path / name).write_text(json.dumps({"device": device, "rows": [row]}))
    stored = plan.gpu_step_times(tmp_path)
    assert [r["file"] for r in stored] == ["h100_step_times.json"]
    seconds, source = plan.gpu_estimate(plan.Work("01", "VGG16", PROTOCOL, IMAGES, runs=2), stored)
    assert seconds == pytest.approx(2 * 40 * 10 * 0.05) and source.startswith("GPU: NVIDIA H100 (h100_step_times.json")
    assert plan.gpu_estimate(plan.Work("02", "AlexNet", PROTOCOL, IMAGES, runs=1), stored)[0] is None


def test_plan_lists_every_training_chapter_and_model_of_a_profile_with_measured_times(data_dir, tmp_path, capsys):
    build_dir = tmp_path / "build"
    results.write_json_atomic(build_dir / "timings.json", {"notebooks": [{"notebook": "01_vgg16_binary", "status": "ok", "seconds": 90}]})
    argv = ["plan", "--profile", "smoke", "--data-dir", str(data_dir), "--build-dir", str(build_dir), "--steps", "1",
            "-p", "model_names", '["ResNet34"]', "-p", "batch_size", "4", "--workers", "2"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    table = out[out.index("chapter"):out.index("GPU:")]
    rows = [line.split()[:2] for line in table.splitlines()[1:]]
    assert rows == [["01_vgg16_binary", "VGG16"], ["02_vgg16_vs_alexnet", "VGG16"], ["02_vgg16_vs_alexnet", "AlexNet"],
                    ["03_coronahack_models", "ResNet34"], ["04_trust_checks", "VGG16"]]
    assert "cached, 2 views" in table and "2 seed(s)" in table and "2 masks (01's)" in table
    assert "The smoke profile's training takes about" in out
    assert "01_vgg16_binary    1.5" in out  # the last build's minutes
    assert "Each model was measured in a process of its own; the largest peaked at" in out
    assert "With 2 runs side by side" in out and "03_coronahack_models" in out[out.index("With 2 runs"):]


def test_plan_refuses_a_parameter_no_chapter_declares(data_dir, capsys):
    assert cli.main(["plan", "--profile", "smoke", "--data-dir", str(data_dir), "-p", "no_such_thing", "1"]) == 2
    assert "no selected notebook declares the parameter 'no_such_thing'" in capsys.readouterr().err


def test_runs_side_by_side_go_longest_first_to_the_first_free_worker():
    assert plan.longest_first([3, 3, 2, 2, 2], workers=2) == 7  # 3+2+2 and 3+2 (the best order gives 6: within Graham's 4/3)
    assert plan.longest_first([5, 1, 1], workers=4) == 5 and plan.longest_first([5, 1, 1], workers=1) == 7


def test_side_by_side_spreads_each_training_chapters_runs_and_keeps_chapter_04_in_its_kernel():
    works = [plan.Work("01_vgg16_binary", "VGG16", PROTOCOL, IMAGES, runs=3),
             plan.Work("03_coronahack_models", "ResNet34", PROTOCOL, IMAGES, runs=3),
             plan.Work("03_coronahack_models", "InceptionV3", PROTOCOL, IMAGES, runs=3),
             plan.Work("04_trust_checks", "VGG16", PROTOCOL, IMAGES, runs=2)]
    table = pd.DataFrame({"chapter": [w.chapter for w in works], "min per run": [1.0, 2.0, 4.0, 1.0]})
    wall = plan.side_by_side(works, table, workers=3)
    assert wall.to_dict() == {"01_vgg16_binary": 1.0, "03_coronahack_models": 6.0, "04_trust_checks": 2.0}
    assert plan.side_by_side(works, table, workers=1).to_dict()["03_coronahack_models"] == 18.0


def test_a_measurement_runs_in_a_process_of_its_own_and_reports_its_peak_memory():
    small = TrainingProtocol(study="coronahack", image_size=32, batch_size=2, num_epochs=1, optimizer="adam", learning_rate=1e-3,
                             validation_fraction=0.2, seed=1, augment=False)
    import keras

    before = keras.backend.get_uid("conv2d")  # Keras numbers the layers it builds in this process
    cost = plan.measure_apart(plan.Work("03", "ResNet34", small, IMAGES, runs=1), steps=1)
    assert keras.backend.get_uid("conv2d") == before + 1  # ResNet34's 36 convolutions were built elsewhere
    assert cost["step"] > 0 and cost["forward"] > 0 and not cost["cached"]
    assert 0.1 < cost["peak_gb"] < 8  # the child's own peak: TensorFlow and one small model
