"""The chapters' ``#@save`` cells, copied into :mod:`xrayutils.chapter_models`, as d2l copies its chapters' code into ``d2l``.

A model is written once, in a code cell of the chapter that teaches it, where a
reader sees it, edits it and reruns it.  Code outside that chapter needs the
same model too (chapter 02 reuses chapter 01's VGG16, chapter 04 retrains
masked copies, ``xray-book plan`` and the benchmarks time them), so a cell
whose first line is ``#@save`` is copied, in chapter order, into
``xrayutils/chapter_models.py``, a generated file nobody edits.  After
changing such a cell, run ``python -m xrayutils.saved_cells``; a test fails
while the copy differs from the pages.

A saved cell holds definitions only (functions, classes, constants), so that
importing the copy runs nothing.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

from xrayutils import chapters

MARKER = "#@save"
NOTEBOOKS = chapters.REPO_ROOT / "notebooks"
TARGET = Path(__file__).resolve().parent / "chapter_models.py"

HEADER = '''"""The models the chapters define on their pages, for the code that reuses them. GENERATED: do not edit.

Each definition below is a ``#@save`` cell of the chapter named above it, copied
by ``python -m xrayutils.saved_cells`` (:mod:`xrayutils.saved_cells`).  To change
a model, change its chapter's cell and run that command.
"""

import keras
from keras import layers

from xrayutils import catalogue, constraints
'''


def saved_cells(notebook: Path) -> list[str]:
    """The source of every code cell of ``notebook`` whose first line is ``#@save``, without that line.

    Raises ``ValueError`` naming the notebook and cell when a saved cell does more than define.
    """
    cells = json.loads(Path(notebook).read_text())["cells"]
    found = []
    for index, cell in enumerate(cells):
        source = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
        first, _, body = source.partition("\n")
        if not first.strip().startswith(MARKER):
            continue
        for statement in ast.parse(body).body:
            docstring = isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
            if not (docstring or isinstance(statement, ast.FunctionDef | ast.ClassDef | ast.Assign | ast.AnnAssign)):
                raise ValueError(f"{notebook.name}, cell {index}: a #@save cell may only define functions, classes and constants, "
                                 f"but its line {statement.lineno + 1} runs code ({type(statement).__name__})")
        found.append(body.strip("\n"))
    return found


def generated(notebooks: Path = NOTEBOOKS) -> str:
    """The text of :mod:`xrayutils.chapter_models` for the chapters in ``notebooks``, in chapter order."""
    parts = [HEADER]
    for notebook in sorted(Path(notebooks).glob("[0-9][0-9]_*.ipynb")):
        for source in saved_cells(notebook):
            parts.append(f"\n\n# From notebooks/{notebook.name}\n{source}\n")
    return "".join(parts)


def main() -> int:
    """Write :mod:`xrayutils.chapter_models` from the chapters; say whether it changed."""
    text = generated()
    changed = not TARGET.exists() or TARGET.read_text() != text
    if changed:
        TARGET.write_text(text)
    print(f"{TARGET.name}: " + ("written" if changed else "already the chapters' own"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
