"""Every page of a built book, loaded in a real browser (headless Chromium): what the HTML check cannot see.

:mod:`xrayutils.pagecheck` reads the HTML; a browser runs it.  Here a page
fails on a JavaScript error or a console error, an image that does not load,
an element wider than the text column (outside a box that scrolls), and a table
wider than the column even inside one, at the 1400 px window the book is read in.  CI runs it on the smoke book::

    python -m xrayutils.browser _build/smoke/site/_build/html

It drives Debian's ``chromium`` (``apt-get install chromium``) through
Playwright, which needs no browser download.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from xrayutils.pagecheck import Problem

#: The window the pages are read at (the issue's screenshots: 1400 px wide).
WINDOW = {"width": 1400, "height": 900}
#: Console messages the theme prints on a first visit with no stored preference: not errors of the page.
BENIGN = ("Got invalid theme mode",)

# Elements wider than the article column, outside any box that scrolls or clips: the outermost of each.
_TOO_WIDE = """() => {
  const column = document.querySelector("article.bd-article") || document.body;
  const limit = column.getBoundingClientRect().right + 2;
  const boxed = (el) => {
    for (let p = el.parentElement; p && p !== column; p = p.parentElement) {
      if (["auto", "scroll", "hidden"].includes(getComputedStyle(p).overflowX)) return true;
    }
    return false;
  };
  const wide = [...column.querySelectorAll("*")].filter(
    (el) => el.getBoundingClientRect().width > 0 && el.getBoundingClientRect().right > limit && !boxed(el));
  return wide.filter((el) => !wide.includes(el.parentElement)).map(
    (el) => `<${el.tagName.toLowerCase()} class="${el.className}"> ${Math.round(el.getBoundingClientRect().right - limit)} px too wide`);
}"""
# Tables wider than the article column, even inside a box that scrolls: a reader should not have to scroll
# sideways to find the column that decides (a model's interval, "like for like").
_WIDE_TABLES = """() => {
  const column = document.querySelector("article.bd-article") || document.body;
  const width = column.getBoundingClientRect().width;
  const room = (t) => Math.min(width, (t.closest("div.cell_output") || column).getBoundingClientRect().width);
  return [...column.querySelectorAll("table")].filter((t) => t.scrollWidth > room(t) + 2).map((t) => {
    const head = [...t.querySelectorAll("thead th")].map((th) => th.textContent.trim()).filter((x) => x).slice(0, 4).join(" | ");
    const section = t.closest("section");
    const where = section && section.querySelector("h1, h2, h3") ? section.querySelector("h1, h2, h3").textContent.trim() : "";
    return `${Math.round(t.scrollWidth)} px in a ${Math.round(room(t))} px column (section "${where.replace(/#$/, "")}"; columns ${head})`;
  });
}"""
_BROKEN_IMAGES = "() => [...document.images].filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.src)"


def chromium() -> str | None:
    """The system's Chromium, or ``None`` when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def check_pages(pages: list[Path], root: Path, executable: str | None = None) -> list[Problem]:
    """Load each page headless and collect its console errors, broken images and too-wide elements."""
    from playwright.sync_api import sync_playwright

    found: list[Problem] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable or chromium(), args=["--no-sandbox"])
        for page_file in pages:
            name = page_file.relative_to(root).as_posix()
            page = browser.new_page(viewport=WINDOW)
            messages: list[str] = []
            page.on("console", lambda m, messages=messages: messages.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e, messages=messages: messages.append(f"JavaScript error: {e}"))
            page.goto(page_file.resolve().as_uri(), wait_until="load")
            found += [Problem(name, "a console error", text) for text in messages if not text.startswith(BENIGN)]
            found += [Problem(name, "an image that does not load", src) for src in page.evaluate(_BROKEN_IMAGES)]
            found += [Problem(name, "an element wider than the text column", text) for text in page.evaluate(_TOO_WIDE)]
            found += [Problem(name, "a table wider than the text column", text) for text in page.evaluate(_WIDE_TABLES)]
            page.close()
        browser.close()
    return found


def book_pages(html_dir: Path) -> list[Path]:
    """The book's own pages: chapters, prose and reference (not Sphinx's search and index pages)."""
    return sorted((html_dir / "notebooks").glob("*.html")) + sorted((html_dir / "book").rglob("*.html"))


def main(argv: list[str] | None = None) -> int:
    """Check every page of the book built in the folder given; print each problem; exit 1 if there is one."""
    html_dir = Path((argv or sys.argv[1:])[0])
    pages = book_pages(html_dir)
    problems = check_pages(pages, html_dir)
    for problem in problems:
        print(f"Browser check: {problem}")
    print(f"Browser check: {len(pages)} pages loaded in {chromium()}, {len(problems)} problems")
    return 1 if problems or not pages else 0


if __name__ == "__main__":
    raise SystemExit(main())
