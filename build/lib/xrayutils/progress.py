"""Where a long chapter is, for the runner's terminal: its latest progress line, in a file the runner watches.

The runner (``xray-book build``) names a folder in ``XRAY_PROGRESS_DIR``; a chapter's
:class:`~xrayutils.book.Chapter` names itself in ``XRAY_CHAPTER``; :func:`report` then
replaces ``<folder>/<chapter>.txt`` with its line, and the runner's :class:`Watcher` prints
it with the time spent in the chapter. Outside the runner (JupyterLab,
Colab, plain papermill) nothing is written. The pages keep one line per model; the
terminal shows the epochs. A run on a Ray worker reports through :func:`relayed` to the
chapter's kernel, which reports for all its runs (:mod:`xrayutils.cluster`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from xrayutils import results

ENV_DIR = "XRAY_PROGRESS_DIR"
ENV_CHAPTER = "XRAY_CHAPTER"


_sink: Callable[[str], None] | None = None


@contextlib.contextmanager
def relayed(sink: Callable[[str], None]) -> Iterator[None]:
    """Within the block, :func:`report` hands its lines to ``sink`` instead (a worker's lines, on their way to the chapter)."""
    global _sink
    before, _sink = _sink, sink
    try:
        yield
    finally:
        _sink = before


def report(line: str) -> None:
    """Make ``line`` this chapter's progress (a no-op outside the runner)."""
    if _sink is not None:
        _sink(line)
        return
    folder = os.environ.get(ENV_DIR)
    if folder:
        results.write_atomic(Path(folder) / f"{os.environ.get(ENV_CHAPTER, 'chapter')}.txt", line)


def minutes(seconds: float) -> str:
    """``"2:05"`` for 125 s."""
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


class Watcher:
    """Shows, while chapters run, the latest line each reports (:func:`report`), with the time spent in it.

    On a terminal with one chapter at a time the line is redrawn in place every
    few seconds; otherwise (a log file, CI, ``--jobs``) a line is printed when a
    chapter's progress changed, at most once a minute per chapter.
    """

    def __init__(self, folder: Path, *, in_place: bool, every: float = 5.0, at_most: float = 60.0) -> None:
        self.folder, self.in_place, self.every, self.at_most = folder, in_place, every, at_most
        self.running: dict[str, float] = {}
        self.shown: dict[str, tuple[str, float]] = {}
        self.drawn = False
        self._stop = threading.Event()

    def __enter__(self) -> Watcher:
        self.folder.mkdir(parents=True, exist_ok=True)
        os.environ[ENV_DIR] = str(self.folder)  # every kernel started from now on reports here
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        os.environ.pop(ENV_DIR, None)

    def start(self, chapter: str) -> None:
        (self.folder / f"{chapter}.txt").unlink(missing_ok=True)
        self.running[chapter] = time.perf_counter()

    def stop(self, chapter: str) -> None:
        self.running.pop(chapter, None)
        if self.drawn:  # clear the redrawn line before the chapter's own line
            print("\r\033[K", end="", flush=True)
            self.drawn = False

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            for chapter, started in list(self.running.items()):
                path = self.folder / f"{chapter}.txt"
                line = path.read_text().strip() if path.is_file() else ""
                now = time.perf_counter()
                text = f"      {chapter} ({minutes(now - started)}): {line or 'starting'}"
                if self.in_place:
                    print(f"\r\033[K{text}", end="", flush=True)
                    self.drawn = True
                    continue
                last_line, last_time = self.shown.get(chapter, ("", -self.at_most))
                if line and line != last_line and now - last_time >= self.at_most:
                    print(text, flush=True)
                    self.shown[chapter] = (line, now)
