"""Ctrl-C and the kernels: passed on to every chapter running, and the kernels' own messages kept off the terminal."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

KERNEL_LOG = "kernels.log"


@contextlib.contextmanager
def kernel_messages_to(path: Path) -> Iterator[None]:
    """Send what is written to the standard error stream meanwhile, the chapters' kernels' included, to ``path``.

    Each kernel prints TensorFlow's C++ start-up lines and the like there, once per
    chapter; in the file they stay at hand without burying the runner's own lines
    (which go to standard output).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)  # the file descriptor, so that child processes inherit it
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)



@contextlib.contextmanager
def ctrl_c_passed_on(interrupted: threading.Event) -> Iterator[None]:
    """Meanwhile, Ctrl-C sets ``interrupted`` and is passed on to the kernels (:func:`interrupt_kernels`).

    With chapters running side by side, Ctrl-C reaches only this process (each
    kernel runs in a session of its own), and as a ``KeyboardInterrupt`` here it
    would leave the kernels running.  Passed on, it stops each chapter where it
    is, and each ends as ``stopped``, as one chapter alone does.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield  # only the main thread may set handlers; a run told to ignore Ctrl-C (nohup) keeps ignoring it
        return

    def pass_on(signum: int, frame: Any) -> None:
        interrupted.set()
        interrupt_kernels()

    previous = signal.signal(signal.SIGINT, pass_on)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupt_kernels() -> None:
    """Send SIGINT to every process this one started, as a terminal's Ctrl-C does to a kernel it runs."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.send_signal(signal.SIGINT)


