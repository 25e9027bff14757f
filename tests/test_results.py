"""The results files: written atomically, never losing a different earlier run, read back by chapter."""

from __future__ import annotations

import io
import json
import tempfile

import pytest

from xrayutils import chapters, results
from xrayutils.runner import build, parameters


def test_same_run_overwrites_its_results(tmp_path):
    path = tmp_path / "results.json"
    provenance = {"parameters": {"seed": 1}, "wall_time_s": 3.0}
    assert results.save(path, {"accuracy": 0.5}, provenance) is None
    assert results.save(path, {"accuracy": 0.5}, {**provenance, "wall_time_s": 9.0}) is None
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_rerun_with_other_parameters_keeps_the_earlier_result(tmp_path):
    path = tmp_path / "results.json"
    results.save(path, {"accuracy": 0.5}, {"parameters": {"seed": 1}})
    kept = results.save(path, {"accuracy": 0.9}, {"parameters": {"seed": 2}})
    assert kept is not None and kept.name.startswith("results.previous-")
    assert json.loads(kept.read_text())["results"] == {"accuracy": 0.5}
    assert json.loads(path.read_text())["results"] == {"accuracy": 0.9}


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    import numpy as np

    results.write_json_atomic(tmp_path / "a.json", {"x": np.float32(0.25), "y": np.arange(2)})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 0.25, "y": [0, 1]}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_undefined_numbers_are_written_as_null_and_metrics_read_back_as_nan(tmp_path):
    import math

    import numpy as np

    def strict(text: str):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))

    auc = {"value": float("nan"), "low": np.float32("nan"), "high": math.inf}
    path = tmp_path / "chapter" / results.RESULTS_FILE
    results.save(path, {"models": {"m": {"metrics": {"roc_auc": auc}, "model_seed": None, "spread": [np.nan, 1.0]}}}, {"wall_time_s": 1.0})
    written = strict(path.read_text())["results"]["models"]["m"]
    assert written == {"metrics": {"roc_auc": {"value": None, "low": None, "high": None}}, "model_seed": None, "spread": [None, 1.0]}
    read = results.load(tmp_path, "chapter")["results"]["models"]["m"]
    assert all(math.isnan(v) for v in read["metrics"]["roc_auc"].values())  # an undefined metric is NaN again
    assert read["model_seed"] is None and read["spread"] == [None, 1.0]  # other nulls stay as written


def test_missing_results_name_the_chapter_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebooks/04_trust_checks.ipynb"):
        results.load(tmp_path, chapters.TRUST_CHECKS)
    with pytest.raises(FileNotFoundError, match="run chapter 00_data_exploration"):
        results.near_duplicates(tmp_path)


def test_every_chapter_a_chapter_needs_is_a_chapter_and_runs_before_it():
    order = [record.name for record in chapters.CHAPTERS]
    for record in chapters.CHAPTERS:
        assert all(order.index(needed) < order.index(record.name) for needed in record.needs), record.name
    assert chapters.TASK1 in chapters.record(chapters.PERFORMANCE).needs  # it reads chapter 01's training time
    with pytest.raises(KeyError, match="no chapter '99_mine'; the chapters are 00_data_exploration"):
        chapters.record("99_mine")
    assert chapters.get("99_mine") is None


def _chapter(root, chapter, models):
    (root / chapter).mkdir(parents=True)
    saved = {"provenance": {"chapter": chapter, "datasets": {"covid-xray/two": {}}}, "results": {"models": models}}
    (root / chapter / "results.json").write_text(json.dumps(saved))


def _scored(value, low, high):
    return {"metrics": {"roc_auc": {"value": value, "low": low, "high": high},
                        "balanced_accuracy": {"value": value, "low": low, "high": high}}}


@pytest.fixture
def floored(tmp_path):
    _chapter(tmp_path, chapters.TASK1, {"VGG16": _scored(0.95, 0.9, 1.0)})
    _chapter(tmp_path, chapters.CORONAHACK, {"ResNet34": _scored(0.64, 0.58, 0.7), "Xception": _scored(0.5, 0.5, 0.5),
                                            "VGG19": {"error": "ResourceExhaustedError: out of memory"}})
    return tmp_path


