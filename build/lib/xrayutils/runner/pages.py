"""Staging the executed chapters as the book's pages: a page for every chapter, downloadable, without this machine's folders."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import nbformat

from xrayutils import results
from xrayutils.runner.data import data_roots
from xrayutils.runner.parameters import ROOT, chapter_notebooks

BOOK_FILES = ["_config.yml", "_toc.yml", "book", "_static"]


def stage_book(site: Path, timings: list[dict[str, Any]], folders: dict[str, str]) -> set[str]:
    """Copy the book's prose and configuration beside the executed notebooks in ``site``, and give every chapter a page.

    A chapter skipped in this build (it needs one that failed), or never run in
    this folder (``--only``), gets a page saying so instead of the table of
    contents pointing at nothing; a page a skipped chapter left from an earlier
    build is kept beside it (``<stem>.previous.ipynb``, outside the book), never
    shown as this build's.  A page left half-run by a build that was killed is
    marked as such (:func:`unfinished`).  Every page that did not finish has its
    missing glued values filled (:func:`fill_glue`), so that it renders.  Every
    page names this machine's ``folders`` by their placeholders (:func:`machine_folders`).

    Returns the chapters whose page is not a finished run (failed, stopped,
    killed, skipped or never run here): the page checks expect no results there.
    """
    for name in BOOK_FILES:
        source, target = ROOT / name, site / name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    skipped = {t["notebook"] for t in timings if t["status"] == "skipped"}
    not_finished = set()
    for nb in chapter_notebooks():
        page = site / "notebooks" / nb.name
        if nb.stem in skipped and page.exists():
            page.replace(page.with_name(f"{nb.stem}.previous.ipynb"))
        if not page.exists():
            why = ("it needs a chapter that failed in this build" if nb.stem in skipped
                   else f"it has not run in this build folder: `xray-book build --only {nb.stem[:2]}` runs it")
            placeholder(nb, page, f"**Not run.** This chapter has no results here: {why}.")
            not_finished.add(nb.stem)
        elif unfinished(page):
            mark_page(page, "stopped", "an earlier build, which was killed before the chapter ended")
        if page_status(page):
            not_finished.add(nb.stem)
        downloadable(page)
        without_folders(page, folders)
    return not_finished


#: Where a page records that it is not a finished run: ``{"status": "failed" | "stopped", "build": ..., "cell": ...}``.
STATUS_KEY = "xray_book"


def page_status(page: Path) -> str | None:
    """``"failed"`` or ``"stopped"`` for a page :func:`mark_page` marked, ``"not run"`` for a :func:`placeholder`, else ``None``."""
    return nbformat.read(page, as_version=4).metadata.get(STATUS_KEY, {}).get("status")


def finished(page: Path) -> bool:
    """Whether ``page`` is a chapter's run that ended well: it exists, is not marked (:func:`mark_page`) and was not cut off."""
    return page.exists() and not page_status(page) and not unfinished(page)


def unfinished(page: Path) -> bool:
    """Whether ``page`` is papermill's output of a run that never ended (the build was killed) and no one has marked it.

    papermill records when a run started and, once it ends (well or not),
    when it ended; a run killed with its runner has a start and no end.
    """
    executed = nbformat.read(page, as_version=4)
    run = executed.metadata.get("papermill", {})
    return STATUS_KEY not in executed.metadata and bool(run.get("start_time")) and not run.get("end_time")


def stopped_at(executed: nbformat.NotebookNode) -> int | None:
    """The code cell (counted from 1) where a run stopped: the one with an error, or the one papermill was running."""
    code = [c for c in executed.cells if c.cell_type == "code"]
    for number, cell in enumerate(code, 1):
        if any(output.get("output_type") == "error" for output in cell.get("outputs", [])):
            return number
    for number, cell in enumerate(code, 1):
        if cell.metadata.get("papermill", {}).get("status") == "running":
            return number
    return None


_GLUE_REFERENCE = re.compile(r"\{glue(?::\w*)?\}`([^`:]+)[^`]*`|^(?:```|:::)\{glue(?::\w*)?\}\s+(\S+)", re.MULTILINE)


def fill_glue(executed: nbformat.NotebookNode, text: str) -> list[str]:
    """Glue ``text`` under every key the page's Markdown refers to and no cell glued; the keys filled.

    A chapter that stopped partway never ran the cells that glue its later
    numbers, and Jupyter Book (warnings as errors) would refuse the whole book
    for each missing key.  Filled, the page renders and says at each number why
    it is not there.
    """
    wanted = []
    for cell in executed.cells:
        if cell.cell_type == "markdown":
            wanted += [role or directive for role, directive in _GLUE_REFERENCE.findall(cell.source)]
    glued = {output.get("metadata", {}).get("scrapbook", {}).get("name")
             for cell in executed.cells if cell.cell_type == "code" for output in cell.get("outputs", [])}
    missing = list(dict.fromkeys(key for key in wanted if key not in glued))
    if missing:
        cell = nbformat.v4.new_code_cell("# Filled by xray-book: the values this chapter did not reach", metadata={"tags": ["remove-cell"]})
        cell.outputs = [nbformat.v4.new_output("display_data", data={"text/plain": repr(text), "text/markdown": text},
                                               metadata={"scrapbook": {"name": key, "mime_prefix": ""}}) for key in missing]
        executed.cells.append(cell)
    return missing


