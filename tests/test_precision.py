"""Which precision each model runs under, for each kind of machine (flags given, not read from this one)."""

import dataclasses
import json

import keras
import pytest

from tests.test_train import PROTOCOL, tiny_model
from xrayutils import chapter_models, devices, jobs, models, precision
from xrayutils.precision import FROZEN_FORWARD, WHOLE_NETWORK

AMD_EPYC = {"fpu", "sse4_2", "avx", "avx2", "fma"}  # the AVX2-only machines
XEON_AMX = AMD_EPYC | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
COOPER_LAKE = AMD_EPYC | {"avx512f", "avx512_bf16"}  # AVX512-BF16 without AMX
SKYLAKE = AMD_EPYC | {"avx512f"}  # AVX-512 without bfloat16
MEASURED = {("VGG16", FROZEN_FORWARD): 6.6, ("VGG16", WHOLE_NETWORK): 3.3, ("EfficientNetV2S", WHOLE_NETWORK): 0.86,
            ("InceptionV3", WHOLE_NETWORK): 1.07}


def chosen(setting, model="VGG16", work=FROZEN_FORWARD, gpus=0, flags=XEON_AMX):
    return precision.choose(setting, model=model, work=work, gpus=gpus, flags=flags, measured=MEASURED)


@pytest.mark.parametrize(("flags", "model", "work", "policy"), [
    (XEON_AMX, "VGG16", FROZEN_FORWARD, "mixed_bfloat16"),  # 6.6x
    (XEON_AMX, "VGG16", WHOLE_NETWORK, "mixed_bfloat16"),  # 3.3x
    (XEON_AMX, "EfficientNetV2S", WHOLE_NETWORK, "float32"),  # slower in bfloat16
    (XEON_AMX, "InceptionV3", WHOLE_NETWORK, "float32"),  # 1.07x: below MIN_SPEEDUP
    (XEON_AMX, "AlexNet", WHOLE_NETWORK, "float32"),  # never measured
    (COOPER_LAKE, "VGG16", FROZEN_FORWARD, "mixed_bfloat16"),
    (SKYLAKE, "VGG16", FROZEN_FORWARD, "float32"),
    (AMD_EPYC, "VGG16", FROZEN_FORWARD, "float32"),
    (set(), "VGG16", FROZEN_FORWARD, "float32"),  # flags unreadable (not Linux)
])
def test_auto_on_a_cpu_uses_bfloat16_only_where_it_was_measured_faster(flags, model, work, policy):
    assert chosen("auto", model, work, flags=flags).policy == policy


def test_auto_says_why():
    assert "no native bfloat16" in chosen("auto", flags=AMD_EPYC).reason
    assert "6.6x" in chosen("auto").reason
    assert "0.86x" in chosen("auto", "EfficientNetV2S", WHOLE_NETWORK).reason and "no gain" in chosen(
        "auto", "EfficientNetV2S", WHOLE_NETWORK).reason
    assert "never measured" in chosen("auto", "AlexNet", WHOLE_NETWORK).reason


def test_a_gpu_keeps_float16_and_explicit_settings_win_everywhere():
    assert chosen("auto", "EfficientNetV2S", WHOLE_NETWORK, gpus=1).policy == "mixed_float16"
    assert chosen(True, gpus=1).policy == "mixed_float16"
    assert chosen(True, flags=AMD_EPYC).policy == "mixed_bfloat16"
    assert chosen(False).policy == "float32"
    assert chosen("mixed_float16", flags=AMD_EPYC).policy == "mixed_float16"
    with pytest.raises(ValueError, match="mixed_precision must be"):
        chosen("fast")


def test_the_work_is_told_only_when_the_choice_depends_on_it():
    def work():
        raise AssertionError("built a model for nothing")

    for setting, flags in [("auto", AMD_EPYC), (False, XEON_AMX), (True, XEON_AMX)]:
        chosen(setting, work=work, flags=flags)
    assert chosen("auto", work=lambda: WHOLE_NETWORK).policy == "mixed_bfloat16"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16\n")
    assert precision.cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16", "amx_bf16"}
    assert precision.native_bfloat16(precision.cpu_flags(cpuinfo))
    assert precision.cpu_flags(tmp_path / "missing") == frozenset()


