from __future__ import annotations

import json

from xrayutils import book


def test_same_run_overwrites_its_results(tmp_path):
    path = tmp_path / "results.json"
    provenance = {"parameters": {"seed": 1}, "wall_time_s": 3.0}
    assert book.save_results(path, {"accuracy": 0.5}, provenance) is None
    assert book.save_results(path, {"accuracy": 0.5}, {**provenance, "wall_time_s": 9.0}) is None
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_rerun_with_other_parameters_keeps_the_earlier_result(tmp_path):
    path = tmp_path / "results.json"
    book.save_results(path, {"accuracy": 0.5}, {"parameters": {"seed": 1}})
    kept = book.save_results(path, {"accuracy": 0.9}, {"parameters": {"seed": 2}})
    assert kept is not None and kept.name.startswith("results.previous-")
    assert json.loads(kept.read_text())["results"] == {"accuracy": 0.5}
    assert json.loads(path.read_text())["results"] == {"accuracy": 0.9}


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    import numpy as np

    book.write_json_atomic(tmp_path / "a.json", {"x": np.float32(0.25), "y": np.arange(2)})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 0.25, "y": [0, 1]}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_stamp_states_every_fact(tmp_path):
    run = book.Chapter("00_test", profile="smoke", parameters={"seed": 3}, output_root=tmp_path)
    info = run.provenance()
    text = book.stamp_markdown(info)
    for fact in ("Profile", "`smoke`", "`seed` = `3`", "Data", "Weights", "tensorflow", "Commit", "Device", "Wall time"):
        assert fact in text
    assert info["versions"]["python"].count(".") == 2


def test_weights_notice_warns_when_a_model_is_not_pretrained():
    from xrayutils import models

    pretrained = models.Weights("imagenet", "ImageNet (weights=imagenet)")
    scratch = models.resolve_weights("none")
    assert 'class="admonition note"' in book.weights_notice({"VGG16": pretrained})
    notice = book.weights_notice({"VGG16": pretrained, "AlexNet": scratch})
    assert 'class="admonition warning"' in notice
    assert notice.count("not transfer learning") == 1 and "AlexNet started from random weights" in notice


def test_published_results_ship_with_the_package():
    table = book.published_results()
    assert len(table) == 12
    assert len(book.published_results("coronahack")) == 9
    challenge = book.published_results("class-challenge")
    assert challenge["accuracy"].tolist() == [0.90, 0.75, 0.3611]
