"""Executing the chapters: one papermill run each, in waves of independent chapters, each recorded for the next build."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from xrayutils import chapters, progress, rerun
from xrayutils.runner.data import data_roots
from xrayutils.runner.interrupts import KERNEL_LOG, ctrl_c_passed_on, kernel_messages_to
from xrayutils.runner.pages import finished, mark_page
from xrayutils.runner.parameters import RUNNER_PARAMETERS, ParameterError, chosen_parameters, notebook_parameters


def headline(reason: str) -> str:
    """The line of an error worth printing in one line: the first, and the next too when the first only announces it ("...:")."""
    lines = [line.strip(" -") for line in reason.strip().splitlines() if line.strip()] or ["unknown error"]
    return " ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def execute(notebook: Path, output: Path, parameters: dict[str, Any]) -> None:
    """Execute ``notebook`` into ``output`` with papermill, in the notebook's own folder."""
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(notebook.parent),
        progress_bar=False,
        log_output=False,
    )


def needs(notebook: Path) -> tuple[str, ...]:
    """The chapters whose results ``notebook`` reads (its :class:`~xrayutils.chapters.ChapterRecord`): they must run first."""
    record = chapters.get(notebook.stem)
    return record.needs if record else ()


def waves(notebooks: list[Path]) -> list[list[Path]]:
    """``notebooks`` in groups that can run side by side: each after every group holding a chapter it needs.

    Needs outside ``notebooks`` are taken as done (their results are already in
    the output folder).  Book order is kept within a group.  A chapter that times
    itself (``runs_alone`` in its :class:`~xrayutils.chapters.ChapterRecord`) gets a group of its own, after
    the others of its level.
    """
    selected = {nb.stem: nb for nb in notebooks}
    level: dict[str, int] = {}

    def depth(stem: str, seen: tuple[str, ...] = ()) -> int:
        if stem in seen:
            raise ParameterError(f"chapters need each other in a circle: {' -> '.join((*seen, stem))}")
        if stem not in level:
            inside = [n for n in needs(selected[stem]) if n in selected]
            level[stem] = 1 + max((depth(n, (*seen, stem)) for n in inside), default=-1)
        return level[stem]

    grouped: dict[int, list[Path]] = {}
    for nb in notebooks:
        grouped.setdefault(depth(nb.stem), []).append(nb)
    ordered = []
    for level_ in sorted(grouped):
        alone = [nb for nb in grouped[level_] if (record := chapters.get(nb.stem)) and record.runs_alone]
        together = [nb for nb in grouped[level_] if nb not in alone]
        ordered += ([together] if together else []) + [[nb] for nb in alone]
    return ordered


