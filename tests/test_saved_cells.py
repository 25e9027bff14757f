"""The chapters' #@save cells and their copy in xrayutils.chapter_models, and the models as the pages define them."""

from __future__ import annotations

import json

import pytest
from testbook import testbook

from xrayutils import saved_cells

NOTEBOOKS = saved_cells.NOTEBOOKS


def test_the_package_copy_is_the_chapters_own_code():
    assert saved_cells.TARGET.read_text() == saved_cells.generated(), (
        "xrayutils/chapter_models.py differs from the chapters' #@save cells: run python -m xrayutils.saved_cells"
    )


def test_a_saved_cell_that_runs_something_is_refused_naming_notebook_and_cell(tmp_path):
    cell = {"cell_type": "code", "source": ["#@save\n", "def f():\n", "    return 1\n", "\n", "f()\n"]}
    (tmp_path / "09_x.ipynb").write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": ["# X"]}, cell]}))
    with pytest.raises(ValueError, match=r"09_x.ipynb, cell 1: .*its line 5 runs code"):
        saved_cells.generated(tmp_path)


def test_only_cells_that_start_with_the_marker_are_copied(tmp_path):
    cells = [{"cell_type": "code", "source": ["#@save\n", "A = 1\n"]},
             {"cell_type": "code", "source": ["B = 2  #@save is not the first line\n"]},
             {"cell_type": "markdown", "source": ["#@save\n", "text"]}]
    (tmp_path / "01_a.ipynb").write_text(json.dumps({"cells": cells}))
    text = saved_cells.generated(tmp_path)
    assert "A = 1" in text and "B = 2" not in text and "text" not in text and "# From notebooks/01_a.ipynb" in text


def _page_model(notebook: str, *names: str) -> testbook:
    """The notebook's setup and #@save cells, run by testbook in a kernel of its own (not the copy in the package)."""
    path = NOTEBOOKS / notebook
    cells = json.loads(path.read_text())["cells"]
    run = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and "".join(c["source"]).startswith(("import keras", "#@save"))]
    return testbook(path, execute=run, timeout=300)


def test_chapter01s_page_model_has_the_published_parameter_counts():
    with _page_model("01_vgg16_binary.ipynb") as tb:
        counts = tb.ref("[vgg16_transfer((224, 224, 3), 2).count_params(), "
                        "sum(int(w.numpy().size) for w in vgg16_transfer((224, 224, 3), 2).trainable_weights)]")
        assert counts == [21_137_729, 6_423_041]


def test_chapter02s_page_alexnet_has_the_published_parameter_count():
    with _page_model("02_vgg16_vs_alexnet.ipynb") as tb:
        assert tb.ref("alexnet((224, 224, 3), 4).count_params()") == 46_768_900