def machine_folders(build_dir: Path, data_dir: str, weights: str | None = None) -> dict[str, str]:
    """This machine's folders, each with what the book says instead: ``<data>``, ``<build>``, ``<repository>``, ``<weights>``.

    Pages show where a chapter read and wrote (the parameters papermill
    injects, a dataset's root, a weights file, tracebacks); a reader needs which
    folder that was, not where it lay on the machine that built the book.
    """
    folders = {str(root.parent): "<data>" for root in data_roots(data_dir).values()}
    if weights and Path(weights).expanduser().exists():
        path = Path(weights).expanduser().resolve()
        folders[str(path if path.is_dir() else path.parent)] = "<weights>"
    return folders | {str(build_dir): "<build>", str(ROOT): "<repository>"}


def spellings(folder: str) -> list[str]:
    """The ways ``folder`` can appear in a notebook file's JSON text: as it is, with JSON's ``\\u`` escapes, and as papermill
    writes it into the parameters it injects (Python escapes such as ``\\xe4``, themselves escaped for JSON)."""
    injected = folder.encode("unicode_escape").decode().replace('"', '\\"')
    forms = [json.dumps(form, ensure_ascii=ascii)[1:-1] for form in (folder, injected) for ascii in (False, True)]
    return list(dict.fromkeys(forms))


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
                emptied = f'{name} = ""  # set by the runner on the machine that built this page; empty: found as the parameters cell says'
                changed |= line != emptied
                line = emptied
            lines.append(line)
        cell.source = "\n".join(lines)
    if changed:
        nbformat.write(executed, page)


def without_folders(page: Path, folders: dict[str, str]) -> None:
    """Rewrite ``page`` with each of ``folders`` replaced by its placeholder, the longest (innermost) first."""
    text = original = page.read_text()
    for folder in sorted(folders, key=len, reverse=True):
        for spelling in spellings(folder):
            text = text.replace(spelling, folders[folder])
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
    stub.metadata[STATUS_KEY] = {"status": "not run"}
    stub.cells = [nbformat.v4.new_markdown_cell(f"{_title(notebook)}\n\n{message}")]
    nbformat.write(stub, page)


def fill_figures(executed: nbformat.NotebookNode, text: str) -> list[str]:
    """Give every figure cell that drew nothing ``text`` as its output; the figures' names.

    A figure's label (``fig-01-history``) exists only once its cell has an
    output to wrap; the Markdown that refers to it would otherwise stop the book.
    """
    filled = []
    for cell in executed.cells:
        figure = cell.metadata.get("mystnb", {}).get("figure") if cell.cell_type == "code" else None
        if figure and not any(o.get("output_type") in ("display_data", "execute_result") for o in cell.get("outputs", [])):
            cell.outputs = [*cell.get("outputs", []),
                            nbformat.v4.new_output("display_data", data={"text/plain": text, "text/markdown": text})]
            filled.append(figure.get("name", ""))
    return filled


def mark_page(page: Path, status: str, build: str, reason: str = "") -> None:
    """Mark a chapter's page as a run that did not finish: a box under its title, and its missing glued values filled.

    ``status`` is ``"failed"`` or ``"stopped"``, ``build`` names the build it
    happened in (its start), ``reason`` is the error's first line.  A failed or
    stopped run must not read as a finished one, and must not stop the book
    from being built.
    """
    if not page.exists():
        return
    executed = nbformat.read(page, as_version=4)
    cell = stopped_at(executed)
    where = f"at code cell {cell}" if cell else "before its first code cell"
    because = f" (`{reason}`)" if reason else ""
    message = (f"**This chapter {status} {where}, in {build}**{because}: what follows is its output up to there, and its "
               "results files were not updated by this run.")
    executed.metadata[STATUS_KEY] = {"status": status, "build": build, "cell": cell}
    first = next((i for i, c in enumerate(executed.cells) if c.cell_type == "markdown"), -1)
    executed.cells.insert(first + 1, nbformat.v4.new_markdown_cell(message))
    fill_glue(executed, f"not computed: the chapter {status} {where}")
    fill_figures(executed, f"*Not drawn: the chapter {status} {where}.*")
    nbformat.write(executed, page)
