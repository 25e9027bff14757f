from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import save_image, synthetic_xray
from tests.test_train import tiny_model
from xrayutils import cli, datasets, evaluate, jobs, predict


@pytest.fixture
def saved_model(tmp_path):
    path = tmp_path / "model" / "tiny-res32-test-two.keras"
    path.parent.mkdir()
    jobs.save_model(tiny_model(), path, classes=["covid", "normal"], history={}, provenance={})
    return path


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "images"
    good = [save_image(folder / f"gray-{i}.jpeg", synthetic_xray(i)) for i in range(2)]
    good.append(save_image(folder / "rgba.png", synthetic_xray(5), "RGBA"))
    good.append(save_image(folder / "deep.png", synthetic_xray(6), "I;16"))
    tiff = folder / "scan.tiff"  # a format TensorFlow cannot decode: Pillow reads it
    Image.fromarray(synthetic_xray(7).astype(np.uint16) * 257).save(tiff)
    good.append(tiff)
    fake = folder / "notes.png"
    fake.write_text("not an image")
    return folder, good, fake


def test_every_readable_file_is_predicted_and_bad_ones_are_named(saved_model, files, tmp_path):
    folder, good, fake = files
    model, classes = predict.load_model(saved_model)
    table = predict.predict_files(model, classes, [folder, tmp_path / "missing.jpeg"])
    assert len(table) == len(good) + 2
    ok = table[table["error"] == ""]
    assert sorted(ok["file"]) == sorted(map(str, good))
    np.testing.assert_allclose(ok[["p_covid", "p_normal"]].sum(axis=1), 1, rtol=1e-5)
    assert set(ok["predicted"]) <= {"covid", "normal"}
    errors = dict(zip(table["file"], table["error"]))
    assert errors[str(tmp_path / "missing.jpeg")] == "no such file"
    assert "not an image" in errors[str(fake)]


def test_folders_are_scanned_by_the_one_suffix_list_in_datasets(tmp_path, monkeypatch):
    for suffix in [*sorted(datasets.READABLE_SUFFIXES), ".JPG", ".txt"]:
        (tmp_path / f"file{suffix}").write_bytes(b"")
    found = {p.suffix for p in predict.image_files([tmp_path])}
    assert found == datasets.READABLE_SUFFIXES | {".JPG"}
    assert found >= datasets.IMAGE_SUFFIXES  # whatever a dataset holds, predict finds
    monkeypatch.setattr(datasets, "READABLE_SUFFIXES", {".txt"})
    assert [p.name for p in predict.image_files([tmp_path])] == ["file.txt"]  # no copy of the list in predict


def test_a_grayscale_and_an_rgb_copy_get_the_same_prediction(saved_model, tmp_path):
    gray = save_image(tmp_path / "a.png", synthetic_xray(9), "L")
    rgb = save_image(tmp_path / "b.png", synthetic_xray(9), "RGB")
    model, classes = predict.load_model(saved_model)
    table = predict.predict_files(model, classes, [gray, rgb])
    np.testing.assert_allclose(table.loc[0, "p_covid"], table.loc[1, "p_covid"], rtol=1e-6)


def test_command_line_prints_each_file_and_fails_when_one_is_bad(saved_model, files, tmp_path, capsys):
    folder, good, fake = files
    csv = tmp_path / "out.csv"
    code = cli.main(["predict", str(saved_model), str(folder), "--csv", str(csv)])
    out, err = capsys.readouterr()
    assert code == 1
    assert all(p.name in out for p in good) and f"{fake}: not an image" in err
    assert f"{len(good)} of {len(good) + 1} files predicted" in err
    assert csv.read_text().count("\n") == len(good) + 2
    assert cli.main(["predict", str(saved_model), str(good[0])]) == 0


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["predict", str(tmp_path / "none.keras"), str(tmp_path)]) == 2
    assert "no model file at" in capsys.readouterr().err


def test_a_file_that_is_no_model_gets_a_message_saying_so_not_a_traceback(tmp_path, saved_model, capsys):
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"these bytes are no zip archive")
    image = save_image(tmp_path / "x.png", synthetic_xray(1))
    assert cli.main(["predict", str(junk), str(image)]) == 2
    err = capsys.readouterr().err
    assert "junk.keras is not a Keras model: a .keras file is a zip archive" in err and "Traceback" not in err
    not_a_model = tmp_path / "notes.txt"
    not_a_model.write_text("hello")
    with pytest.raises(predict.ModelFileError, match="could not be loaded as a Keras model"):
        predict.load_model(not_a_model)
    assert cli.main(["predict", str(tmp_path / "absent.keras"), str(image)]) == 2
    assert "no model file at" in capsys.readouterr().err


def test_decode_errors_read_as_sentences_without_tensorflow_internals(tmp_path):
    from xrayutils import pipeline

    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 50)
    message = pipeline.decode_error(str(fake))
    assert message and "function_node" not in message and "[Op:" not in message and "PNG" in message


def test_files_stream_in_order_past_bad_ones_as_a_prediction_in_memory_would(saved_model, files, tmp_path):
    folder, good, fake = files
    model, _ = predict.load_model(saved_model)
    tiff = good[4]  # TensorFlow drops it from the stream; Pillow reads it afterwards
    paths = [good[0], fake, tiff, good[1], tmp_path / "gone.png", good[2], good[3]]
    tiffs = [tmp_path / f"scan-{i}.tiff" for i in range(3)]  # more than a batch of files only Pillow reads
    for tiff_copy in tiffs:
        tiff_copy.write_bytes(tiff.read_bytes())
    paths += tiffs
    proba, errors = predict.probabilities(model, paths, batch_size=2)
    assert sorted(errors) == [1, 4] and errors[4] == "no such file"
    assert np.isnan(proba[[1, 4]]).all()
    read = [0, 2, 3, 5, 6, 7, 8, 9]
    in_memory = np.stack([predict.read_image(Path(paths[i]), model.input_shape[1:3]) for i in read])
    np.testing.assert_allclose(proba[read], evaluate.as_probabilities(model.predict(in_memory, verbose=0)), rtol=1e-5, atol=1e-7)


def test_prediction_speed_times_the_same_files_both_ways(saved_model, files, monkeypatch):
    import time

    from xrayutils import benchmark

    model, _ = predict.load_model(saved_model)
    reading = predict.probabilities

    def slow_disk(*args, **kwargs):  # reading the files takes 0.25 s more: only the predict path may see it
        time.sleep(0.25)
        return reading(*args, **kwargs)

    monkeypatch.setattr(predict, "probabilities", slow_disk)
    speed = benchmark.prediction_speed(model, files[1], batch_size=2, repeats=1)
    n = len(files[1])
    assert speed["images"] == n and speed["predict images/s"] <= n / 0.25
    assert speed["forward-only images/s"] > 2 * n / 0.25  # a tiny model on batches in memory: far faster
    assert speed["predict / forward-only"] < 0.5
