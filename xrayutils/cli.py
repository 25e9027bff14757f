"""``xray-book``: execute the chapters with papermill and build the HTML book.

    xray-book build --profile cpu --data-dir ../shared/data      # the whole book
    xray-book build --jobs 2                                     # independent chapters side by side
    xray-book run notebooks/00_data_exploration.ipynb -p seed 1  # one chapter
    xray-book fetch                                              # download the data only
    xray-book predict model.keras image.png folder/              # class probabilities per file
    xray-book plan --profile paper                               # what a profile costs, before running it

A profile (``profiles.yml``) is a set of papermill parameters per notebook;
``-p NAME VALUE`` overrides one of them.  Every name is checked against the
notebook's ``parameters`` cell: an unknown name is an error.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nbformat
import yaml

from xrayutils import book, datasets, pagecheck, progress, rerun, results

ROOT = book.REPO_ROOT
BOOK_FILES = ["_config.yml", "_toc.yml", "book", "_static"]
# Injected by the runner into every notebook, on top of the profile.
RUNNER_PARAMETERS = book.RUNNER_PARAMETERS


class ParameterError(ValueError):
    """A parameter name that the notebook does not declare, or a profile that does not exist."""


def load_profiles(path: Path = ROOT / "profiles.yml") -> dict[str, dict[str, Any]]:
    """The profiles file: ``{profile: {"description": str, "notebooks": {stem: {name: value}}, "floors": [...]}}``."""
    return yaml.safe_load(path.read_text())


def profile_floors(profile: str, profiles: dict[str, Any] | None = None) -> list[results.Floor]:
    """The :class:`~xrayutils.results.Floor` s a profile holds its results to; a malformed one is an error before anything runs."""
    profiles = profiles if profiles is not None else load_profiles()
    try:
        return [results.Floor(**floor) for floor in profiles.get(profile, {}).get("floors", [])]
    except (TypeError, ValueError) as error:
        raise ParameterError(f"profiles.yml, profile {profile!r}: a floor is malformed: {error}") from None


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """The names and default values of a notebook's ``parameters`` cell (read with papermill)."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    if not declared:
        raise ParameterError(f"{notebook} has no cell tagged 'parameters'")
    return {name: info["default"] for name, info in declared.items()}


def chapter_notebooks(toc: Path = ROOT / "_toc.yml") -> list[Path]:
    """The notebooks the runner executes, in the order it runs them: the chapters as ``_toc.yml`` lists them, then the start page.

    The start page (``root:``, :data:`xrayutils.results.START`) states what the
    chapters found, so it runs after them although the book shows it first.
    """
    text = toc.read_text()
    files = re.findall(r"file:\s*(notebooks/\S+)", text) + re.findall(r"root:\s*(notebooks/\S+)", text)
    return [ROOT / (f if f.endswith(".ipynb") else f + ".ipynb") for f in files]


def chosen_parameters(notebooks: list[Path], profile: str, overrides: dict[str, Any]) -> dict[Path, dict[str, Any]]:
    """Each notebook's :func:`resolve_parameters`, given the overrides it declares; an override no notebook declares is an error."""
    declared = {nb: notebook_parameters(nb) for nb in notebooks}
    for name in overrides:
        if not any(name in names for names in declared.values()):
            raise ParameterError(f"no selected notebook declares the parameter {name!r}")
    return {nb: resolve_parameters(nb, profile, {k: v for k, v in overrides.items() if k in declared[nb]}) for nb in notebooks}


