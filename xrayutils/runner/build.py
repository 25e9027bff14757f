"""``xray-book build``: the chapters, then the pages, the HTML and its checks, the floors, the summary and ``timings.json``."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xrayutils import pagecheck, rerun, results
from xrayutils.runner.data import fetch
from xrayutils.runner.execution import run_notebooks
from xrayutils.runner.html import build_html, check_html
from xrayutils.runner.pages import machine_folders, stage_book
from xrayutils.runner.parameters import ROOT, ParameterError, chapter_notebooks, profile_floors


def _print_summary(timings: list[dict[str, Any]], extra: dict[str, float]) -> None:
    print("\nSummary")
    for row in timings:
        print(f"  {row['notebook']:<40} {'unchanged' if row.get('unchanged') else row['status']:<9} {row['seconds']:>8.1f} s")
    for name, seconds in extra.items():
        print(f"  {name.removesuffix(' (failed)'):<40} {'failed' if name.endswith('(failed)') else 'ok':<9} {seconds:>8.1f} s")
    total = sum(r["seconds"] for r in timings) + sum(extra.values())
    print(f"  {'total':<40} {'':<9} {total:>8.1f} s")


@dataclasses.dataclass(frozen=True)
class Build:
    """What one ``xray-book build`` was asked for: the profile, the chapters, the folders and how to run them."""

    profile: str = "cpu"
    data_dir: str = ""  #: absolute, or empty: each dataset found as :func:`xrayutils.datasets.locate` says
    build_dir: Path = ROOT / "_build" / "cpu"
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    only: tuple[str, ...] = ()  #: chapters whose name starts with one of these; empty: all
    jobs: int = 1
    force: bool = False
    html: bool = True

    def notebooks(self) -> list[Path]:
        """The chapters this build runs, in the runner's order; ``only`` matching none is an error."""
        notebooks = chapter_notebooks()
        if self.only:
            notebooks = [nb for nb in notebooks if any(nb.stem.startswith(o) for o in self.only)]
            if not notebooks:
                raise ParameterError(f"--only {' '.join(self.only)} matches no chapter in _toc.yml")
        return notebooks


def build(request: Build) -> int:
    """Run ``request``'s chapters, then build and check the book; the exit code: 0 all well, 1 a failure, 130 Ctrl-C.

    Whatever failed, the build ends the same way: every page staged (a failed
    chapter's page says where it stopped), the HTML built and checked, the
    summary printed with the failures named, and ``timings.json`` written.
    """
    notebooks = request.notebooks()
    started = time.perf_counter()
    floors = profile_floors(request.profile)
    build_dir = request.build_dir
    with build_lock(build_dir):
        for path in results.sweep_partial(build_dir):
            print(f"Removed {path.relative_to(build_dir)}: a file an earlier build did not finish writing")
        extra = {"fetch data": fetch(request.data_dir)}
        timings = run_notebooks(notebooks, request.profile, request.overrides, build_dir, request.data_dir, request.jobs,
                                force=request.force or bool(request.only))
        ok = [t["notebook"] for t in timings if t["status"] == "ok"]
        failed = [t["notebook"] for t in timings if t["status"] not in ("ok", "skipped")]
        skipped = [t["notebook"] for t in timings if t["status"] == "skipped"]
        stopped = any(t["status"] == "stopped" for t in timings)
        below = results.floor_failures(build_dir / "outputs", floors, ok)
        if request.html and not stopped:  # with failed chapters too: their pages say where they stopped
            failed += _book(request, timings, notebooks, extra)
        _print_summary(timings, extra)
        for message in below:
            print(f"Below its floor ({request.profile} profile): {message}", file=sys.stderr)
        held = [floor for floor in floors if floor.chapter in ok]
        if held and not below:
            print(f"Floors ({request.profile} profile): all {len(held)} held")
        failed += ["floors"] if below else []
        results.write_json_atomic(
            build_dir / "timings.json",
            {"profile": request.profile, "notebooks": timings, "other": extra, "total_s": time.perf_counter() - started},
        )
    if stopped:
        left = [nb.stem for nb in notebooks if nb.stem not in {t["notebook"] for t in timings}]
        print(f"\nStopped (Ctrl-C); not run: {', '.join(left) or 'none'}. The HTML was not rebuilt: the next build "
              "resumes where this one stopped.", file=sys.stderr)
        return 130
    if failed or skipped:
        said = [f"Failed: {', '.join(failed)}"] if failed else []
        said += [f"not run, as they need results that were not made: {', '.join(skipped)}"] if skipped else []
        print("\n" + "; ".join(said), file=sys.stderr)
        return 1
    return 0


def _book(request: Build, timings: list[dict[str, Any]], notebooks: list[Path], extra: dict[str, float]) -> list[str]:
    """Stage the pages, build the HTML and check it; what failed of that (``"html"``, ``"html check"``), for the summary."""
    build_dir = request.build_dir
    not_finished = stage_book(build_dir / "site", timings, machine_folders(build_dir, request.data_dir, request.overrides.get("weights")))
    not_finished |= {t["notebook"] for t in timings if t["status"] != "ok"}
    sources = rerun.site_signature(build_dir / "site")
    t0 = time.perf_counter()
    if built := rerun.html_unchanged(build_dir, sources):  # nothing on any page changed: Jupyter Book would write the same
        print(f"HTML: the pages' sources are those of its build of {built}, which passed its checks: not built again")
        html = build_dir / "site" / "_build" / "html"
    else:
        rerun.record_html(build_dir, None)
        try:
            html = build_html(build_dir / "site")
        except RuntimeError as error:
            extra["jupyter-book build (failed)"] = time.perf_counter() - t0
            print(f"HTML: {error}")
            return ["html"]
        extra["jupyter-book build"] = time.perf_counter() - t0
    problems = check_html(html, [nb for nb in notebooks if nb.stem not in not_finished])
    problems += [str(problem) for problem in pagecheck.check_book(html, tuple(sorted(not_finished)))]
    for problem in problems:
        print(f"HTML check: {problem}")
    print(f"\nThe book: {html / 'index.html'}")
    if not problems and not built:
        rerun.record_html(build_dir, sources)
    return ["html check"] if problems else []


@contextlib.contextmanager
def build_lock(build_dir: Path) -> Iterator[None]:
    """Hold ``build_dir/.lock`` while a build writes there; a second build into the same folder is refused, not mixed in.

    The lock is the operating system's (``flock``), so it is released when the
    build ends, however it ends.
    """
    import fcntl

    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise RuntimeError(f"another xray-book build ({holder}) is writing to {build_dir}: wait for it to end, "
                               "or give this one its own --build-dir") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}, started {time.strftime('%H:%M:%S')}")
        lock.flush()
        yield