def test_speedups_pair_the_policies_and_keep_the_slowest_ratio():
    rows = [{"model": "M", "batch": b, "precision": p, "images/s": r}
            for b, p, r in [(16, "float32", 10.0), (16, "mixed_bfloat16", 30.0), (32, "float32", 10.0),
                            (32, "mixed_bfloat16", 15.0), (64, "mixed_bfloat16", 99.0)]]  # batch 64: no float32 to pair
    assert precision.speedups(rows) == {("M", WHOLE_NETWORK): 1.5}


def test_the_stored_measurement_is_the_one_auto_reads(tmp_path):
    stored = precision.stored_speedups()
    assert stored[("VGG16", FROZEN_FORWARD)] >= precision.MIN_SPEEDUP  # the work chapters 01, 02 and 04 spend their time in
    assert stored[("EfficientNetV2S", WHOLE_NETWORK)] < 1
    assert precision.stored_speedups(tmp_path / "none.json") == {}
    written = tmp_path / "bench.json"
    written.write_text(json.dumps({"rows": [{"model": "M", "precision": "float32", "images/s": 2.0},
                                            {"model": "M", "precision": "mixed_bfloat16", "images/s": 5.0}]}))
    assert precision.stored_speedups(written) == {("M", WHOLE_NETWORK): 2.5}


def test_the_work_of_a_model_is_its_frozen_base_when_it_has_one():
    assert devices.work_of(lambda: chapter_models.vgg16_transfer((32, 32, 3)))() == FROZEN_FORWARD
    assert devices.work_of(lambda: tiny_model(num_classes=2))() == WHOLE_NETWORK


def test_a_chapter_records_which_precision_each_model_ran_with(splits, tmp_path, monkeypatch):
    data, frames = splits
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(XEON_AMX))
    monkeypatch.setattr(precision, "stored_speedups", lambda: {("fast", WHOLE_NETWORK): 2.0, ("slow", WHOLE_NETWORK): 0.8})
    protocol = dataclasses.replace(PROTOCOL, num_epochs=1, mixed_precision="auto", augment=False)
    try:
        runs = {name: jobs.train_and_test(name, lambda: tiny_model(num_classes=4), frames, protocol, path=None,
                                           classes=data.classes, provenance={}, keep_model=False) for name in ("fast", "slow")}
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert runs["fast"].history["precision"] == "mixed_bfloat16" and runs["slow"].history["precision"] == "float32"
    runs["fast"].path = runs["slow"].path = tmp_path / "m.keras"
    entries = {name: run.record({}, models.resolve_weights("none")) for name, run in runs.items()}
    assert entries["fast"]["precision"].startswith("mixed_bfloat16 (auto: native bfloat16, measured 2.0x")
    assert entries["slow"]["precision"].startswith("float32 (auto: bfloat16 measured 0.80x")
    assert "precision mixed_bfloat16 (auto" in runs["fast"].status()


def test_the_page_table_shows_the_pair_the_choice_rests_on():
    rows = [{"model": "ResNet34", "work": WHOLE_NETWORK, "image size": size, "batch": 16, "precision": policy, "images/s": rate}
            for size, rates in ((96, (40.0, 50.0)), (64, (80.0, 84.0))) for policy, rate in zip(("float32", "mixed_bfloat16"), rates)]
    rows.append({"model": "VGG16", "work": FROZEN_FORWARD, "image size": 224, "batch": 16, "precision": "float32", "images/s": 10.0})
    table = precision.speedup_table(rows)  # VGG16 was timed in float32 only: no row
    assert table.to_dict("records") == [{"model": "ResNet34", "work": f"{WHOLE_NETWORK}, 64 px", "batch": 16, "float32": 80.0,
                                         "bfloat16": 84.0, "ratio": 1.05, "auto": "float32"}]
