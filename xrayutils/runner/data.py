"""The datasets a build reads: found (or downloaded) and their layouts checked before any chapter runs."""

from __future__ import annotations

import time
from pathlib import Path

from xrayutils import datasets


def data_roots(data_dir: str) -> dict[str, Path]:
    """The folder of each dataset found (without downloading), by dataset name."""
    roots = {}
    for name in datasets.SOURCES:
        try:
            roots[name] = datasets.locate(name, data_dir or None, download=False)
        except (datasets.DataNotFoundError, ValueError):
            continue
    return roots


def absolute(data_dir: str | None) -> str:
    """The data folder as an absolute path: notebooks run with their own folder as working directory."""
    return str(Path(data_dir).expanduser().resolve()) if data_dir else ""


def fetch(data_dir: str | None) -> float:
    """Make sure every dataset is at hand (local, cached or downloaded) in its layout, before any notebook runs; the seconds it took.

    Every dataset is looked at before any error is raised, so that one message
    names every missing folder of every dataset, not only the first.
    """
    start = time.perf_counter()
    problems = []
    for name in datasets.SOURCES:
        try:
            path = datasets.locate(name, data_dir or None)
            datasets.check_layout(name, path)
        except datasets.DataNotFoundError as error:
            problems.append(str(error))
            continue
        print(f"data: {name} at {path}")
    if problems:
        raise datasets.DataNotFoundError("\n\n".join(problems))
    return time.perf_counter() - start