def test_results_below_their_floor_are_named_with_chapter_model_metric_value_and_floor(floored):
    floors = [results.Floor(chapters.TASK1, "roc_auc", at_least=0.9),
              results.Floor(chapters.CORONAHACK, "balanced_accuracy", interval_above=0.5)]
    failures = results.floor_failures(floored, floors, [chapters.TASK1, chapters.CORONAHACK])
    assert failures == [
        "03_coronahack_models, model Xception, balanced_accuracy: 0.500 [0.500, 0.500], below the floor interval above 0.5",
        "03_coronahack_models, model VGG19, balanced_accuracy: no value (the model failed: ResourceExhaustedError: out of memory), "
        "floor interval above 0.5",
    ]
    assert results.floor_failures(floored, [results.Floor(chapters.TASK1, "roc_auc", at_least=0.96)], [chapters.TASK1]) == [
        "01_vgg16_binary, model VGG16, roc_auc: 0.950, below the floor >= 0.96"
    ]
    # a chapter this build did not run is not held to its floors (its results may be an older build's)
    assert results.floor_failures(floored, floors, [chapters.TASK1]) == []
    assert results.floor_failures(floored, [results.Floor(chapters.TASK1, "roc_auc", model="AlexNet", at_least=0.5)], [chapters.TASK1])


def test_a_floor_must_say_what_it_bounds():
    with pytest.raises(ValueError, match="exactly one of"):
        results.Floor(chapters.TASK1, "roc_auc")
    with pytest.raises(ValueError, match="modelling chapter"):
        results.Floor(chapters.SUMMARY, "roc_auc", at_least=0.5)


def test_a_build_below_a_floor_fails_after_running_everything(floored, monkeypatch, capsys):
    from xrayutils import cli

    monkeypatch.setattr(parameters, "load_profiles", lambda: {"cpu": {"notebooks": {}, "floors": [
        {"chapter": chapters.CORONAHACK, "metric": "balanced_accuracy", "interval_above": 0.5}]}})
    monkeypatch.setattr(build, "fetch", lambda data_dir: 0.0)
    ran = [{"notebook": chapters.TASK1, "status": "ok", "seconds": 1.0}, {"notebook": chapters.CORONAHACK, "status": "ok", "seconds": 1.0}]
    monkeypatch.setattr(build, "run_notebooks", lambda *args, **kwargs: ran)
    (floored / "outputs").mkdir()
    for chapter in (chapters.TASK1, chapters.CORONAHACK):
        (floored / chapter).rename(floored / "outputs" / chapter)
    assert cli.main(["build", "--profile", "cpu", "--build-dir", str(floored), "--no-html"]) == 1
    err = capsys.readouterr().err
    assert "Below its floor (cpu profile): 03_coronahack_models, model Xception" in err and "Failed: floors" in err
    malformed = [{"chapter": chapters.TASK1, "metric": "roc_auc"}]
    monkeypatch.setattr(parameters, "load_profiles", lambda: {"cpu": {"notebooks": {}, "floors": malformed}})
    assert cli.main(["build", "--profile", "cpu", "--build-dir", str(floored), "--no-html"]) == 2  # malformed: refused before running


def test_a_write_that_fails_leaves_no_partial_file_and_the_old_result_intact(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    results.write_json_atomic(path, {"kept": 1})

    class FullDisk(io.StringIO):
        def write(self, text):
            raise OSError(28, "No space left on device")

    real = tempfile.NamedTemporaryFile

    def full(*args, **kwargs):
        handle = real(*args, **kwargs)
        handle.write = FullDisk().write
        return handle

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", full)
    with pytest.raises(OSError, match="No space left"):
        results.write_json_atomic(path, {"new": 2})
    assert json.loads(path.read_text()) == {"kept": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_build_sweeps_the_partial_files_a_killed_writer_left(tmp_path):
    folder = tmp_path / "outputs" / "00_data_exploration"
    folder.mkdir(parents=True)
    (folder / ".results.json.abc123.partial").write_text('{"half')
    (folder / "results.json").write_text("{}")
    assert [p.name for p in results.sweep_partial(tmp_path)] == [".results.json.abc123.partial"]
    assert [p.name for p in folder.iterdir()] == ["results.json"]
