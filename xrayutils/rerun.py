"""When a chapter need not run again: what its last successful run depended on, recorded by the runner.

A chapter runs again when its notebook, its parameters, the data, the package's code or
the run of a chapter whose results it reads changed since its last successful run in the
same build folder. Otherwise its page and results are still those of the same inputs, and
``xray-book build`` skips it: a rebuild with nothing changed takes seconds, not the
hour and more of the ``cpu`` book, and a build stopped in chapter 03 resumes there.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from xrayutils import chapters, results

#: In the build folder: ``{chapter: {"key": ..., "finished": ...}}`` of each chapter's last successful run.
RUNS_FILE = "runs.json"
PACKAGE = Path(__file__).resolve().parent


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_signature(root: Path) -> str:
    """Every file under one dataset's ``root`` by relative path and content: a changed, added or removed image changes it.

    The content, not the size and modification time: a change of the same size
    with its time set back is still seen.  Hashing is cheap beside a chapter
    (the 1,880 files of the sample data: 0.3 s).
    """
    return _files_signature(Path(root), (p for p in Path(root).rglob("*") if p.is_file()))


def _files_signature(root: Path, files: Any) -> str:
    """``files`` (under ``root``) by relative path and the SHA-256 of their content, as one string."""
    entries = []
    for path in sorted(files):
        with open(path, "rb") as file:
            entries.append((str(path.relative_to(root)), hashlib.file_digest(file, "sha256").hexdigest()))
    return _digest(entries)


def data_signatures(roots: dict[str, Path]) -> dict[str, str]:
    """:func:`data_signature` of each dataset, by name: a chapter's key holds those its record ``reads`` (:mod:`xrayutils.chapters`)."""
    return {name: data_signature(root) for name, root in roots.items()}


def code_signature(package: Path = PACKAGE) -> str:
    """The package's own code, its subpackages' too: any change to ``xrayutils`` reruns every chapter, since any chapter may use it."""
    files = sorted(path for path in Path(package).rglob("*.py") if "__pycache__" not in path.parts)
    return _digest({str(path.relative_to(package)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files})


def notebook_signature(notebook: Path) -> str:
    """A notebook's cells (kind and source), not its outputs or metadata."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    return _digest([(cell["cell_type"], "".join(cell["source"])) for cell in cells])


def chapter_key(notebook: Path, parameters: dict[str, Any], *, data: dict[str, str], code: str,
                needed: dict[str, str | None]) -> str:
    """What a run of ``notebook`` depends on, as one string: equal keys, same run.

    ``data`` holds the signatures of the datasets it reads (only those: a
    changed CoronaHack image does not rerun task 1), ``needed`` the keys of
    the chapters whose results it reads (``None`` for one that never finished here).
    """
    record = chapters.get(Path(notebook).stem)
    reads = record.reads if record else tuple(data)  # a page the book does not know: every dataset
    return _digest({"notebook": notebook_signature(notebook), "parameters": parameters,
                    "data": {name: data.get(name) for name in reads}, "code": code, "needed": needed})


def outputs_signature(folder: Path) -> str:
    """A chapter's results files (``*.json`` and ``*.csv`` of its output folder) by content: a changed or lost one changes it."""
    folder = Path(folder)
    return _files_signature(folder, [p for suffix in ("*.json", "*.csv") for p in folder.glob(suffix)])


def broken_files(folder: Path) -> list[Path]:
    """The JSON files of a chapter's output folder that do not parse, each set aside as ``<name>.broken``; their old paths.

    A results file or sidecar cut short (a full disk, a copy broken off) would
    otherwise be read by the chapters after it, which fail far from the cause.
    """
    broken = []
    for path in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        try:
            json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            path.replace(path.with_name(path.name + ".broken"))
            broken.append(path)
    return broken


def recorded(build_dir: Path) -> dict[str, dict[str, str]]:
    """The last successful run of each chapter in ``build_dir``, as :func:`record` left them.

    A ``runs.json`` that does not parse is named, set aside as
    ``runs.json.broken``, and read as empty: every chapter runs again.
    """
    path = Path(build_dir) / RUNS_FILE
    if not path.is_file():
        return {}
    try:
        runs = json.loads(path.read_text())
        if not isinstance(runs, dict):
            raise ValueError("not a mapping of chapters")
        return runs
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as error:
        path.replace(path.with_name(RUNS_FILE + ".broken"))
        print(f"{path} is broken ({error}): set aside as {RUNS_FILE}.broken; every chapter runs again", flush=True)
        return {}


def unchanged(build_dir: Path, chapter: str, key: str) -> bool:
    """Whether ``chapter``'s last successful run here had ``key`` and left its results files as they are now."""
    run = recorded(build_dir).get(chapter, {})
    return run.get("key") == key and run.get("outputs") == outputs_signature(Path(build_dir) / "outputs" / chapter)


def record(build_dir: Path, chapter: str, key: str | None) -> None:
    """Note ``chapter``'s successful run with ``key`` and its results files, or (``None``) forget it after one that did not finish."""
    runs = recorded(build_dir)
    if key is None:
        runs.pop(chapter, None)
    else:
        runs[chapter] = {"key": key, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                         "outputs": outputs_signature(Path(build_dir) / "outputs" / chapter)}
    results.write_json_atomic(Path(build_dir) / RUNS_FILE, runs)


#: In the build folder: the signature of the staged pages' sources at the last HTML build that passed its checks.
HTML_FILE = "html.json"


def site_signature(site: Path) -> str:
    """The staged book's sources (every file under ``site`` but Jupyter Book's output and log), by relative path and content."""
    site = Path(site)
    return _files_signature(site, (p for p in site.rglob("*") if p.is_file() and "_build" not in p.relative_to(site).parts
                                   and p.name != "jupyter-book.log"))


def html_unchanged(build_dir: Path, signature: str) -> str | None:
    """When the HTML was last built from sources with ``signature`` and passed its checks, or ``None``."""
    path = Path(build_dir) / HTML_FILE
    try:
        last = json.loads(path.read_text()) if path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    built = Path(build_dir) / "site" / "_build" / "html" / "index.html"
    return last.get("finished") if last.get("signature") == signature and built.is_file() else None


def record_html(build_dir: Path, signature: str | None) -> None:
    """Note the sources of an HTML build that passed its checks, or (``None``) forget them."""
    payload = {"signature": signature, "finished": time.strftime("%Y-%m-%d %H:%M:%S")} if signature else {}
    results.write_json_atomic(Path(build_dir) / HTML_FILE, payload)
