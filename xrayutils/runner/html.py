"""The HTML book: Jupyter Book on the staged pages, and the checks of what it built."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path


def build_html(site: Path) -> Path:
    """Run Jupyter Book (warnings are errors) on the staged ``site``, every page from a fresh environment; return the HTML folder.

    Not incrementally: Sphinx rewrites a page it did not read again (its HTML
    older than its source, a page it links to changed) from the pickled
    environment, and sphinx-codeautolink, which links the code cells' names to
    the reference, adds links only from its own cache: a page written while
    that cache lacked it lost every link, and every later build kept it so
    (issue 41: a build folder stuck failing its page check).  The fresh build
    costs about 40 s against 15 s on the smoke book, and runs only when a page changed.
    """
    command = ["jupyter-book", "build", str(site), "-W", "--keep-going", "--all"]
    jb = Path(sys.executable).with_name("jupyter-book")
    if jb.exists():
        command[0] = str(jb)
    result = subprocess.run(command, capture_output=True, text=True)
    (site / "jupyter-book.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        log = result.stdout + result.stderr
        cause = failure_cause(log)
        if cause:
            raise RuntimeError(f"jupyter-book build failed: {cause} (full log: {site / 'jupyter-book.log'})")
        tail = "\n".join(log.strip().splitlines()[-25:])
        raise RuntimeError(f"jupyter-book build failed (full log: {site / 'jupyter-book.log'}):\n{tail}")
    return site / "_build" / "html"


def failure_cause(log: str) -> str | None:
    """The operating system's error in a failed Jupyter Book log (a full disk, a permission), as one line; ``None`` when there is none.

    Jupyter Book ends such a failure with its own traceback and "Look above for
    the cause": the cause, ``[Errno 28] No space left on device``, was in the
    log file only.
    """
    found = re.findall(r"(?:\w+Error: )?\[Errno \d+\][^\n]*", log)
    return found[-1].strip() if found else None


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


