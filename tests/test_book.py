from __future__ import annotations

import pandas as pd

from xrayutils import book, chapters


def test_stamp_states_every_fact(tmp_path):
    run = book.Chapter("00_test", profile="smoke", parameters={"seed": 3, "model_names": ["ResNet34", "InceptionV3"],
                                                            "model_settings": {"AlexNet": {"num_epochs": 10}}}, output_root=tmp_path)
    info = run.provenance()
    text = book.stamp_markdown(info)
    for fact in ("Profile", "`smoke`", "`seed` = 3", "Data", "Weights", "tensorflow", "Commit", "Device", "Wall time"):
        assert fact in text
    assert "`model_names` = ResNet34, InceptionV3" in text and "`model_settings` = AlexNet: num_epochs 10" in text
    assert "['" not in text and "{'" not in text  # no Python reprs
    assert info["versions"]["python"].count(".") == 2


def test_saving_results_says_so_in_a_sentence_and_shows_no_path(tmp_path, capsys):
    run = book.Chapter("00_test", profile="smoke", parameters={}, output_root=tmp_path)
    assert run.save_results({"value": 1}) is None  # a cell ending with it shows no PosixPath(...)
    assert capsys.readouterr().out == "Saved results.json in 00_test's output folder.\n"
    assert (tmp_path / "00_test" / "results.json").exists()


def test_weights_notice_warns_when_a_model_is_not_pretrained():
    from xrayutils import models

    pretrained = models.Weights("imagenet", "ImageNet (weights=imagenet)")
    scratch = models.resolve_weights("none")
    assert 'class="admonition note"' in book.weights_notice({"VGG16": pretrained})
    notice = book.weights_notice({"VGG16": pretrained, "AlexNet": scratch})
    assert 'class="admonition warning"' in notice
    assert notice.count("not transfer learning") == 1 and "AlexNet started from random weights" in notice


def test_parameters_are_the_names_of_literal_assignment_cells():
    history = [
        "import sys\nif 'google.colab' in sys.modules:\n    pass",
        'profile = "cpu"  # set by the runner\ndata_dir = ""\nimage_size = 224\nmodel_names = ["VGG16", "AlexNet"]',
        "# Parameters\nimage_size = 72\nnum_epochs = 1",  # papermill's injected cell
        "run = book.Chapter('x', profile=profile)\nsize = image_size * 2",  # computes: not a parameter cell
        "threshold = float('nan')",  # not a literal
    ]
    namespace = {"profile": "smoke", "data_dir": "/data", "image_size": 72, "model_names": ["VGG16"], "num_epochs": 1, "size": 144}
    assert book.executed_parameters(history, namespace) == {"image_size": 72, "model_names": ["VGG16"], "num_epochs": 1}


def test_a_chapter_outside_a_notebook_has_no_parameters_unless_given(tmp_path):
    assert book.Chapter("00_test", profile="smoke", output_root=tmp_path).parameters == {}


