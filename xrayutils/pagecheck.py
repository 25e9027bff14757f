"""What a reader must not meet on a built page, found in the HTML after the book is built.

The chapters run in a kernel whose stray output lands on the page: TensorFlow's
C++ log, Keras' generator messages, a ``PosixPath(...)`` repr, a pandas cell cut
to "...", a ``NaN``, this machine's folders.  Each is easy to miss in review and
obvious to a reader, so the runner checks every page for them after building
(as it checks the floors) and fails the build naming the page and the text.

Only what the kernel printed (cell outputs) and the prose are read: a code cell
may well hold ``Path(...)`` or ``float("nan")``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bs4 import BeautifulSoup
from PIL import Image

#: CSS pixels of the book theme's text column at a 1400 px window; a figure is shown at most this wide.
TEXT_COLUMN_PX = 800
#: A figure wider than this many times the column has its text shrunk below reading size (~9 pt at 100 dpi).
WIDEST_FIGURE = 1.6

LOG_LINES = {
    "TensorFlow's C++ log": re.compile(r"\b[EWI]0000 \d|node_def_util\.cc|\.cc:\d+\]"),
    "a TensorFlow or absl warning": re.compile(r"WARNING:(tensorflow|absl)|tf\.function retracing"),
    "Keras' generator message": re.compile(r"Found \d+ (validated )?image(s| filenames)"),
    "a traceback": re.compile(r"Traceback \(most recent call last\)"),
    "raw exception text": re.compile(r"\[Errno -?\d+\]|<urlopen error"),
    "the weights warning (the weights box says it)": re.compile(r"Warning: ImageNet weights unavailable"),
}
REPRS = {
    "a Python repr": re.compile(r"\b(PosixPath|WindowsPath|XrayDataset|TrainingProtocol|Finding)\(|<[\w.]+ object at 0x|"
                                r"<function [\w.<>]+ at 0x"),
    "a raw dict": re.compile(r"^\s*\{'\w+': ", re.MULTILINE),
    "a bare NaN": re.compile(r"(?<![\w-])(NaN|nan)(?![\w-])"),
    "a float with more digits than it means": re.compile(r"\b\d\.\d{6,}\b|\d\.\d+e[-+]\d\d\b"),
    "a machine path": re.compile(r"(?<![\w<])(/work/|/home/|/root/|/tmp/|/Users/|[A-Z]:\\\\)"),
    "an unfilled glue": re.compile(r"\{glue(:\w+)?\}"),
}


@dataclass(frozen=True)
class Problem:
    """One thing on ``page`` a reader should not see: ``what`` it is, and the ``text`` that shows it."""

    page: str
    what: str
    text: str

    def __str__(self) -> str:
        return f"{self.page}: {self.what}: {self.text!r}"


def _excerpt(text: str, match: re.Match[str], width: int = 60) -> str:
    start, end = max(0, match.start() - width // 2), min(len(text), match.end() + width // 2)
    return " ".join(text[start:end].split())


def check_text(page: str, text: str) -> list[Problem]:
    """Log lines, reprs, NaN, long floats, machine paths and unfilled glue in ``text`` (what the page shows)."""
    found = []
    for what, pattern in (LOG_LINES | REPRS).items():
        found += [Problem(page, what, _excerpt(text, match)) for match in pattern.finditer(text)]
    return found


def truncated_cells(page: str, soup: BeautifulSoup) -> list[Problem]:
    """Table cells pandas cut short ("..." or "…" at the end): the HTML holds only the cut text."""
    return [Problem(page, "a truncated table cell", cell.get_text(strip=True))
            for cell in soup.find_all(["td", "th"]) if re.search(r"(\.\.\.|…)$", cell.get_text(strip=True))]


def too_wide(page: str, soup: BeautifulSoup, folder: Path) -> list[Problem]:
    """Figures so much wider than the text column that their labels shrink below reading size.

    ``folder`` holds the page, to which its images' paths are relative.
    """
    found = []
    for img in soup.find_all("img"):
        source = (folder / img.get("src", "")).resolve()
        if source.suffix.lower() != ".png" or not source.exists():
            continue
        with Image.open(source) as image:
            width = image.width
        if width > WIDEST_FIGURE * TEXT_COLUMN_PX:
            found.append(Problem(page, "a figure much wider than the page shows it",
                                 f"{source.name}: {width} px, shown at most {TEXT_COLUMN_PX}"))
    return found


def unlinked_names(page: str, soup: BeautifulSoup) -> list[Problem]:
    """``module.name`` calls into ``xrayutils`` in the page's code cells that do not link to their reference entry.

    sphinx-codeautolink turns each into a link whose ``title`` is the full name;
    a call it could not resolve (a name missing from the reference, a cell it
    could not parse) stays plain text, and the reader loses the one click to the code.
    """
    cells = soup.select("div.cell_input")
    code = "\n".join(cell.get_text() for cell in cells)
    modules = {name.strip() for group in re.findall(r"from xrayutils import ([\w, ]+)", code) for name in group.split(",")}
    if not modules:
        return []
    linked = Counter(link.get("title", "") for link in soup.select("div.cell_input a.sphinx-codeautolink-a"))
    called = Counter(f"xrayutils.{module}.{name}" for module, name in re.findall(rf"\b({'|'.join(sorted(modules))})\.(\w+)", code))
    return [Problem(page, "an xrayutils name not linked to its reference", f"{full} ({count - linked[full]} of {count})")
            for full, count in called.items() if linked[full] < count]


def shown_text(soup: BeautifulSoup) -> str:
    """What the page's reader sees as text, less its code cells' source and the navigation."""
    main = soup.find("main") or soup
    for hidden in main.select("div.cell_input, nav, script, style, .headerlink, .toggle-hidden"):
        hidden.decompose()
    for block in main.select("div.highlight"):  # a code block in the prose; what a cell printed is read
        if not block.find_parent("div", class_="cell_output"):
            block.decompose()
    return main.get_text("\n")


def check_page(page: Path, html_dir: Path) -> list[Problem]:
    """Every problem on the built ``page`` (an HTML file under ``html_dir``)."""
    name = page.relative_to(html_dir).as_posix()
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    found = truncated_cells(name, soup) + too_wide(name, soup, page.parent) + unlinked_names(name, soup)
    return found + check_text(name, shown_text(soup))  # shown_text drops the code cells: last


#: What a failed chapter's page shows on purpose: its error.
ERROR_OUTPUT = ("a traceback", "raw exception text")


def check_book(html_dir: Path, failed: tuple[str, ...] = ()) -> list[Problem]:
    """Every problem on every page of the book built in ``html_dir`` (chapters, prose pages and the API reference).

    The pages of ``failed`` chapters (their stems) may show their traceback: it is what they have to say.
    """
    pages = sorted((html_dir / "notebooks").glob("*.html")) + sorted((html_dir / "book").rglob("*.html"))  # the reference too
    return [problem for page in pages for problem in check_page(page, html_dir)
            if not (page.stem in failed and problem.what in ERROR_OUTPUT) and _shown_on(page, html_dir, problem)]


#: On the reference's pages a docstring may name NaN, a repr or the glue syntax it documents: only a machine path is wrong there.
REFERENCE_PROBLEMS = ("a machine path",)


def _shown_on(page: Path, html_dir: Path, problem: Problem) -> bool:
    return not page.relative_to(html_dir).as_posix().startswith("book/api/") or problem.what in REFERENCE_PROBLEMS
