"""Where a long chapter is, for the runner's terminal: its latest progress line, in a file the runner watches.

The runner (``xray-book build``) names a folder in ``XRAY_PROGRESS_DIR``; a chapter's
:class:`~xrayutils.book.Chapter` names itself in ``XRAY_CHAPTER``; :func:`report` then
replaces ``<folder>/<chapter>.txt`` with its line. Outside the runner (JupyterLab,
Colab, plain papermill) nothing is written. The pages keep one line per model; the
terminal shows the epochs.
"""

from __future__ import annotations

import os
from pathlib import Path

from xrayutils import results

ENV_DIR = "XRAY_PROGRESS_DIR"
ENV_CHAPTER = "XRAY_CHAPTER"


def report(line: str) -> None:
    """Make ``line`` this chapter's progress (a no-op outside the runner)."""
    folder = os.environ.get(ENV_DIR)
    if folder:
        results.write_atomic(Path(folder) / f"{os.environ.get(ENV_CHAPTER, 'chapter')}.txt", line)


def minutes(seconds: float) -> str:
    """``"2:05"`` for 125 s."""
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"
