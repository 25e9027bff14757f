"""The results files: written atomically, never losing a different earlier run, read back by chapter."""

from __future__ import annotations

import json

import pytest

from xrayutils import results


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


def test_missing_results_name_the_chapter_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebooks/04_trust_checks.ipynb"):
        results.load(tmp_path, results.TRUST_CHECKS)
    with pytest.raises(FileNotFoundError, match="run chapter 00_data_exploration"):
        results.near_duplicates(tmp_path)


def test_every_chapter_a_chapter_needs_is_a_chapter():
    chapters = {results.DATA_EXPLORATION, *results.MODELLING, results.TRUST_CHECKS, results.SUMMARY, results.PERFORMANCE}
    assert set(results.NEEDS) <= chapters and all(set(needed) <= chapters for needed in results.NEEDS.values())
    assert results.TASK1 in results.NEEDS[results.PERFORMANCE]  # it reads chapter 01's training time
