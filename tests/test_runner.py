"""The runner when things go wrong: failed, stopped and killed chapters, broken state, bad values, bad data, bad folders.

Each test reproduces one item of what a new user met (issue 26) and shows the runner now names it and goes on.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil

import nbformat
import numpy as np
import pytest
from bs4 import BeautifulSoup
from PIL import Image

from tests.conftest import make_tiny_data
from xrayutils import chapters, cli, constraints, datasets, pagecheck, rerun, results
from xrayutils.runner import build, data, execution, html, pages, parameters
from xrayutils.sources import coronahack

NOTEBOOKS = parameters.chapter_notebooks()
CHAPTER = {nb.stem[:2]: nb for nb in NOTEBOOKS}


def _half_run(source, page, *, error: str | None = None, running_cell: int | None = None):
    """``source`` as papermill leaves it partway: a start and no end, code cells up to one with an error or one running."""
    executed = nbformat.read(source, as_version=4)
    executed.metadata["papermill"] = {"start_time": "2026-12-03T10:00:00", "end_time": None, "exception": bool(error)}
    code = [c for c in executed.cells if c.cell_type == "code"]
    if error:
        code[2].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue=error, traceback=[])]
    if running_cell:
        code[running_cell - 1].metadata["papermill"] = {"status": "running"}
    page.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(executed, page)
    return page


# 1 and 2: a failed, stopped or killed chapter's page renders


def test_a_page_that_stopped_partway_has_every_glued_value_it_never_reached_filled(tmp_path):
    page = _half_run(CHAPTER["00"], tmp_path / "00.ipynb", error="bad")
    pages.mark_page(page, "failed", "the build started 2026-12-03 10:00", "ValueError: bad")
    executed = nbformat.read(page, as_version=4)
    assert executed.cells[1].source.startswith("**This chapter failed at code cell 3, in the build started 2026-12-03 10:00**")
    assert executed.metadata[pages.STATUS_KEY] == {"status": "failed", "build": "the build started 2026-12-03 10:00", "cell": 3}
    glued = {o.metadata["scrapbook"]["name"]: o.data["text/plain"] for c in executed.cells if c.cell_type == "code"
             for o in c.get("outputs", []) if "scrapbook" in o.get("metadata", {})}
    source = "".join(c.source for c in nbformat.read(CHAPTER["00"], as_version=4).cells if c.cell_type == "markdown")
    assert "n_adults" in glued and "rerun_box" in glued  # a role and a directive
    assert glued["n_adults"] == repr("not computed: the chapter failed at code cell 3")
    assert all(f"`{key}`" in source or f"}} {key}" in source for key in glued)  # only keys the page refers to
    assert pages.fill_glue(executed, "again") == []  # nothing left to fill


def test_a_page_a_killed_build_left_is_marked_at_the_next_build_and_counted_as_not_finished(tmp_path):
    site = tmp_path / "site"
    _half_run(CHAPTER["03"], site / "notebooks" / CHAPTER["03"].name, running_cell=5)
    shutil.copy(CHAPTER["00"], site / "notebooks" / CHAPTER["00"].name)  # a finished page (no papermill record)
    not_finished = pages.stage_book(site, [], {})
    killed = nbformat.read(site / "notebooks" / CHAPTER["03"].name, as_version=4)
    assert "stopped at code cell 5, in an earlier build, which was killed" in killed.cells[1].source
    assert "03_coronahack_models" in not_finished and "00_data_exploration" not in not_finished
    assert "05_summary" in not_finished  # never ran here: a placeholder
    pages.stage_book(site, [], {})  # staged again: marked once
    assert sum("killed" in c.source for c in nbformat.read(site / "notebooks" / CHAPTER["03"].name, as_version=4).cells) == 1


@pytest.fixture(scope="module")
def failed_book(tmp_path_factory):
    """A smoke build whose only chapter, 01, broke at its third code cell: the HTML book built around it, and what the build printed."""
    def execute(nb, output, parameters):  # chapter 01 breaks at its third code cell, before any of its figures
        _half_run(nb, output, error="this chapter is broken")
        raise RuntimeError("ValueError: this chapter is broken")

    folder = tmp_path_factory.mktemp("failed_book")
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()) as out, \
            contextlib.redirect_stderr(io.StringIO()) as err:
        patch.setattr(execution, "execute", execute)
        code = cli.main(["build", "--profile", "smoke", "--build-dir", str(folder / "build"),
                         "--data-dir", str(make_tiny_data(folder / "data")), "--only", "01"])
    return code, folder / "build", out.getvalue(), err.getvalue()


def test_a_failed_chapter_still_gives_the_book_its_summary_check_and_timings(failed_book):
    code, tmp_path, out, err = failed_book
    assert code == 1
    assert "Summary" in out and "01_vgg16_binary" in out and "Failed: 01_vgg16_binary" in err
    assert "jupyter-book build failed" not in out + err and "HTML check" not in out
    assert (tmp_path / "timings.json").is_file()
    html = (tmp_path / "site" / "_build" / "html" / "notebooks" / "01_vgg16_binary.html").read_text()
    assert "This chapter failed at code cell 3" in html and "not computed: the chapter failed at code cell 3" in html
    assert "Not drawn: the chapter failed at code cell 3" in html  # its figures, which the text refers to by number


def test_a_page_rewritten_from_an_old_environment_keeps_its_links_to_the_reference(failed_book):
    """Issue 41: after a build whose link cache lacked a page, Sphinx rewrote that page without a link, in every later build.

    The state is made directly: the cache gone and one unchanged page's HTML older
    than its source, so that an incremental build writes it from the pickled
    environment (there it showed 60 names unlinked, the page check failed).
    """
    _, build_dir, _, _ = failed_book
    site, html = build_dir / "site", build_dir / "site" / "_build" / "html"
    (site / "_build" / ".doctrees" / "codeautolink-cache.json").unlink()
    page = html / "notebooks" / "01_vgg16_binary.html"  # the page with code cells (the others are placeholders)
    linked = len(BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser").select("div.cell_input a.sphinx-codeautolink-a"))
    os.utime(page, (0, 0))
    build.build_html(site)
    assert page.stat().st_mtime > 0  # written again
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    assert linked > 10 and len(soup.select("div.cell_input a.sphinx-codeautolink-a")) == linked
    assert pagecheck.unlinked_names(page.name, soup) == []


def test_a_chapter_whose_page_a_kill_cut_off_runs_again_although_its_record_is_older(tmp_path, fake_chapters):
    chapter = [CHAPTER["01"]]
    execution.run_notebooks(chapter, "smoke", {}, tmp_path, "", force=False)
    _half_run(CHAPTER["01"], tmp_path / "site" / "notebooks" / CHAPTER["01"].name, running_cell=4)  # the next run, killed
    fake_chapters.ran.clear()
    assert not execution.run_notebooks(chapter, "smoke", {}, tmp_path, "", force=False)[0].get("unchanged")
    assert fake_chapters.ran == ["01_vgg16_binary"]


# 3: a chapter skipped in a build loses its record


def test_a_skipped_chapter_loses_its_record_so_the_next_build_runs_it(tmp_path, fake_chapters):
    chosen = [CHAPTER["03"], CHAPTER["04"]]
    assert all(t["status"] == "ok" for t in execution.run_notebooks(chosen, "smoke", {}, tmp_path, "", force=False))
    assert set(rerun.recorded(tmp_path)) == {"03_coronahack_models", "04_trust_checks"}
    fake_chapters.fail["03_coronahack_models"] = RuntimeError("broke")
    timings = execution.run_notebooks(chosen, "smoke", {}, tmp_path, "", force=True)
    assert [t["status"] for t in timings] == ["failed", "skipped"] and rerun.recorded(tmp_path) == {}
    assert not any(t.get("unchanged") for t in execution.run_notebooks(chosen, "smoke", {}, tmp_path, "", force=False))


# 4: broken state is named, set aside and recovered


def test_a_broken_runs_file_is_set_aside_and_every_chapter_runs_again(tmp_path, capsys):
    (tmp_path / rerun.RUNS_FILE).write_text('{"01_vgg16_binary": {"key": "ab')
    assert rerun.recorded(tmp_path) == {}
    assert (tmp_path / "runs.json.broken").is_file() and not (tmp_path / rerun.RUNS_FILE).exists()
    assert "runs.json is broken" in capsys.readouterr().out


def test_a_broken_results_file_is_set_aside_and_its_chapter_reruns(tmp_path, fake_chapters, capsys):
    fake_chapters.writes_results = True
    chapter = [CHAPTER["01"]]
    execution.run_notebooks(chapter, "smoke", {}, tmp_path, "", force=False)
    assert execution.run_notebooks(chapter, "smoke", {}, tmp_path, "", force=False)[0].get("unchanged")
    saved = tmp_path / "outputs" / "01_vgg16_binary" / "results.json"
    saved.write_text(saved.read_text()[:10])  # cut short
    fake_chapters.ran.clear()
    execution.run_notebooks(chapter, "smoke", {}, tmp_path, "", force=False)
    assert fake_chapters.ran == ["01_vgg16_binary"] and (saved.parent / "results.json.broken").is_file()
    assert "results.json is broken (not valid JSON)" in capsys.readouterr().out
    fake_chapters.writes_results = False
    saved.write_text(json.dumps({"results": {"ok": False}}))  # valid, but not what the run wrote
    fake_chapters.ran.clear()
    execution.run_notebooks(chapter, "smoke", {}, tmp_path, "", force=False)
    assert fake_chapters.ran == ["01_vgg16_binary"]


def test_a_chapter_reading_a_broken_results_file_names_it_and_its_chapter(tmp_path):
    (tmp_path / "01_vgg16_binary").mkdir()
    (tmp_path / "01_vgg16_binary" / "results.json").write_text('{"results": {')
    with pytest.raises(results.BrokenResultsError, match=r"01_vgg16_binary/results.json is broken .*rerun chapter 01_vgg16_binary"):
        results.load(tmp_path, "01_vgg16_binary")


# 5: values checked against what the chapters accept


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("optimizer", 'ad"am', "optimizer takes 'adadelta'"),
    ("validation_fraction", 1.5, "validation_fraction must lie in (0, 1), got 1.5"),
    ("validation_fraction", 0.0, "validation_fraction must lie in (0, 1)"),
    ("mixed_precision", "fast", "mixed_precision takes 'auto', True, False, 'mixed_float16', 'mixed_bfloat16'; got 'fast'"),
    ("weights", "no/such/file.h5", "weights takes auto, imagenet, none, a weights file or a folder"),
])
def test_a_value_outside_what_a_chapter_accepts_is_refused_naming_what_it_accepts(name, value, expected):
    with pytest.raises(parameters.ParameterError, match=__import__("re").escape(expected)):
        parameters.resolve_parameters(CHAPTER["01"], "cpu", {name: value})


def test_chapter_03s_models_and_metrics_are_checked_by_name():
    with pytest.raises(parameters.ParameterError, match="model_names takes .*; got 'Bogus'"):
        parameters.resolve_parameters(CHAPTER["03"], "cpu", {"model_names": ["VGG16", "Bogus"]})
    with pytest.raises(parameters.ParameterError, match="leaderboard_metric takes"):
        parameters.resolve_parameters(CHAPTER["03"], "cpu", {"leaderboard_metric": "auc"})
    parameters.resolve_parameters(CHAPTER["03"], "cpu", {"leaderboard_metric": "recall_pneumonia", "model_names": ["ResNet34"]})


def test_a_weights_file_must_be_one_and_a_relative_one_is_made_absolute(tmp_path, monkeypatch):
    junk = tmp_path / "junk.h5"
    junk.write_text("not weights")
    with pytest.raises(parameters.ParameterError, match="junk.h5 is not a weights file"):
        parameters.resolve_parameters(CHAPTER["01"], "cpu", {"weights": str(junk)})
    good = tmp_path / "vgg16.h5"
    good.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(8))
    monkeypatch.chdir(tmp_path)
    assert parameters.resolve_parameters(CHAPTER["01"], "cpu", {"weights": "vgg16.h5"})["weights"] == str(good)


def test_the_optimizers_and_image_sizes_accepted_are_those_keras_accepts():
    import keras

    from xrayutils import catalogue

    for name in constraints.OPTIMIZERS:  # as the chapters compile them (xrayutils.train.compile_model)
        keras.optimizers.get({"class_name": name, "config": {"learning_rate": 0.1}})
    for name, backbone in catalogue.BACKBONES.items():  # Keras refuses one pixel less than the catalogue's, before building anything
        least = backbone.min_image_size
        with pytest.raises(ValueError, match=f"{least}"):
            getattr(keras.applications, name)(include_top=False, weights=None, input_shape=(least - 1, least - 1, 3))


def test_an_image_size_too_small_for_a_chosen_model_is_refused_before_anything_runs():
    with pytest.raises(parameters.ParameterError, match=r"image_size 40 is too small for Xception \(at least 71\)"):
        parameters.resolve_parameters(CHAPTER["03"], "smoke", {"image_size": 40})
    with pytest.raises(parameters.ParameterError, match="InceptionV3 \\(at least 75\\)"):
        parameters.resolve_parameters(CHAPTER["03"], "cpu", {"image_size": 72})
    assert parameters.resolve_parameters(CHAPTER["03"], "smoke", {"image_size": 40, "model_names": ["ResNet34"]})["image_size"] == 40


# 6: the layout of every dataset, before anything runs


def test_the_data_step_names_every_missing_folder_of_every_dataset(data_dir):
    (data_dir / "covid-xray" / "two").rename(data_dir / "covid-xray" / "two-moved")
    (data_dir / "covid-xray" / "all").rename(data_dir / "covid-xray" / "all-moved")
    with pytest.raises(datasets.DataNotFoundError) as caught:
        data.fetch(str(data_dir))
    message = str(caught.value)
    assert "missing folder" in message and "/two/train/covid" in message and "/all/test/pneumonia_vir" in message
    assert "Expected:" in message


# 7: CoronaHack's metadata, a bad row at a time


def test_malformed_coronahack_rows_are_named_and_left_out_and_the_others_load(data_dir):
    csv = data_dir / "coronahack" / coronahack.CSV
    lines = csv.read_text().splitlines()
    good = len(lines) - 1
    first = lines[1].split(",")
    extra = ",".join([*first, "surplus"])
    empty_label = ",".join([first[0], first[1], "", *first[3:]])
    short = ",".join(first[:3])
    csv.write_text("\n".join([lines[0], extra, empty_label, short, *lines[2:]]) + "\n")
    for task in ("two", "all"):
        with pytest.warns(UserWarning, match="3 rows of Chest_xray_Corona_Metadata.csv are malformed"):
            loaded = datasets.load("coronahack", task=task, root=data_dir / "coronahack", check_images=False)
        reasons = " ".join(loaded.skipped["reason"])
        assert "line 2 of Chest_xray_Corona_Metadata.csv has 7 fields, the header 6" in reasons
        assert "line 3 of Chest_xray_Corona_Metadata.csv has the label ''" in reasons
        assert "line 4 of Chest_xray_Corona_Metadata.csv has 3 fields" in reasons
        assert len(loaded) == good - 1  # the first row was replaced by the three bad ones


# 8: a folder the build cannot write


def test_a_build_folder_that_cannot_be_written_is_one_line_and_exit_2(tmp_path, capsys, data_dir):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    code = cli.main(["build", "--profile", "smoke", "--build-dir", str(blocked / "build"), "--data-dir", str(data_dir)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("xray-book: could not write") and str(blocked) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# 9: every spelling of a machine folder on a page


def test_a_folder_with_non_ascii_characters_is_replaced_however_the_page_spells_it(tmp_path):
    folder = "/m/dätä dir"
    injected = 'data_dir = "' + folder.encode("unicode_escape").decode() + '"'  # as papermill injects it
    page = tmp_path / "page.ipynb"
    page.write_text(json.dumps({"a": injected, "b": folder, "c": folder}, ensure_ascii=False)
                    + json.dumps({"d": folder}))  # the last with JSON's \u escapes
    pages.without_folders(page, {folder: "<data>"})
    text = page.read_text()
    assert "dätä" not in text and "d\\u00e4" not in text and "xe4" not in text and text.count("<data>") == 4


def test_a_weights_folder_gets_its_own_placeholder(tmp_path):
    weights = tmp_path / "keras-models"
    weights.mkdir()
    assert pages.machine_folders(tmp_path / "build", "", str(weights))[str(weights)] == "<weights>"


# 10: what reruns, and images read alike everywhere


def test_a_change_in_a_subpackage_of_the_package_reruns_the_chapters(tmp_path):
    """A dataset record lives in xrayutils/sources/: changing it must change the code every chapter's key holds."""
    copy = tmp_path / "xrayutils"
    shutil.copytree(rerun.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = rerun.code_signature(copy)
    assert rerun.code_signature(copy) == before
    record = copy / "sources" / "covid_xray.py"
    record.write_text(record.read_text().replace("160", "161"))
    assert rerun.code_signature(copy) != before


def test_the_data_signature_sees_a_same_size_change_with_its_time_set_back(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"\x00\x01")
    before, stat = rerun.data_signature(tmp_path), image.stat()
    image.write_bytes(b"\x01\x00")
    import os

    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert rerun.data_signature(tmp_path) != before


def test_every_chapter_that_loads_a_dataset_says_so(tmp_path):
    for nb in NOTEBOOKS:
        source = "".join(c.source for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code")
        loaded = {name for name in datasets.SOURCES if f'"{name}"' in source}
        loaded |= {datasets.ADULTS} if "datasets.ADULTS" in source else set()
        assert loaded <= set(chapters.record(nb.stem).reads), nb.stem


def test_predict_refuses_the_images_the_dataset_loader_refuses(tmp_path):
    from xrayutils import pipeline, predict

    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((1, 1), dtype=np.uint8)).save(tiny)
    assert pipeline.decode_error(str(tiny)) == "image too small (1x1)"
    with pytest.raises(ValueError, match=r"image too small \(1x1\)"):
        predict.read_image(tiny, (32, 32))


def test_a_chapter_alone_in_its_wave_gets_every_core_and_side_by_side_ones_share_them():
    a, b, c = CHAPTER["00"], CHAPTER["01"], CHAPTER["02"]
    assert execution.threads_for([CHAPTER["04"]], 2, 2) == 2
    assert execution.threads_for([a, b, c], 2, 2) == 1
    assert execution.threads_for([a, b], 16, 4) == 8


def test_staging_pages_again_with_nothing_changed_writes_none_so_the_html_rebuild_is_incremental(tmp_path):
    site = tmp_path / "site"
    page = site / "notebooks" / CHAPTER["01"].name
    page.parent.mkdir(parents=True)
    executed = nbformat.read(CHAPTER["01"], as_version=4)
    executed.cells.insert(1, nbformat.v4.new_code_cell('data_dir = "/m/data"\noutput_dir = "/m/out"',
                                                       metadata={"tags": ["injected-parameters"]}))
    nbformat.write(executed, page)
    pages.stage_book(site, [], {"/m": "<machine>"})
    staged = page.stat().st_mtime_ns
    pages.stage_book(site, [], {"/m": "<machine>"})
    assert page.stat().st_mtime_ns == staged  # Sphinx rereads a page whose file changed


def test_a_build_whose_pages_did_not_change_does_not_run_jupyter_book_again(tmp_path, monkeypatch, data_dir):
    version = {"text": "first"}

    def execute(nb, output, parameters):  # the chapter's page, with what this run printed
        executed = nbformat.read(nb, as_version=4)
        executed.cells.append(nbformat.v4.new_markdown_cell(version["text"], id="printed"))
        output.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(executed, output)

    built = []

    def build_html(site):
        built.append(site)
        (site / "_build" / "html").mkdir(parents=True, exist_ok=True)
        (site / "_build" / "html" / "index.html").write_text("<html></html>")
        return site / "_build" / "html"

    monkeypatch.setattr(execution, "execute", execute)
    monkeypatch.setattr(build, "build_html", build_html)
    monkeypatch.setattr(build, "check_html", lambda *args: [])
    monkeypatch.setattr(build.pagecheck, "check_book", lambda *args: [])
    argv = ["build", "--profile", "smoke", "--build-dir", str(tmp_path), "--data-dir", str(data_dir), "--only", "00"]
    assert cli.main(argv) == 0 and len(built) == 1
    assert cli.main(argv) == 0 and len(built) == 1  # the same page: the HTML of the first build stands
    version["text"] = "second"
    assert cli.main(argv) == 0 and len(built) == 2  # a page changed: built again


def test_a_jupyter_book_failure_from_a_full_disk_says_so_in_one_line():
    cause = "OSError: [Errno 28] No space left on device: '/b/site/_build/html/_images/x.png'"
    log = f"Running Sphinx v7.4.7\nwriting output... [ 50%] notebooks/03\n{cause}\n\nTraceback (most recent call last):\n" \
          "  ...\nRuntimeError: Look above for the cause\n"
    assert html.failure_cause(log) == cause
    assert html.failure_cause("WARNING: undefined label\nsphinx.errors.SphinxWarning: ...") is None