def resolve_parameters(
    notebook: Path, profile: str, overrides: dict[str, Any], profiles: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Profile values for ``notebook`` updated with ``overrides``; every name must be declared."""
    profiles = profiles if profiles is not None else load_profiles()
    if profile not in profiles:
        raise ParameterError(f"unknown profile {profile!r}; profiles.yml has {sorted(profiles)}")
    declared = notebook_parameters(notebook)
    chosen = dict(profiles[profile].get("notebooks", {}).get(notebook.stem, {}))
    chosen.update(overrides)
    unknown = sorted(set(chosen) - set(declared))
    if unknown:
        raise ParameterError(
            f"{notebook.name} does not declare the parameter(s) {unknown}; it declares {sorted(declared)}"
        )
    for name, value in chosen.items():
        check_value(notebook.name, name, value, declared[name])
    return chosen


#: Parameters for which 0 means nothing sensible (for the others, such as ``max_images_per_class``, 0 means "all").
POSITIVE = ("image_size", "batch_size", "num_epochs", "augmented_views", "bootstrap_resamples", "learning_rate", "timed_epochs",
            "repeats", "compute_steps", "calibration_bins", "tsne_perplexity", "hash_size", "histogram_bins")


def headline(reason: str) -> str:
    """The line of an error worth printing in one line: the first, and the next too when the first only announces it ("...:")."""
    lines = [line.strip(" -") for line in reason.strip().splitlines() if line.strip()] or ["unknown error"]
    return " ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def check_value(notebook: str, name: str, value: Any, default_source: str) -> None:
    """Refuse a value of the wrong kind for its parameter, judged by the default in the notebook's parameters cell.

    A number where the default is a number (a whole one where it is whole), text
    or True/False where it is text (``mixed_precision = "auto"`` also takes
    True/False), a list (of what the default's list holds) or a mapping where it
    is one; no negative number, and no zero for :data:`POSITIVE`.  Checked before
    anything runs, so a bad value stops the build with its name instead of
    failing deep inside a chapter, or silently doing something else.
    """
    if name in RUNNER_PARAMETERS:
        raise ParameterError(f"{name} is set by the runner (--profile, --data-dir, --build-dir), not with -p")
    try:
        default = ast.literal_eval(default_source)
    except (ValueError, SyntaxError):
        return  # an expression, not a literal: nothing to compare with
    if default is None:
        return
    if not _same_kind(value, default) or (isinstance(value, list) and default and not all(_same_kind(v, default[0]) for v in value)):
        raise ParameterError(f"{notebook}: {name} must be {_kind_name(default)} like its default {default_source}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and (value < 0 or (value == 0 and name in POSITIVE)):
        raise ParameterError(f"{notebook}: {name} must be {'positive' if name in POSITIVE else '0 or more'}, got {value!r}")


def _same_kind(value: Any, default: Any) -> bool:
    kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str, bool), list: (list,), dict: (dict,)}
    expected = kinds.get(type(default))
    if expected is None:
        return True
    return isinstance(value, expected) and not (isinstance(value, bool) and bool not in expected)


def _kind_name(default: Any) -> str:
    if isinstance(default, list) and default:
        return f"a list of {_kind_name(default[0]).removeprefix('a ')}s"
    return {bool: "True or False", int: "a whole number", float: "a number", str: "text (or True/False)", list: "a list",
            dict: "a mapping"}[type(default)]


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
    """The chapters whose results ``notebook`` reads (:data:`xrayutils.results.NEEDS`): they must run first."""
    return results.NEEDS.get(notebook.stem, ())


def waves(notebooks: list[Path]) -> list[list[Path]]:
    """``notebooks`` in groups that can run side by side: each after every group holding a chapter it needs.

    Needs outside ``notebooks`` are taken as done (their results are already in
    the output folder).  Book order is kept within a group.  A chapter that times
    itself (:data:`xrayutils.results.RUNS_ALONE`) gets a group of its own, after
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
        together = [nb for nb in grouped[level_] if nb.stem not in results.RUNS_ALONE]
        ordered += ([together] if together else []) + [[nb] for nb in grouped[level_] if nb.stem in results.RUNS_ALONE]
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
    data, code = rerun.data_signature(_data_roots(data_dir)), rerun.code_signature()

    def one(nb: Path) -> dict[str, Any] | None:
        if interrupted.is_set():  # Ctrl-C before its turn: not run, no timing
            return None
        output = build_dir / "site" / "notebooks" / nb.name
        label = f"[{number[nb]}/{len(notebooks)}] {nb.stem} ({profile})"
        missing = [n for n in needs(nb) if n in not_done]
        if missing:
            not_done.add(nb.stem)
            print(f"{label} skipped: it needs {', '.join(missing)}, which did not finish in this build", flush=True)
            return {"notebook": nb.stem, "status": "skipped", "seconds": 0.0}
        key = rerun.chapter_key(nb, plan[nb], data=data, code=code, needed={n: keys.get(n) for n in needs(nb)})
        if not force and earlier.get(nb.stem, {}).get("key") == key and output.exists():
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
            mark_page(output, f"**This chapter {status} in this build** ({time.strftime('%Y-%m-%d %H:%M')}, `{first_line}`): "
                              "what follows is its output up to there, and its results files were not updated by this run.")
            print(f"{label} {status.upper()} after {seconds:.1f} s: {first_line}")
            print(f"      the executed notebook with the traceback: {output}", flush=True)
        return {"notebook": nb.stem, "status": status, "seconds": round(seconds, 1)}

    watcher = progress.Watcher(build_dir / "progress", in_place=jobs == 1 and sys.stdout.isatty())
    interrupted = threading.Event()  # Ctrl-C with jobs > 1: whatever ends a running chapter now, it was stopped
    print(f"Kernel messages (TensorFlow's start-up lines and the like): {build_dir / KERNEL_LOG}", flush=True)
    with watcher, kernel_messages_to(build_dir / KERNEL_LOG):
        return _run_all(notebooks, one, jobs, interrupted)


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
                if not chosen:  # kernels inherit it; a chapter that runs alone gets every core
                    alone = len(wave) == 1 and wave[0].stem in results.RUNS_ALONE
                    os.environ["TF_NUM_INTRAOP_THREADS"] = str(cores if alone else max(1, cores // jobs))
                timings.update(zip(wave, pool.map(one, wave)))
                if interrupted.is_set():
                    break
    finally:
        if not chosen:
            os.environ.pop("TF_NUM_INTRAOP_THREADS", None)
    return [timings[nb] for nb in notebooks if timings.get(nb)]


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


def stage_book(site: Path, timings: list[dict[str, Any]], folders: dict[str, str]) -> None:
    """Copy the book's prose and configuration beside the executed notebooks in ``site``, and give every chapter a page.

    A chapter skipped in this build (it needs one that failed), or never run in
    this folder (``--only``), gets a page saying so instead of the table of
    contents pointing at nothing; a page a skipped chapter left from an earlier
    build is kept beside it (``<stem>.previous.ipynb``, outside the book), never
    shown as this build's.  Every page names this machine's ``folders`` by
    their placeholders (:func:`machine_folders`).
    """
    for name in BOOK_FILES:
        source, target = ROOT / name, site / name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    skipped = {t["notebook"] for t in timings if t["status"] == "skipped"}
    for nb in chapter_notebooks():
        page = site / "notebooks" / nb.name
        if nb.stem in skipped and page.exists():
            page.replace(page.with_name(f"{nb.stem}.previous.ipynb"))
        if not page.exists():
            why = ("it needs a chapter that failed in this build" if nb.stem in skipped
                   else f"it has not run in this build folder: `xray-book build --only {nb.stem[:2]}` runs it")
            placeholder(nb, page, f"**Not run.** This chapter has no results here: {why}.")
        downloadable(page)
        without_folders(page, folders)


def machine_folders(build_dir: Path, data_dir: str) -> dict[str, str]:
    """This machine's folders, each with what the book says instead: ``<data>``, ``<build>``, ``<repository>``.

    Pages show where a chapter read and wrote (the parameters papermill
    injects, a dataset's root, tracebacks); a reader needs which folder that
    was, not where it lay on the machine that built the book.
    """
    folders = {str(root.parent): "<data>" for root in _data_roots(data_dir)}
    return folders | {str(build_dir): "<build>", str(ROOT): "<repository>"}


def downloadable(page: Path) -> None:
    """Make the executed notebook behind ``page`` run on another machine: its injected folders back to empty.

    papermill writes this machine's ``data_dir`` and ``output_dir`` into the
    cell it injects; a reader who downloads the page gets that cell, and a
    placeholder there (``<data>``) would stop the notebook at its first data
    access.  Empty, they mean what the notebook's own parameters cell says:
    ``XRAY_DATA_DIR``, the cache or a download, and ``XRAY_OUTPUT_DIR`` or
    ``outputs/``.  The page's stamp still records the profile and parameters.
    A page whose own parameters cell is hidden (the start page) hides the injected one too.
    """
    executed = nbformat.read(page, as_version=4)
    changed = False
    own = next((c for c in executed.cells if "parameters" in c.metadata.get("tags", [])), None)
    hidden = [t for t in (own.metadata.get("tags", []) if own else []) if t.startswith(("remove-", "hide-"))]
    for cell in executed.cells:
        if "injected-parameters" not in cell.metadata.get("tags", []):
            continue
        if hidden and not set(hidden) <= set(cell.metadata["tags"]):
            cell.metadata["tags"] = [*cell.metadata["tags"], *hidden]  # a page that hides its parameters hides them all
            changed = True
        lines = []
        for line in cell.source.splitlines():
            name = line.split("=", 1)[0].strip()
            if name in ("data_dir", "output_dir"):
                line = f'{name} = ""  # set by the runner on the machine that built this page; empty: found as the parameters cell says'
                changed = True
            lines.append(line)
        cell.source = "\n".join(lines)
    if changed:
        nbformat.write(executed, page)


def without_folders(page: Path, folders: dict[str, str]) -> None:
    """Rewrite ``page`` with each of ``folders`` replaced by its placeholder, the longest (innermost) first."""
    text = original = page.read_text()
    for folder in sorted(folders, key=len, reverse=True):
        text = text.replace(folder, folders[folder])
    if text != original:
        results.write_atomic(page, text)


def _title(notebook: Path) -> str:
    """The first Markdown heading of ``notebook`` (its page title)."""
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            return cell.source.splitlines()[0]
    return f"# {notebook.stem}"


def placeholder(notebook: Path, page: Path, message: str) -> None:
    """A page holding ``notebook``'s title and ``message`` only."""
    page.parent.mkdir(parents=True, exist_ok=True)
    stub = nbformat.v4.new_notebook(metadata=nbformat.read(notebook, as_version=4).metadata)
    stub.cells = [nbformat.v4.new_markdown_cell(f"{_title(notebook)}\n\n{message}")]
    nbformat.write(stub, page)


def mark_page(page: Path, message: str) -> None:
    """Put ``message`` at the top of an executed chapter, under its title: a failed or stopped run must not read as a finished one."""
    if not page.exists():
        return
    executed = nbformat.read(page, as_version=4)
    first = next((i for i, c in enumerate(executed.cells) if c.cell_type == "markdown"), -1)
    executed.cells.insert(first + 1, nbformat.v4.new_markdown_cell(message))
    nbformat.write(executed, page)


def build_html(site: Path) -> Path:
    """Run Jupyter Book (warnings are errors) on the staged ``site``; return the HTML folder."""
    command = ["jupyter-book", "build", str(site), "-W", "--keep-going"]
    jb = Path(sys.executable).with_name("jupyter-book")
    if jb.exists():
        command[0] = str(jb)
    result = subprocess.run(command, capture_output=True, text=True)
    (site / "jupyter-book.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise RuntimeError(f"jupyter-book build failed (full log: {site / 'jupyter-book.log'}):\n{tail}")
    return site / "_build" / "html"


def check_html(html_dir: Path, notebooks: list[Path]) -> list[str]:
    """Problems in the built book: a chapter page missing, short of figures, showing an error or a raw table.

    A chapter's figure count is the number of its source cells with ``mystnb.figure``
    metadata; its page must hold at least that many images.
    """
    problems = []
    for nb in notebooks:
        page = html_dir / "notebooks" / f"{nb.stem}.html"
        if not page.exists():
            problems.append(f"{nb.stem}: page {page} is missing")
            continue
        html = page.read_text(encoding="utf-8")
        cells = json.loads(nb.read_text())["cells"]
        expected = sum(1 for c in cells if c.get("metadata", {}).get("mystnb", {}).get("figure"))
        found = len(re.findall(r"<img\b[^>]*src=\"\.\./_images/[^\"]+\"", html))
        if found < expected:
            problems.append(f"{nb.stem}: {found} images on the page, {expected} figures expected")
        for marker in ("Traceback (most recent call last)", 'class="output traceback'):
            if marker in html:
                problems.append(f"{nb.stem}: the page shows error output ({marker!r})")
                break
        if "| Chapter |" in html:
            problems.append(f"{nb.stem}: the reproducibility stamp shows as raw Markdown, not as a table")
    return problems


def _parse_overrides(pairs: list[list[str]] | None) -> dict[str, Any]:
    """``-p NAME VALUE`` pairs, typed as papermill's ``-p`` types them (``5`` int, ``1e-4`` float)."""
    return {name: _typed(name, value) for name, value in (pairs or [])}


def _typed(name: str, text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or "not readable"
        raise ParameterError(f"-p {name} {text!r}: {problem}; give a number, text, or a YAML list such as '[a, b]'") from None
    if isinstance(value, str):
        try:
            return float(text)
        except ValueError:
            return value
    return value


def _print_summary(timings: list[dict[str, Any]], extra: dict[str, float]) -> None:
    print("\nSummary")
    for row in timings:
        print(f"  {row['notebook']:<40} {'unchanged' if row.get('unchanged') else row['status']:<9} {row['seconds']:>8.1f} s")
    for name, seconds in extra.items():
        print(f"  {name:<40} {'ok':<9} {seconds:>8.1f} s")
    total = sum(r["seconds"] for r in timings) + sum(extra.values())
    print(f"  {'total':<40} {'':<9} {total:>8.1f} s")


def cmd_build(args: argparse.Namespace) -> int:
    notebooks = chapter_notebooks()
    if args.only:
        notebooks = [nb for nb in notebooks if any(nb.stem.startswith(o) for o in args.only)]
        if not notebooks:
            raise ParameterError(f"--only {args.only} matches no chapter in _toc.yml")
    build_dir = Path(args.build_dir or ROOT / "_build" / args.profile).resolve()
    started = time.perf_counter()
    floors = profile_floors(args.profile)
    overrides = _parse_overrides(args.parameter)
    with build_lock(build_dir):
        extra = {"fetch data": _fetch(args.data_dir)}
        timings = run_notebooks(notebooks, args.profile, overrides, build_dir, _absolute(args.data_dir), args.jobs,
                                force=args.force or bool(args.only))
        if any(t["status"] == "stopped" for t in timings):
            _print_summary(timings, extra)
            left = [nb.stem for nb in notebooks if nb.stem not in {t["notebook"] for t in timings}]
            print(f"\nStopped (Ctrl-C); not run: {', '.join(left) or 'none'}. The HTML was not rebuilt.", file=sys.stderr)
            return 130
        failed = [t["notebook"] for t in timings if t["status"] != "ok"]
        below = results.floor_failures(build_dir / "outputs", floors, [t["notebook"] for t in timings if t["status"] == "ok"])
        if not args.no_html:  # with failed chapters too: their pages show the error, as Jupyter Book's own builds do
            stage_book(build_dir / "site", timings, machine_folders(build_dir, _absolute(args.data_dir)))
            t0 = time.perf_counter()
            html = build_html(build_dir / "site")
            extra["jupyter-book build"] = time.perf_counter() - t0
            problems = check_html(html, [nb for nb in notebooks if nb.stem not in failed])
            problems += [str(problem) for problem in pagecheck.check_book(html, tuple(failed))]
            for problem in problems:
                print(f"HTML check: {problem}")
            failed += ["html check"] if problems else []
            print(f"\nThe book: {html / 'index.html'}")
        _print_summary(timings, extra)
        for message in below:
            print(f"Below its floor ({args.profile} profile): {message}", file=sys.stderr)
        held = [floor for floor in floors if floor.chapter in {t["notebook"] for t in timings if t["status"] == "ok"}]
        if held and not below:
            print(f"Floors ({args.profile} profile): all {len(held)} held")
        failed += ["floors"] if below else []
        results.write_json_atomic(
            build_dir / "timings.json",
            {"profile": args.profile, "notebooks": timings, "other": extra, "total_s": time.perf_counter() - started},
        )
    if failed:
        print(f"\nFailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _data_roots(data_dir: str) -> list[Path]:
    """The folders of the datasets found (without downloading), whose files decide whether a chapter reruns."""
    roots = []
    for name in datasets.UPSTREAM:
        try:
            roots.append(datasets.locate(name, data_dir or None, download=False))
        except (datasets.DataNotFoundError, ValueError):
            continue
    return roots


def _absolute(data_dir: str | None) -> str:
    """The data folder as an absolute path: notebooks run with their own folder as working directory."""
    return str(Path(data_dir).expanduser().resolve()) if data_dir else ""


def _fetch(data_dir: str | None) -> float:
    """Make sure every dataset is at hand (local, cached or downloaded) before any notebook runs."""
    start = time.perf_counter()
    for name in datasets.UPSTREAM:
        path = datasets.locate(name, data_dir)
        print(f"data: {name} at {path}")
    return time.perf_counter() - start


def cmd_run(args: argparse.Namespace) -> int:
    notebook = Path(args.notebook).resolve()
    build_dir = Path(args.build_dir or ROOT / "_build" / args.profile).resolve()
    overrides = _parse_overrides(args.parameter)
    with build_lock(build_dir):
        timings = run_notebooks([notebook], args.profile, overrides, build_dir, _absolute(args.data_dir))
    return {"ok": 0, "stopped": 130}.get(timings[0]["status"], 1)


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


def cmd_fetch(args: argparse.Namespace) -> int:
    _fetch(args.data_dir)
    return 0


def with_defaults(notebook: Path, chosen: dict[str, Any]) -> dict[str, Any]:
    """Every parameter ``notebook`` runs with: its defaults (those written as literals) updated with ``chosen``."""
    defaults = {}
    for name, source in notebook_parameters(notebook).items():
        with contextlib.suppress(ValueError, SyntaxError):
            defaults[name] = ast.literal_eval(source)
    return {**defaults, **chosen}


def cmd_plan(args: argparse.Namespace) -> int:
    """Print each chapter's training work under a profile, and its estimated time here and on a GPU (:mod:`xrayutils.plan`)."""
    import pandas as pd

    from xrayutils import plan

    works: list[plan.Work] = []
    data_dir = _absolute(args.data_dir) or None
    for notebook, chosen in chosen_parameters(chapter_notebooks(), args.profile, _parse_overrides(args.parameter)).items():
        if notebook.stem in plan.TRAINING:
            works += plan.chapter_work(notebook.stem, with_defaults(notebook, chosen), data_dir)
        elif notebook.stem == results.TRUST_CHECKS:
            works += plan.shortcut_work(with_defaults(notebook, chosen), works)
    print(f"Profile {args.profile}: {' '.join(load_profiles()[args.profile]['description'].split())}")
    print(f"Measuring {args.steps} training steps of each model here: {book.device()}", flush=True)
    table = plan.table(works, steps=args.steps)
    sources = table.pop("GPU figure from").unique()
    with pd.option_context("display.width", 250):
        print(table.to_string(index=False, na_rep="-"))
    print(f"GPU: {'; '.join(sources)}")
    print(f"\n{plan.verdict(table, args.profile)}")
    print("Here: measured training steps and forward passes times the images, epochs and runs; decoding, start-up and tracing "
          "are left out, so a real build takes longer. The chapters without training take minutes.")
    build_dir = Path(args.build_dir or ROOT / "_build" / args.profile)
    last = plan.last_build(build_dir)
    if last is not None:
        print(f"\nThis checkout's last {args.profile} build ({build_dir / 'timings.json'}), minutes per chapter:")
        print((last / 60).round(1).to_string())
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Print each file's class probabilities; bad files get their message and the rest are still predicted."""
    import pandas as pd

    from xrayutils import predict

    try:
        model, classes = predict.load_model(args.model)
    except predict.ModelFileError as error:
        raise RuntimeError(str(error)) from None
    table = predict.predict_files(model, classes, args.inputs)
    if table.empty:
        raise RuntimeError(f"no image files found in {', '.join(args.inputs)}")
    if args.csv:
        results.write_atomic(Path(args.csv), table.to_csv(index=False))
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 80):
        print(table.fillna("").to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    failed = table[table["error"] != ""]
    for row in failed.itertuples():
        print(f"xray-book predict: {row.file}: {row.error}", file=sys.stderr)
    print(f"{len(table) - len(failed)} of {len(table)} files predicted", file=sys.stderr)
    return 1 if len(failed) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xray-book", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_ in [
        ("build", cmd_build, "execute every chapter and build the HTML book"),
        ("run", cmd_run, "execute one notebook"),
        ("fetch", cmd_fetch, "locate or download the datasets"),
        ("predict", cmd_predict, "class probabilities of image files with a saved model"),
        ("plan", cmd_plan, "a profile's training work per chapter and model, and its estimated time here and on a GPU"),
    ]:
        p = sub.add_parser(name, help=help_)
        p.set_defaults(func=func)
        if name == "predict":
            p.add_argument("model", help="a .keras file saved by a chapter (its .json sidecar names the classes)")
            p.add_argument("inputs", nargs="+", help="image files and/or folders")
            p.add_argument("--csv", help="also write the table to this CSV file")
            continue
        p.add_argument("--data-dir", default=os.environ.get("XRAY_DATA_DIR", ""),
                       help="folder holding covid-xray/, coronahack/ and covid-chestxray-dataset/ (default: $XRAY_DATA_DIR)")
        if name == "fetch":
            continue
        if name == "run":
            p.add_argument("notebook", help="path to a chapter notebook")
        if name == "plan":
            p.add_argument("--steps", type=int, default=2, help="training steps timed per model (after a first, traced one)")
        p.add_argument("--profile", default="cpu", help="smoke, cpu or paper (see profiles.yml)")
        p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                       help="override one parameter (repeatable)")
        p.add_argument("--build-dir", help="default: _build/<profile>")
        if name == "build":
            p.add_argument("--only", nargs="+", help="chapters whose name starts with these (e.g. 00)")
            p.add_argument("--no-html", action="store_true", help="execute the notebooks only")
            p.add_argument("--force", action="store_true",
                           help="run every chapter, also those unchanged since their last run here (--only always runs its chapters)")
            p.add_argument("--jobs", type=int, default=1, help="chapters run at once (those that need others' results wait)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # kernels inherit it: TensorFlow's C++ messages stay off the pages
    # Kernels inherit this: an MPLBACKEND such as Agg would stop figures reaching the notebook.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        return args.func(args)
    except (ParameterError, datasets.DataNotFoundError, RuntimeError, FileNotFoundError) as error:
        print(f"xray-book: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