def test_cpu_model_names_the_cpu_and_its_vector_instructions(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx avx2 fma\n")
    assert book.cpu_model(info) == "AMD EPYC, AVX2, no AVX-512"
    info.write_text("model name\t: Intel Xeon\nflags\t\t: avx2 avx512f avx512_bf16\n")
    assert book.cpu_model(info) == "Intel Xeon, AVX-512 with bfloat16"
    info.write_text("model name\t: Intel Xeon\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert book.cpu_model(info) == "Intel Xeon, AVX-512 with bfloat16 and AMX"
    assert book.cpu_model(tmp_path / "missing")  # not Linux: still a string


def test_a_chapter_shows_warnings_without_the_build_machines_paths(tmp_path):
    import warnings

    book.Chapter("00_data_exploration", profile="smoke", parameters={}, output_root=tmp_path)
    shown = warnings.formatwarning("cannot decode x.png", UserWarning, "/home/someone/xrayutils/datasets.py", 80)
    assert shown == "UserWarning: cannot decode x.png\n"


def test_a_table_for_the_page_rounds_says_dashes_and_words_and_cuts_nothing():
    import numpy as np
    import pandas as pd

    long = "own test set, not COVID-19 2/31 = 0.06 [0.02, 0.21]; adults, all 87/100 = 0.87 [0.79, 0.92]"
    frame = pd.DataFrame({"model": ["A", "B"], "accuracy": [0.951613, np.nan], "decides": [True, False],
                          "p_value": [1.936125e-46, 0.2], "test images": [30.0, 31.0], "result": [long, None]})
    page = book.page_table(frame)
    assert "0.952" in page and "0.951613" not in page
    assert "&lt; 0.001" in page and "e-46" not in page
    assert ">yes<" in page and ">no<" in page and "True" not in page
    assert ">30<" in page and "30.0" not in page
    unbroken = long.replace(", 0", ",\u00a00")  # an interval wraps before its bracket, never inside it
    assert unbroken in page and "..." not in page and "NaN" not in page and "nan" not in page
    assert "row_heading" not in page  # no 0, 1, 2 index column
    assert page.count("xray-text") == 2 and f'class="data row0 col5 xray-text" >{unbroken}' in page  # a sentence may wrap
    named = book.page_table(frame.set_index("model"))
    assert "row_heading" in named  # a meaningful index stays


def test_a_table_for_the_page_names_columns_and_models_as_a_reader_does():
    import pandas as pd

    frame = pd.DataFrame({"roc_auc": ["0.871 [0.790, 0.935]"], "balanced_accuracy": [0.5]},
                         index=pd.Index(["01_vgg16_binary/VGG16"], name="model"))
    page = book.page_table(frame)
    assert ">ROC AUC<" in page and ">balanced accuracy<" in page and "roc_auc" not in page
    assert ">VGG16 (01)<" in page and "01_vgg16_binary" not in page
    by_model = book.page_table(pd.DataFrame({"02_vgg16_vs_alexnet/AlexNet": [3]}))
    assert ">AlexNet (02)<" in by_model


def test_the_rerun_box_says_what_a_chapter_needs_took_and_how_to_run_it_again():
    box = book.rerun_box("04_trust_checks", ["coronahack/two", "covid-chestxray-dataset/adults", "coronahack/two"], 750.0, "cpu")
    assert box.count("coronahack (Kaggle") == 1 and "Kaggle credentials" in box and "covid-chestxray-dataset (GitHub" in box
    assert "the results of 00_data_exploration, 01_vgg16_binary, 02_vgg16_vs_alexnet, 03_coronahack_models" in box
    assert "this chapter took 12 minutes under the <code>cpu</code> profile" in box and "a GPU for the <code>paper</code> profile" in box
    assert ("the whole book under it took 109 minutes on 2 AVX2-only cores (AMD EPYC), when chapter 03 trained 2 of its 9 models "
            "(2026-12-03)") in box  # profiles.yml's measured
    assert "xray-book run notebooks/04_trust_checks.ipynb" in box and "papermill notebooks/04_trust_checks.ipynb" in box
    assert 'class="admonition tip"' in box  # open: the rerun facts are in view
    summary = book.rerun_box("05_summary", [], 12.0, "smoke")
    assert "no GPU: it trains nothing" in summary and "Kaggle" not in summary
    assert "took 12 seconds under the <code>smoke</code>" in summary  # never "0.2 minutes"


def test_every_chapter_pastes_its_rerun_box_under_its_title():
    import json

    for notebook in sorted((chapters.REPO_ROOT / "notebooks").glob("[0-9p]*.ipynb")):
        first = "".join(json.loads(notebook.read_text())["cells"][0]["source"])
        assert "```{glue} rerun_box" in first, notebook.name


def test_every_module_a_chapter_can_call_has_a_reference_page_listed_in_the_index():
    from pathlib import Path

    root = Path(__file__).parents[1]
    tooling = {"__init__", "browser", "sphinxext"}  # the build's own tools: no chapter calls them
    modules = {p.stem for p in (root / "xrayutils").glob("*.py")} - tooling
    modules |= {p.parent.name for p in (root / "xrayutils").glob("*/__init__.py")}  # a package: one page for its modules
    assert modules == {p.stem for p in (root / "book" / "api").glob("*.md")}
    index = (root / "book" / "api.md").read_text()
    assert [m for m in sorted(modules) if f"   xrayutils.{m}\n" not in index] == []


def test_a_table_whose_rows_share_a_name_is_shown_whole():
    """Two unranked models both have rank "-": the table still renders, the rank as a column, long text wrapping."""
    board = pd.DataFrame({"rank": [1, "-", "-"], "model": ["A", "B", "C"],
                          "decides": ["yes", "no: accuracy below the constant answer's 0.625", "one class for all"]}).set_index("rank")
    page = book.page_table(board)
    assert page.count("<tr>") == 4 and ">rank<" in page and "xray-text" in page


def test_a_filtered_tables_row_numbers_are_hidden_and_a_file_path_may_break():
    """Near-duplicate pairs filtered from a longer frame keep row numbers 394, 401: not shown; their long paths may wrap."""
    pairs = pd.DataFrame({"file a": ["all/test/covid/F4341CE7-73C9.jpeg", "x"], "distance": [2, 4],
                          "sd": ["0.900 ± 0.004", "0.8 ± 0.1"]}, index=[394, 401])
    page = book.page_table(pairs)
    assert ">394<" not in page and ">401<" not in page
    assert "xray-path" in page.split("F4341CE7")[0].rsplit("<td", 1)[1]  # the path's own cell
    assert "xray-path" not in page.split(">2<")[0].rsplit("<td", 1)[1]  # not the distance beside it
    assert "0.900 ±\u00a00.004" in page  # the sd never wraps away from its sign
