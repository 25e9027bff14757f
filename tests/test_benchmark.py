from __future__ import annotations

import dataclasses
import importlib.util
import json

import keras
import numpy as np
import pandas as pd
import pytest
from keras import layers

from tests.conftest import make_tiny_data
from xrayutils import benchmark, chapter_models, jobs
from xrayutils.chapters import REPO_ROOT


def load_script(name: str):
    """A script of ``benchmarks/`` as a module, to call its ``main`` with arguments."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_train_step_flops_counts_frozen_layers_once_and_trainable_ones_three_times():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, trainable=False)(inputs)  # 6x6x4 outputs, 3x3x3 taps each: 2 * 6*6*4 * 27 = 7776
    outputs = layers.Dense(2)(layers.Flatten()(x))  # 144 -> 2: 2 * 144 * 2 = 576, three times when trained
    assert benchmark.train_step_flops(keras.Model(inputs, outputs)) == 7776 + 3 * 576


def test_vgg16_costs_its_known_31_gflop_per_image_at_224():
    flops = benchmark.train_step_flops(chapter_models.vgg16_transfer((224, 224, 3)))
    assert 30.7e9 < flops < 30.9e9  # 15.35 GMAC of convolutions (Simonyan & Zisserman) + the head


def test_protocol_time_scales_per_image_and_adds_the_setup():
    m = benchmark.Measurement("m", train_images=10, epoch_seconds=2.0, validation_seconds=0.5, setup_seconds=4.0)
    assert m.images_per_second == 5.0
    assert m.protocol_seconds(40) == pytest.approx(4 + 40 * 2.5)
    assert m.protocol_seconds(40, train_images=20) == pytest.approx(2 * (4 + 40 * 2.5))


def test_benchmark_script_measures_every_method_and_writes_json(tmp_path):
    data = make_tiny_data(tmp_path / "data")
    script = load_script("task1_speed")
    out = tmp_path / "bench.json"
    assert script.main(["--data-dir", str(data), "--image-size", "32", "--repeats", "1", "--augmented-views", "2",
                        "--compute-steps", "2", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    methods = [row["method"] for row in result["table"]]
    assert len(methods) == 4 and methods[0].startswith("compute only") and "original" in methods[-1]
    assert all(row["images/s per epoch"] > 0 for row in result["table"])
    assert all(np.isfinite(v) and v > 0 for v in result["ratios"].values())
    assert result["settings"]["train_images"] == result["settings"]["protocol_train_images"] > 0


def test_full_protocol_trains_every_style_once_per_seed_and_compares_them_seed_by_seed(tmp_path):
    data = make_tiny_data(tmp_path / "data")
    script = load_script("task1_speed")
    out = tmp_path / "seeds.json"
    assert script.main(["--data-dir", str(data), "--image-size", "32", "--augmented-views", "2", "--full-protocol", "--seeds", "2",
                        "--epochs", "1", "--skip-speed", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    runs = result["full_protocol"]
    assert sorted((row["seed"], row["style"]) for row in runs) == sorted((s, style) for s in (1, 2) for style in benchmark.STYLES)
    assert all(0 <= row["accuracy"] <= 1 for row in runs) and "table" not in result  # --skip-speed
    comparison = {row["style"]: row for row in result["seed_comparison"]}
    assert comparison[benchmark.STYLES[0]]["seeds"] == 2 and "(2 seeds)" in comparison[benchmark.STYLES[0]]["accuracy"]
    assert "accuracy minus original [95% CI]" in comparison[benchmark.STYLES[1]]


def test_bfloat16_caching_is_compared_with_float32_caching_seed_by_seed_and_the_policy_is_put_back(tmp_path):
    data = make_tiny_data(tmp_path / "data")
    out = tmp_path / "bf16.json"
    assert load_script("task1_speed").main(["--data-dir", str(data), "--image-size", "32", "--augmented-views", "2", "--full-protocol",
                                            "--bfloat16", "--seeds", "2", "--epochs", "1", "--skip-speed", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert sorted({row["style"] for row in result["full_protocol"]}) == sorted((benchmark.STYLES[0], benchmark.CACHED_BFLOAT16))
    comparison = {row["style"]: row for row in result["seed_comparison"]}
    assert "accuracy minus float32 [95% CI]" in comparison[benchmark.CACHED_BFLOAT16]
    assert not comparison[benchmark.STYLES[0]].get("accuracy minus float32 [95% CI]")  # the reference is not compared with itself
    assert keras.mixed_precision.global_policy().name == "float32"
    stored = benchmark.stored_seed_comparison(out)
    assert stored["verdict"].startswith(f"{benchmark.CACHED_BFLOAT16} ") and "float32 style's accuracy" in stored["verdict"]


def test_seed_comparison_takes_differences_seed_by_seed():
    import pandas as pd

    table = pd.DataFrame([
        {"seed": s, "style": style, "seconds": 60.0, "accuracy": acc, "roc_auc": 0.9}
        for s, base in ((1, 0.6), (2, 0.9), (3, 0.75)) for style, acc in zip(benchmark.STYLES, (base + 0.1, base, base))
    ])
    rows = {row["style"]: row for row in benchmark.seed_comparison(table).to_dict("records")}
    # the seeds differ by 0.3, but the cached style is 0.1 better on every seed: a paired interval of zero width
    assert rows[benchmark.STYLES[0]]["accuracy minus original [95% CI]"] == "+0.100 [+0.100, +0.100]"
    assert rows[benchmark.STYLES[1]]["accuracy minus original [95% CI]"] == "0.000 [0.000, 0.000]"
    assert rows[benchmark.STYLES[2]]["accuracy"] == "0.750 ± 0.150 (mean ± sd of 3 seeds)"


def test_chapter01_is_set_beside_the_original_style_only_when_it_ran_the_published_protocol(tmp_path):
    import pandas as pd

    table = pd.DataFrame([{"method": "original style: ImageDataGenerator", "40-epoch protocol, s": 1000.0}])
    assert "did not run" in benchmark.chapter01_beside(tmp_path, table)
    folder = tmp_path / "01_vgg16_binary"
    folder.mkdir()

    def write(image_size, num_epochs):
        entry = {"fit_seconds": 100.0, "history": {"cache": {"views": 3}}}
        protocol = dataclasses.replace(benchmark.PROTOCOL, image_size=image_size, num_epochs=num_epochs)
        saved = {"provenance": {}, "results": {"models": {"VGG16": entry}, "protocol": protocol.to_dict()}}
        (folder / "results.json").write_text(json.dumps(saved))

    write(224, 40)
    assert "10.0 times less" in benchmark.chapter01_beside(tmp_path, table) and "3 views" in benchmark.chapter01_beside(tmp_path, table)
    write(72, 1)
    assert "shrunk protocol" in benchmark.chapter01_beside(tmp_path, table)
    assert "was hidden" in benchmark.pipeline_verdict(0.95) and "not fully hidden" in benchmark.pipeline_verdict(0.5)


def test_whole_network_script_times_each_model_batch_and_xla_setting(tmp_path, monkeypatch):
    script = load_script("whole_network_speed")
    out = tmp_path / "speed.json"
    compiled = []  # what Keras compiled each timed model with
    timed_steps = benchmark.timed_steps

    def spy(trainer, *args, **kwargs):
        seconds = timed_steps(trainer, *args, **kwargs)
        compiled.append(trainer.jit_compile)
        return seconds

    monkeypatch.setattr(benchmark, "timed_steps", spy)
    # AlexNet: XLA compiles its eight layers in seconds, ResNet34's in about 40 s on 2 cores
    assert script.main(["--models", "AlexNet", "--image-size", "72", "--batch-sizes", "2", "4", "--jit-compile", "true", "false",
                        "--steps", "1", "--output", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(row["batch"], row["XLA asked"]) for row in rows] == [(2, "true"), (2, "false"), (4, "true"), (4, "false")]
    assert compiled == [True, False, True, False]  # XLA really on where asked
    assert all(row["images/s"] > 0 and row["GFLOP/s"] > 0 for row in rows)


def test_whole_network_script_times_chapter_02s_alexnet_and_appends_to_a_stored_table(tmp_path):
    script = load_script("whole_network_speed")
    out = tmp_path / "speed.json"
    assert script.main(["--models", "ResNet34", "--image-size", "32", "--batch-sizes", "2", "--steps", "1", "--output", str(out)]) == 0
    assert script.main(["--models", "AlexNet", "--image-size", "72", "--batch-sizes", "2", "--steps", "1", "--output", str(out),
                        "--append"]) == 0
    stored = json.loads(out.read_text())
    assert [(row["model"], row["image size"]) for row in stored["rows"]] == [("ResNet34", 32), ("AlexNet", 72)]
    assert stored["rows"][1]["batch norm"] == "fused" and stored["rows"][1]["GFLOP/s"] > 0
    assert len(stored["commands"]) == 2 and stored["commands"][1].endswith("--append")


def test_depthwise_and_separable_convolutions_cost_one_filter_per_input_channel():
    inputs = keras.Input((8, 8, 4))
    x = layers.DepthwiseConv2D(3, padding="same", trainable=False)(inputs)  # 2 * 8*8*4 * 9 = 4608
    x = layers.SeparableConv2D(6, 3, padding="same", trainable=False)(x)  # 2 * 8*8 * 4 * (9 + 6) = 7680
    assert benchmark.train_step_flops(keras.Model(inputs, x)) == 4608 + 7680


def test_the_gap_verdict_says_whether_zero_is_inside_the_paired_interval():
    import pandas as pd

    comparison = pd.DataFrame([
        {"style": "book: feature caching", "accuracy minus original [95% CI]": "-0.050 [-0.090, -0.010]"},
        {"style": "book: no caching", "accuracy minus original [95% CI]": "+0.010 [-0.020, +0.040]"},
        {"style": "original: ImageDataGenerator", "accuracy minus original [95% CI]": ""},
    ])
    verdict = benchmark.gap_verdict(comparison)
    assert "book: feature caching differs from the original style's accuracy beyond seed noise" in verdict
    assert "book: no caching shows no difference from the original style's accuracy that these seeds can detect" in verdict
    assert "matches" not in verdict
    assert "original: ImageDataGenerator" not in verdict


def test_epoch_times_take_trained_models_as_measured_and_time_the_others():
    from xrayutils.protocol import TrainingProtocol

    protocol = TrainingProtocol(study="coronahack", image_size=75, batch_size=2, num_epochs=10, optimizer="adam",
                                learning_rate=1e-3, validation_fraction=0.1, seed=0, weights="none", seeds=(1, 2))
    trained = jobs.ModelRun("ResNet34", history={"seconds": [30.0, 10.0, 12.0]})
    table = benchmark.epoch_times(["ResNet34", "InceptionV3"], protocol, {"ResNet34": trained}, train_images=4, steps=1)
    assert table.loc["ResNet34", "s per epoch"] == 12.0 and table.loc["ResNet34", "trained here"]
    assert table.loc["ResNet34", "10 epochs x 2 seed(s) (min)"] == 4.0  # 12 s x 10 epochs x 2 seeds
    assert table.loc["InceptionV3", "s per epoch"] > 0 and "lower bound" in table.loc["InceptionV3", "how"]


def test_epoch_times_take_stored_step_times_for_the_others_and_only_those_matching_the_protocol(tmp_path):
    from xrayutils import jobs, results
    from xrayutils.protocol import TrainingProtocol

    protocol = TrainingProtocol(study="coronahack", image_size=96, batch_size=16, num_epochs=10, optimizer="adam",
                                learning_rate=1e-3, validation_fraction=0.1, seed=0, weights="none")
    row = {"image size": 96, "batch": 16, "augment": True, "XLA asked": "false", "s/step": 2.0}
    path = tmp_path / "steps.json"
    results.write_json_atomic(path, {"device": "CPU (test)", "commit": "abc", "rows": [
        {**row, "model": "Xception"}, {**row, "model": "VGG16", "batch": 32, "s/step": 9.0}]})
    stored = benchmark.stored_step_times(protocol, path)
    assert set(stored) == {"Xception"}  # VGG16 was stored at another batch size
    trained = jobs.ModelRun("ResNet34", history={"seconds": [30.0, 10.0, 12.0]})
    table = benchmark.epoch_times(["ResNet34", "Xception", "VGG16"], protocol, {"ResNet34": trained}, train_images=40, stored=stored)
    assert list(table.index) == ["ResNet34", "Xception"]  # VGG16: neither trained nor stored
    assert table.loc["Xception", "s per epoch"] == 6.0  # 2 s x 3 steps of 16 images
    assert "CPU (test)" in table.loc["Xception", "how"] and not table.loc["Xception", "trained here"]
    assert benchmark.stored_step_times(protocol, tmp_path / "missing.json") == {}


def test_the_original_style_above_the_compute_only_rate_is_explained_only_when_it_happened():
    table = pd.DataFrame({"method": ["compute only (random tensors in memory)", "book pipeline, no caching",
                                     "original style: ImageDataGenerator"], "GFLOP/s": [665.0, 400.0, 779.0]})
    note = benchmark.ceiling_note(table)
    assert note.startswith("The original style (779 GFLOP/s) ran above the compute-only rate (665)")
    assert benchmark.ceiling_note(table.assign(**{"GFLOP/s": [665.0, 400.0, 600.0]})) == ""