def run_notebooks(
    notebooks: list[Path],
    profile: str,
    overrides: dict[str, Any],
    build_dir: Path,
    data_dir: str,
    jobs: int = 1,
    *,
    force: bool = True,
) -> list[dict[str, Any]]:
    """Execute each notebook, one progress line each; a failure is recorded and the others still run.

    Every parameter is checked before anything runs: an override must be declared by at
    least one notebook, and is passed to the notebooks that declare it.  With
    ``jobs`` > 1, up to that many chapters run at once, in :func:`waves`, and
    each kernel's TensorFlow gets an equal share of the CPU cores.  Without
    ``force``, a chapter whose inputs are those of its last successful run here
    (:func:`xrayutils.rerun.chapter_key`) is not run again.
    """
    if jobs < 1:
        raise ParameterError(f"--jobs must be at least 1, got {jobs}")
    plan = chosen_parameters(notebooks, profile, overrides)
    for nb, parameters in plan.items():
        missing = [p for p in RUNNER_PARAMETERS if p not in notebook_parameters(nb)]
        if missing:
            raise ParameterError(f"{nb.name} must declare the runner parameters {missing}")
        parameters.update(profile=profile, data_dir=data_dir, output_dir=str(build_dir / "outputs"))
    number = {nb: i for i, nb in enumerate(notebooks, 1)}
    not_done: set[str] = set()  # failed or skipped in this build: whatever needs them must not read older results
    earlier = rerun.recorded(build_dir)
    keys = {stem: run["key"] for stem, run in earlier.items()}
    data, code = rerun.data_signatures(data_roots(data_dir)), rerun.code_signature()
    this_build = f"the build started {time.strftime('%Y-%m-%d %H:%M')}"

    def one(nb: Path) -> dict[str, Any] | None:
        if interrupted.is_set():  # Ctrl-C before its turn: not run, no timing
            return None
        output = build_dir / "site" / "notebooks" / nb.name
        label = f"[{number[nb]}/{len(notebooks)}] {nb.stem} ({profile})"
        missing = [n for n in needs(nb) if n in not_done]
        if missing:
            not_done.add(nb.stem)
            rerun.record(build_dir, nb.stem, None)  # its page and results are no longer this build's: the next build runs it
            print(f"{label} skipped: it needs {', '.join(missing)}, which did not finish in this build", flush=True)
            return {"notebook": nb.stem, "status": "skipped", "seconds": 0.0}
        key = rerun.chapter_key(nb, plan[nb], data=data, code=code, needed={n: keys.get(n) for n in needs(nb)})
        broken = rerun.broken_files(build_dir / "outputs" / nb.stem)
        for path in broken:
            print(f"{label}: {path} is broken (not valid JSON): set aside as {path.name}.broken; the chapter runs again", flush=True)
        if not (force or broken) and rerun.unchanged(build_dir, nb.stem, key) and finished(output):
            print(f"{label} unchanged since its run of {earlier[nb.stem]['finished']}: not run again (--force runs it)", flush=True)
            return {"notebook": nb.stem, "status": "ok", "seconds": 0.0, "unchanged": True}
        if jobs > 1:
            print(f"{label} started", flush=True)
        start = time.perf_counter()
        reason = None
        watcher.start(nb.stem)
        try:
            execute(nb, output, plan[nb])
        except KeyboardInterrupt:
            reason = "KeyboardInterrupt"
        except Exception as error:  # papermill raises PapermillExecutionError and kernel errors
            name, value = getattr(error, "ename", type(error).__name__), str(getattr(error, "evalue", error))
            reason = f"{name}: {value}" if value else name  # an interrupted kernel's KeyboardInterrupt has no message
        finally:
            watcher.stop(nb.stem)
        seconds = time.perf_counter() - start
        stopped = reason is not None and (reason.startswith("KeyboardInterrupt") or interrupted.is_set())
        status = "ok" if reason is None else "stopped" if stopped else "failed"
        keys[nb.stem] = key if status == "ok" else None
        rerun.record(build_dir, nb.stem, keys[nb.stem])
        if status == "ok":
            print(f"{label} ok {seconds:.1f} s", flush=True)
        else:
            not_done.add(nb.stem)
            first_line = headline(reason)
            mark_page(output, status, this_build, first_line)
            print(f"{label} {status.upper()} after {seconds:.1f} s: {first_line}")
            print(f"      the executed notebook with the traceback: {output}", flush=True)
        return {"notebook": nb.stem, "status": status, "seconds": round(seconds, 1)}

    watcher = progress.Watcher(build_dir / "progress", in_place=jobs == 1 and sys.stdout.isatty())
    interrupted = threading.Event()  # Ctrl-C with jobs > 1: whatever ends a running chapter now, it was stopped
    print(f"Kernel messages (TensorFlow's start-up lines and the like): {build_dir / KERNEL_LOG}", flush=True)
    with watcher, kernel_messages_to(build_dir / KERNEL_LOG):
        return _run_all(notebooks, one, jobs, interrupted)



def _run_all(
    notebooks: list[Path], one: Callable[[Path], dict[str, Any] | None], jobs: int, interrupted: threading.Event
) -> list[dict[str, Any]]:
    """:func:`run_notebooks`' chapters one after another, or with ``jobs`` > 1 in :func:`waves` on a share of the cores each.

    Ctrl-C stops the build after the chapters it interrupted, which end as
    ``stopped``; what is left does not run and has no timing.
    """
    if jobs == 1:
        timings = []
        for nb in notebooks:
            timings.append(one(nb))
            if timings[-1]["status"] == "stopped":
                break
        return timings
    cores = os.cpu_count() or 1
    chosen = "TF_NUM_INTRAOP_THREADS" in os.environ  # the user's own setting wins
    timings = {}
    try:
        # each papermill run drives its own kernel process
        with ThreadPoolExecutor(max_workers=jobs) as pool, ctrl_c_passed_on(interrupted):
            for wave in waves(notebooks):
                wave = slowest_first(wave)
                if not chosen:  # kernels inherit it
                    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads_for(wave, cores, jobs))
                timings.update(zip(wave, pool.map(one, wave)))
                if interrupted.is_set():
                    break
    finally:
        if not chosen:
            os.environ.pop("TF_NUM_INTRAOP_THREADS", None)
    return [timings[nb] for nb in notebooks if timings.get(nb)]




def slowest_first(wave: list[Path]) -> list[Path]:
    """``wave`` in the order to start its chapters: :data:`xrayutils.chapters.SLOWEST_FIRST`, then the others in book order.

    In the ``cpu`` book, chapter 03 (49 minutes) started after chapter 01 had
    finished and then ran alone on one core of two for 32 minutes: started
    first, the three short chapters run beside it, one after another.
    """
    rank = {stem: i for i, stem in enumerate(chapters.SLOWEST_FIRST)}
    return sorted(wave, key=lambda nb: rank.get(nb.stem, len(rank)))  # stable: the unranked keep book order


def threads_for(wave: list[Path], cores: int, jobs: int) -> int:
    """TensorFlow's threads per kernel in ``wave``: an equal share of the cores, or all of them for a chapter alone in its wave.

    A kernel's thread pool is fixed when it starts, so a chapter that ran on one
    core of two beside others keeps one core after they end (chapter 04 of the
    ``cpu`` book ran 36 minutes alone on one of two cores before this).
    """
    return cores if len(wave) == 1 else max(1, cores // min(jobs, len(wave)))
