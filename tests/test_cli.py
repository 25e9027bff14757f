"""The runner: parameters are checked, notebooks are clean, a broken chapter fails the build."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import nbformat
import pandas as pd
import pytest

from tests.conftest import make_tiny_data
from xrayutils import cli, rerun
from xrayutils.protocol import TrainingProtocol
from xrayutils.runner import build, execution, interrupts, pages, parameters
from xrayutils.runner import html as runner_html

NOTEBOOKS = parameters.chapter_notebooks()


def test_toc_lists_existing_notebooks():
    assert NOTEBOOKS and all(nb.exists() for nb in NOTEBOOKS)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean_with_one_parameters_cell(notebook):
    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in code)
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    assert set(parameters.RUNNER_PARAMETERS) <= set(parameters.notebook_parameters(notebook))


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_every_profile_names_only_declared_parameters(profile):
    for notebook in NOTEBOOKS:
        parameters.resolve_parameters(notebook, profile, {})


def test_unknown_parameter_is_an_error():
    with pytest.raises(parameters.ParameterError, match="num_epochz"):
        parameters.resolve_parameters(NOTEBOOKS[0], "cpu", {"num_epochz": 3})
    with pytest.raises(parameters.ParameterError, match="unknown profile"):
        parameters.resolve_parameters(NOTEBOOKS[0], "gpu-farm", {})


def test_unknown_parameter_on_the_command_line_stops_before_running(tmp_path, capsys):
    code = cli.main(["run", str(NOTEBOOKS[0]), "--build-dir", str(tmp_path), "-p", "sed", "1"])
    assert code == 2
    assert "sed" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()


def test_override_values_are_read_as_yaml():
    assert parameters.parse_overrides([["epochs", "5"], ["name", "vgg16"], ["rate", "1e-4"]]) == {
        "epochs": 5, "name": "vgg16", "rate": 1e-4,
    }


CHAPTER_01 = parameters.ROOT / "notebooks" / "01_vgg16_binary.ipynb"


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("num_epochs", "abc", "num_epochs must be a whole number like its default 40, got 'abc'"),
    ("image_size", -5, "image_size must be positive, got -5"),
    ("batch_size", 0, "batch_size must be positive, got 0"),
    ("max_images_per_class", -1, "max_images_per_class must be 0 or more, got -1"),
    ("learning_rate", "fast", "learning_rate must be a number"),
    ("seeds", 3, "seeds must be a list of whole numbers"),
    ("seeds", [1, "two"], "seeds must be a list of whole numbers"),
    ("augment", "yes please", "augment must be True or False"),
    ("data_dir", "/elsewhere", "data_dir is set by the runner"),
    ("output_dir", "/elsewhere", "output_dir is set by the runner"),
])
def test_a_value_of_the_wrong_kind_or_range_is_refused_before_anything_runs(name, value, expected):
    with pytest.raises(parameters.ParameterError, match=re.escape(expected)):
        parameters.resolve_parameters(CHAPTER_01, "cpu", {name: value})


def test_values_of_the_right_kind_pass_including_zero_for_all_and_true_for_auto(tmp_path):
    weights = tmp_path / "vgg16.weights.h5"
    weights.write_bytes(b"\x89HDF\r\n\x1a\n")  # an HDF5 file's first bytes
    chosen = {"max_images_per_class": 0, "mixed_precision": True, "weights": str(weights), "learning_rate": 1,
              "seeds": [4, 5], "image_size": 96}
    assert parameters.resolve_parameters(CHAPTER_01, "cpu", chosen).items() >= chosen.items()


def test_a_value_yaml_cannot_read_is_named_with_what_to_give(tmp_path, capsys):
    with pytest.raises(parameters.ParameterError, match=r"-p weights '\"unclosed'.*give a number, text"):
        parameters.parse_overrides([["weights", '"unclosed']])
    assert cli.main(["run", str(CHAPTER_01), "--build-dir", str(tmp_path), "-p", "num_epochs", "-3"]) == 2
    assert "num_epochs must be positive" in capsys.readouterr().err and not (tmp_path / "site").exists()


def _page(tmp_path, body):
    (tmp_path / "notebooks").mkdir(exist_ok=True)
    (tmp_path / "notebooks" / "00_data_exploration.html").write_text(body)


def test_html_check_finds_missing_figures_and_errors(tmp_path):
    notebook = NOTEBOOKS[0]
    figures = sum(1 for c in json.loads(notebook.read_text())["cells"] if c["metadata"].get("mystnb"))
    missing = f"00_data_exploration: page {tmp_path}/notebooks/00_data_exploration.html is missing"
    assert runner_html.check_html(tmp_path, [notebook]) == [missing]
    _page(tmp_path, '<img src="../_images/a.png">' * figures)
    assert runner_html.check_html(tmp_path, [notebook]) == []
    _page(tmp_path, '<img src="../_images/a.png">' * (figures - 1))
    assert "figures expected" in runner_html.check_html(tmp_path, [notebook])[0]
    _page(tmp_path, '<img src="../_images/a.png">' * figures + "Traceback (most recent call last)")
    assert "error output" in runner_html.check_html(tmp_path, [notebook])[0]
    _page(tmp_path, '<img src="../_images/a.png">' * figures + "<p>| Chapter | 00 |</p>")
    assert "raw Markdown" in runner_html.check_html(tmp_path, [notebook])[0]


def test_broken_notebook_fails_the_run(tmp_path, monkeypatch, capsys):
    broken = tmp_path / "notebooks" / "99_broken.ipynb"
    broken.parent.mkdir()
    shutil.copy(NOTEBOOKS[0], broken)
    nb = nbformat.read(broken, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('this chapter is broken')"))
    nb.cells = [c for c in nb.cells if c.cell_type == "markdown" or "parameters" in c.metadata.get("tags", []) or "raise" in c.source]
    nbformat.write(nb, broken)
    monkeypatch.setattr(parameters, "load_profiles", lambda: {"smoke": {"notebooks": {}}})
    code = cli.main(["run", str(broken), "--profile", "smoke", "--build-dir", str(tmp_path / "build")])
    assert code == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "this chapter is broken" in out
    assert (tmp_path / "build" / "site" / "notebooks" / "99_broken.ipynb").exists()


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory, worker_id):
    """Every chapter, executed by papermill under smoke on generated images into one build folder, two at a time.

    Built once per test run: ``make test``'s workers share it (the first to ask
    builds it while the other waits), where each used to build its own when the
    tests reading it were dealt to both.  The tests only read it.
    """
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = (base if worker_id == "master" else base.parent) / "tiny_book"  # a worker's basetemp is popen-gwN in the run's own
    with FileLock(f"{root}.lock"):
        exit_code = root / "exit_code"
        if not exit_code.exists():
            data = make_tiny_data(root / "data")
            code = cli.main(["build", "--profile", "smoke", "--data-dir", str(data), "--build-dir", str(root / "build"),
                             "--no-html", "--jobs", "2", "-p", "weights", "none"])
            exit_code.write_text(str(code))
    return int(exit_code.read_text()), root / "build"


def _executed(build, stem):
    return nbformat.read(build / "site" / "notebooks" / f"{stem}.ipynb", as_version=4)


def _figures_drawn(notebook):
    figure_cells = [c for c in notebook.cells if c.metadata.get("mystnb")]
    return len(figure_cells), all(any("image/png" in o.get("data", {}) for o in c.outputs) for c in figure_cells)


def test_every_chapter_runs_on_tiny_data(tiny_book):
    code, build = tiny_book
    assert code == 0
    timings = json.loads((build / "timings.json").read_text())
    assert [t["notebook"] for t in timings["notebooks"]] == [nb.stem for nb in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_records_every_parameter_of_its_parameters_cell(notebook, tiny_book):
    _, build = tiny_book
    recorded = json.loads((build / "outputs" / notebook.stem / "run_info.json").read_text())["parameters"]
    assert set(recorded) == set(parameters.notebook_parameters(notebook)) - set(parameters.RUNNER_PARAMETERS)
    assert recorded.get("weights", "none") == "none"  # the -p override, not the cell's default


def test_chapter_00_audits_the_tiny_data(tiny_book):
    _, build = tiny_book
    saved = json.loads((build / "outputs" / "00_data_exploration" / "results.json").read_text())
    assert saved["provenance"]["profile"] == "smoke"
    assert saved["results"]["totals"]["covid-xray"]["train"]["covid"] == 3
    assert saved["results"]["train_test_leaks"] == 0  # every generated image is distinct
    assert saved["results"]["adults"]["images"] == 4 and saved["results"]["adults"]["age"]["unknown"] == 1
    assert (build / "outputs" / "00_data_exploration" / "run_info.json").exists()
    assert _figures_drawn(_executed(build, "00_data_exploration"))[1], "a figure cell produced no image"


@pytest.mark.parametrize("stem", ["01_vgg16_binary", "02_vgg16_vs_alexnet", "03_coronahack_models"])
def test_modelling_chapter_trains_tests_saves_and_reports(stem, tiny_book):
    """Train, test, save and report, under smoke, on generated images: every figure drawn, a model saved."""
    _, build = tiny_book
    out = build / "outputs" / stem
    saved = json.loads((out / "results.json").read_text())
    protocol = TrainingProtocol.from_results(saved)  # recorded whole, and as the profile set it
    assert protocol.num_epochs == 1 and protocol.image_size == parameters.load_profiles()["smoke"]["notebooks"][stem]["image_size"]
    assert all(w.startswith("random initialisation") for w in saved["provenance"]["weights"].values())
    for name, model in saved["results"]["models"].items():
        assert "error" not in model, name
        assert 0 <= model["metrics"]["accuracy"]["low"] <= model["metrics"]["accuracy"]["value"] <= 1
        assert (out / model["model_file"]).exists() and (out / model["model_file"]).with_suffix(".json").exists()
        assert len(pd.read_csv(out / model["predictions_file"])) == saved["results"]["n"]["test"]
    executed = _executed(build, stem)
    n_figures, drawn = _figures_drawn(executed)
    assert n_figures >= 5 and drawn, "a figure cell produced no image"
    notice = [o for c in executed.cells for o in c.get("outputs", []) if "admonition" in str(o.get("data", {}))]
    assert notice and "not transfer learning" in str(notice[0]["data"])


def test_trust_checks_chapter_checks_every_chapter(tiny_book):
    _, build = tiny_book
    checks = json.loads((build / "outputs" / "04_trust_checks" / "results.json").read_text())["results"]
    assert set(checks["best"]) == {"01_vgg16_binary", "02_vgg16_vs_alexnet", "03_coronahack_models"}
    shortcut = checks["shortcut"]["01_vgg16_binary"]  # smoke retrains chapter 01's model only
    assert set(shortcut["metrics"]) == {"full image", "lungs hidden", "border hidden"} and not shortcut["errors"]
    out = build / "outputs" / "04_trust_checks"
    assert all((out / f"vgg16-res72-covid-xray-two-{keep}-only.keras").exists() for keep in ("border", "center"))
    assert len(checks["leakage"]) == 5 and all(leak["n_removed"] == 0 for leak in checks["leakage"].values())
    # the tiny coronahack TEST split: 2 normal, 2 bacterial, 2 viral pneumonia images, none seen in training
    assert checks["external"]["images"] == 6 and len(checks["external"]["rates"]) == 3
    assert len(checks["calibration"]["ece"]) == 3
    # the tiny adults: 2 with no finding, 2 with pneumonia; every model with a COVID-19 class shown them
    adults = checks["adults"]
    assert adults["images"] == 4 and set(adults["models"]) == {"01_vgg16_binary/VGG16", "02_vgg16_vs_alexnet/VGG16",
                                                                 "02_vgg16_vs_alexnet/AlexNet"}
    assert all(a["shares"]["adults, all"]["n"] == 4 and a["verdict"].startswith("says COVID-19 for") for a in adults["models"].values())
    assert adults["source"]["folds"] == 4 and adults["source"]["images"] == {"adults": 4, "children": 9}
    n_figures, drawn = _figures_drawn(_executed(build, "04_trust_checks"))
    assert n_figures == 5 and drawn


def test_summary_chapter_shows_every_model_and_card(tiny_book):
    _, build = tiny_book
    executed = _executed(build, "05_summary")
    text = "\n".join(str(o.get("data", o.get("text", ""))) for c in executed.cells for o in c.get("outputs", []))
    assert text.count("Not for diagnosis") == 5  # one model card per saved model
    assert "Shortcut test" in text and "AlexNet" in text and "Xception" in text
    assert text.count("Adults without COVID-19: it says COVID-19 for") == 3  # on the cards of the models with a COVID-19 class
    assert _figures_drawn(executed) == (1, True)


def test_the_start_page_states_the_findings_and_what_the_build_was(tiny_book):
    import html

    from xrayutils import findings

    _, build = tiny_book
    executed = _executed(build, "index")
    text = "\n".join(o.get("data", {}).get(kind, "") for c in executed.cells for o in c.get("outputs", [])
                     for kind in ("text/markdown", "text/html"))
    assert "These are this build's numbers, not the published protocols'** (smoke profile: every model from random weights" in text
    assert "1. **Adults without COVID-19" in text and "\n\n2. **" in text  # the findings, most important first
    assert "This build: the smoke profile, not the published protocols" in text
    assert "every model from random weights: not transfer learning" in text
    for stem in ("01_vgg16_binary", "02_vgg16_vs_alexnet", "03_coronahack_models"):
        saved = json.loads((build / "outputs" / stem / "results.json").read_text())
        dataset = next(iter(saved["provenance"]["datasets"]))
        assert html.escape(findings.data_line(dataset, saved["results"]["n"])) in text  # its counts against the full dataset's
    assert _figures_drawn(executed) == (1, True)


def test_chapters_that_read_others_results_run_after_them():
    groups = [[nb.stem for nb in wave] for wave in execution.waves(NOTEBOOKS)]
    assert groups == [
        ["00_data_exploration", "01_vgg16_binary", "02_vgg16_vs_alexnet", "03_coronahack_models"],
        ["04_trust_checks"],
        ["performance"],  # it reads chapter 01's time, and times itself on cores no other chapter shares
        ["05_summary", "index"],  # the start page states what the chapters found
    ]
    only_late = [nb for nb in NOTEBOOKS if nb.stem.startswith(("04", "05"))]
    assert [[nb.stem for nb in w] for w in execution.waves(only_late)] == [["04_trust_checks"], ["05_summary"]]


def test_the_slowest_chapter_of_a_wave_starts_first():
    first_wave = execution.waves(NOTEBOOKS)[0]
    assert [nb.stem for nb in execution.slowest_first(first_wave)] == [
        "03_coronahack_models", "02_vgg16_vs_alexnet", "01_vgg16_binary", "00_data_exploration"]
    last = execution.waves(NOTEBOOKS)[-1]
    assert execution.slowest_first(last) == last  # chapters it does not rank keep book order


def test_chapters_needing_each_other_in_a_circle_are_refused(tmp_path, monkeypatch):
    a, b = tmp_path / "a.ipynb", tmp_path / "b.ipynb"
    monkeypatch.setattr(execution, "needs", lambda nb: {"a": ["b"], "b": ["a"]}[nb.stem])
    with pytest.raises(parameters.ParameterError, match="circle"):
        execution.waves([a, b])


def test_the_cpu_profile_holds_well_formed_floors_and_a_malformed_one_is_refused_before_anything_runs():
    floors = parameters.profile_floors("cpu")
    assert floors, "the cpu profile declares no floor: its results could fall to chance and the build would still pass"
    assert all(floor.metric in ("accuracy", "balanced_accuracy", "roc_auc", "f1_macro") for floor in floors)
    assert not parameters.profile_floors("smoke")  # smoke's numbers mean nothing (profiles.yml says why)
    malformed = {"x": {"floors": [{"chapter": "01_vgg16_binary", "metric": "roc_auc"}]}}  # neither at_least nor interval_above
    with pytest.raises(parameters.ParameterError, match="'x': a floor is malformed: .*exactly one of at_least and interval_above"):
        parameters.profile_floors("x", malformed)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failed_chapter_stops_those_that_read_its_results_in_the_same_build(tmp_path, monkeypatch, capsys, jobs):
    ran = []

    def execute(nb, output, parameters):
        ran.append(nb.stem)
        if nb.stem.startswith("03"):
            raise RuntimeError("chapter 03 broke")

    monkeypatch.setattr(execution, "execute", execute)
    chosen = [nb for nb in NOTEBOOKS if nb.stem.startswith(("02", "03", "04", "05"))]
    timings = execution.run_notebooks(chosen, "smoke", {}, tmp_path, "", jobs=jobs)
    assert {t["notebook"]: t["status"] for t in timings} == {
        "02_vgg16_vs_alexnet": "ok", "03_coronahack_models": "failed", "04_trust_checks": "skipped", "05_summary": "skipped"}
    assert sorted(ran) == ["02_vgg16_vs_alexnet", "03_coronahack_models"]  # 04 and 05 never read 03's older results
    assert "04_trust_checks (smoke) skipped: it needs 03_coronahack_models" in capsys.readouterr().out


def test_ctrl_c_stops_the_build_with_a_summary_of_what_ran(tmp_path, monkeypatch, capsys, data_dir):
    def execute(nb, output, parameters):
        if nb.stem.startswith("01"):
            raise KeyboardInterrupt

    monkeypatch.setattr(execution, "execute", execute)
    code = cli.main(["build", "--profile", "smoke", "--build-dir", str(tmp_path), "--data-dir", str(data_dir), "--only", "00", "01", "02"])
    assert code == 130
    out, err = capsys.readouterr()
    assert "00_data_exploration" in out and "stopped" in out and "Traceback" not in out + err
    assert "not run: 02_vgg16_vs_alexnet" in err


def test_a_second_build_into_the_same_folder_is_refused_while_the_first_runs(tmp_path, capsys, data_dir):
    with build.build_lock(tmp_path):
        code = cli.main(["build", "--profile", "smoke", "--build-dir", str(tmp_path), "--data-dir", str(data_dir), "--only", "00"])
    assert code == 2
    assert f"is writing to {tmp_path}" in capsys.readouterr().err and f"pid {os.getpid()}" in (tmp_path / ".lock").read_text()
    with build.build_lock(tmp_path):  # released when the first ends
        pass


def test_every_chapter_gets_a_page_and_a_skipped_one_never_shows_an_older_build(tmp_path):
    site = tmp_path / "site"
    (site / "notebooks").mkdir(parents=True)
    shutil.copy(NOTEBOOKS[0], site / "notebooks" / NOTEBOOKS[0].name)  # ran in this build
    shutil.copy(NOTEBOOKS[4], site / "notebooks" / NOTEBOOKS[4].name)  # 04's page from an earlier build
    timings = [{"notebook": NOTEBOOKS[0].stem, "status": "ok"}, {"notebook": "04_trust_checks", "status": "skipped"}]
    pages.stage_book(site, timings, {})
    staged = {nb.stem: nbformat.read(site / "notebooks" / nb.name, as_version=4) for nb in parameters.chapter_notebooks()}
    assert len(staged[NOTEBOOKS[0].stem].cells) > 1  # the executed chapter is untouched
    assert "needs a chapter that failed" in staged["04_trust_checks"].cells[0].source
    assert staged["04_trust_checks"].cells[0].source.startswith("# ")  # the chapter's own title
    assert (site / "notebooks" / "04_trust_checks.previous.ipynb").exists()  # kept, outside the book
    assert "xray-book build --only 02" in staged["02_vgg16_vs_alexnet"].cells[0].source


def test_a_failed_chapter_page_says_so_under_its_title(tmp_path):
    page = tmp_path / "03.ipynb"
    shutil.copy(NOTEBOOKS[3], page)
    pages.mark_page(page, "failed", "the build started 2026-12-03 11:00", "ValueError: bad")
    cells = nbformat.read(page, as_version=4).cells
    assert cells[0].source.startswith("# ")
    assert cells[1].source.startswith("**This chapter failed before its first code cell, in the build started 2026-12-03 11:00** "
                                      "(`ValueError: bad`)")


def test_only_one_chapter_in_a_fresh_build_folder_builds_its_book(tmp_path, data_dir):
    code = cli.main(["build", "--profile", "smoke", "--build-dir", str(tmp_path), "--data-dir", str(data_dir), "--only", "00"])
    assert code == 0
    html = tmp_path / "site" / "_build" / "html"
    assert (html / "notebooks" / "00_data_exploration.html").exists()
    assert "has not run in this build folder" in (html / "notebooks" / "03_coronahack_models.html").read_text()
    page = (html / "notebooks" / "00_data_exploration.html").read_text()
    assert str(data_dir) not in page and str(tmp_path) not in page and str(parameters.ROOT) not in page
    assert "&lt;data&gt;/covid-xray" in page  # the dataset's root, as a reader can follow it


def test_pages_name_this_machines_folders_by_placeholders(tmp_path):
    page = tmp_path / "page.ipynb"
    page.write_text('{"data_dir": "/m/data", "output_dir": "/m/data/build/outputs", "file": "/repo/x.py", "other": "/mdata"}')
    pages.without_folders(page, {"/m/data": "<data>", "/m/data/build": "<build>", "/repo": "<repository>"})
    assert page.read_text() == ('{"data_dir": "<data>", "output_dir": "<build>/outputs", "file": "<repository>/x.py", '
                                '"other": "/mdata"}')


def test_a_downloaded_page_runs_elsewhere_its_injected_folders_are_empty(tmp_path):
    page = tmp_path / "page.ipynb"
    executed = nbformat.v4.new_notebook()
    injected = nbformat.v4.new_code_cell('# Parameters\nprofile = "cpu"\ndata_dir = "/m/data"\noutput_dir = "/m/build/outputs"\nseed = 3\n')
    injected.metadata["tags"] = ["injected-parameters"]
    executed.cells = [nbformat.v4.new_code_cell('data_dir = "/keep/me"'), injected]
    nbformat.write(executed, page)
    pages.downloadable(page)
    pages.without_folders(page, {"/m/data": "<data>", "/m/build": "<build>"})
    cells = nbformat.read(page, as_version=4).cells
    assert cells[0].source == 'data_dir = "/keep/me"'  # only the cell papermill injected
    source = cells[1].source
    assert 'data_dir = ""' in source and 'output_dir = ""' in source and 'profile = "cpu"' in source and "seed = 3" in source
    assert "<data>" not in source and "<build>" not in source


def test_a_page_that_hides_its_parameters_hides_the_injected_ones_too(tmp_path):
    page = tmp_path / "index.ipynb"
    own = nbformat.v4.new_code_cell('profile = "paper"')
    own.metadata["tags"] = ["parameters", "remove-cell"]
    injected = nbformat.v4.new_code_cell('# Parameters\nprofile = "cpu"\n')
    injected.metadata["tags"] = ["injected-parameters"]
    executed = nbformat.v4.new_notebook()
    executed.cells = [own, injected]
    nbformat.write(executed, page)
    pages.downloadable(page)
    assert nbformat.read(page, as_version=4).cells[1].metadata["tags"] == ["injected-parameters", "remove-cell"]


def test_a_failure_line_names_the_missing_folder_not_just_that_one_is_missing():
    reason = ("DataNotFoundError: Dataset 'covid-xray' at /d does not have the expected layout:\n"
              "  - missing folder /d/two/test/covid\nExpected: ...")
    assert execution.headline(reason).endswith("expected layout: missing folder /d/two/test/covid")
    assert execution.headline("ValueError: plain\nmore") == "ValueError: plain"


def test_a_chapter_reruns_only_when_something_it_depends_on_changed(tmp_path, fake_chapters, data_dir):
    ran = fake_chapters.ran
    chapter01, performance = parameters.ROOT / "notebooks" / "01_vgg16_binary.ipynb", parameters.ROOT / "notebooks" / "performance.ipynb"

    def build(overrides=None, force=False):
        ran.clear()
        timings = execution.run_notebooks([chapter01, performance], "smoke", overrides or {}, tmp_path, str(data_dir), force=force)
        assert all(t["status"] == "ok" for t in timings)
        return list(ran)

    assert build() == ["01_vgg16_binary", "performance"]
    assert build() == []  # nothing changed
    assert build(force=True) == ["01_vgg16_binary", "performance"]
    assert build({"num_epochs": 2}) == ["01_vgg16_binary", "performance"]  # performance reads chapter 01's run
    assert build({"num_epochs": 2}) == []
    image = next((data_dir / "covid-xray" / "two" / "test" / "covid").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")  # the data changed
    assert build({"num_epochs": 2}) == ["01_vgg16_binary", "performance"]
    before, contents = image.stat(), bytearray(image.read_bytes())
    contents[-1] ^= 0xFF
    image.write_bytes(bytes(contents))  # the same size, its modification time set back
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert build({"num_epochs": 2}) == ["01_vgg16_binary", "performance"]
    other = next((data_dir / "coronahack").rglob("*.jpeg"))
    other.write_bytes(other.read_bytes() + b"\0")  # a dataset neither chapter reads
    assert build({"num_epochs": 2}) == []
    assert build({"num_epochs": 2, "repeats": 2}) == ["performance"]  # only its own parameter changed


def test_a_chapter_that_failed_or_was_stopped_runs_again_next_time(tmp_path, fake_chapters, data_dir):
    fake_chapters.fail["01_vgg16_binary"] = RuntimeError("broke")
    chapter01 = [parameters.ROOT / "notebooks" / "01_vgg16_binary.ipynb"]
    assert execution.run_notebooks(chapter01, "smoke", {}, tmp_path, str(data_dir), force=False)[0]["status"] == "failed"
    again = execution.run_notebooks(chapter01, "smoke", {}, tmp_path, str(data_dir), force=False)[0]
    assert again["status"] == "ok" and not again.get("unchanged")
    assert execution.run_notebooks(chapter01, "smoke", {}, tmp_path, str(data_dir), force=False)[0].get("unchanged")


def test_training_shows_one_line_per_model_on_the_page_and_reports_epochs_to_the_runner(tiny_book):
    code, build = tiny_book
    texts = ["".join(o.get("text", "")) for c in _executed(build, "01_vgg16_binary").cells for o in c.get("outputs", [])]
    assert not any("Epoch 1/" in t or "/step" in t for t in texts)  # no Keras epoch log on the page
    assert any(t.startswith("VGG16: 2 seeds") for t in texts)
    reported = (build / "progress" / "01_vgg16_binary.txt").read_text()
    assert reported.startswith("VGG16, seed 2: epoch 1/1")  # the last thing chapter 01 did


def test_the_watcher_prints_each_running_chapters_latest_line(tmp_path, capsys):
    from xrayutils import progress

    with progress.Watcher(tmp_path, in_place=False, every=0.02, at_most=0) as watcher:
        watcher.start("03_coronahack_models")
        (tmp_path / "03_coronahack_models.txt").write_text("ResNet34, seed 1: epoch 3/10, 1:00 so far, about 2:20 left")
        time.sleep(0.2)
        watcher.stop("03_coronahack_models")
    assert "03_coronahack_models (0:00): ResNet34, seed 1: epoch 3/10" in capsys.readouterr().out
    assert os.environ.get(progress.ENV_DIR) is None  # kernels started after the build report nowhere


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_first_cell_says_how_to_install_the_package_and_points_at_no_address_the_book_lacks(notebook):
    import yaml

    config = yaml.safe_load((parameters.ROOT / "_config.yml").read_text())
    url = (config["repository"] or {}).get("url")
    assert url or not config.get("launch_buttons")  # without an address Jupyter Book's launch buttons point at its own repository
    first = next(c for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code")
    assert "find_spec(\"xrayutils\") is None" in first.source and "pip install /path/to/the/repository" in first.source
    assert "book.start_tensorflow()" in first.source
    assert url is None or url in first.source  # no address but the one the launch buttons use
    assert "github.com" not in nbformat.read(notebook, as_version=4).cells[0].source  # no hand-written Colab link


def test_what_kernels_print_to_stderr_goes_to_the_build_log_not_the_terminal(tmp_path, monkeypatch, capfd, data_dir):
    def execute(nb, output, parameters):
        os.write(2, b"I0000 cudart_stub.cc:31] Could not find cuda drivers\n")

    monkeypatch.setattr(execution, "execute", execute)
    execution.run_notebooks([NOTEBOOKS[0]], "smoke", {}, tmp_path, str(data_dir))
    out, err = capfd.readouterr()
    assert "cuda drivers" not in err + out and "kernels.log" in out
    assert "cuda drivers" in (tmp_path / interrupts.KERNEL_LOG).read_text()


def test_ctrl_c_with_two_jobs_stops_the_running_chapters_and_runs_no_more(tmp_path, monkeypatch, capsys, data_dir):
    """Ctrl-C reaches the runner, not the kernels (their own sessions): it passes it on and summarises."""
    passed_on, both_running = threading.Event(), threading.Barrier(2, timeout=60)

    def execute(nb, output, parameters):
        both_running.wait()
        if nb.stem.startswith("00"):
            os.kill(os.getpid(), signal.SIGINT)  # the terminal's Ctrl-C, while both chapters run
        if not passed_on.wait(timeout=60):
            raise AssertionError("the kernels were never interrupted")
        raise KeyboardInterrupt  # what papermill reports from an interrupted kernel

    monkeypatch.setattr(execution, "execute", execute)
    monkeypatch.setattr(interrupts, "interrupt_kernels", passed_on.set)
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even when the tests run under nohup
    try:
        code = cli.main(["build", "--profile", "smoke", "--build-dir", str(tmp_path), "--data-dir", str(data_dir),
                         "--jobs", "2", "--only", "00", "01", "04"])
    finally:
        signal.signal(signal.SIGINT, ignored)
    assert code == 130
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "00_data_exploration (smoke) STOPPED" in out and "01_vgg16_binary (smoke) STOPPED" in out
    assert "not run: 04_trust_checks" in err
    assert rerun.recorded(tmp_path) == {}  # neither stopped chapter counts as done


def test_interrupt_kernels_reaches_a_child_in_its_own_session():
    wait = "import signal, time; signal.signal(signal.SIGINT, signal.default_int_handler); print('ready', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", wait], start_new_session=True, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"  # its Ctrl-C handler is set, as a kernel's is
        interrupts.interrupt_kernels()
        assert child.wait(timeout=20) != 0  # KeyboardInterrupt ended it
    finally:
        child.kill()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebooks_defaults_are_the_profile_its_parameters_cell_names(notebook):
    """Opened and run as it is (Colab, JupyterLab), a notebook runs what its stamp will call it."""
    defaults = parameters.with_defaults(notebook, {})
    named = parameters.load_profiles()[defaults["profile"]]["notebooks"].get(notebook.stem, {})
    assert {name: defaults[name] for name in named} == named
