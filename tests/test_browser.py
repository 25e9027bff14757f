"""The browser check loads pages in headless Chromium and fails on what a reader would meet.

Skipped where Chromium or Playwright is not installed; CI installs both (``.ci/run``).
"""

import pytest

from xrayutils import browser

pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(browser.chromium() is None, reason="no chromium on this machine (apt-get install chromium)")

PAGE = """<!DOCTYPE html><html><head><style>body {{ margin: 0 }} article {{ width: 800px; margin-left: 200px }}</style></head>
<body><article class="bd-article"><h1>Task 1</h1><p>Accuracy 0.903 [0.823, 0.968].</p>
<div style="overflow-x: auto; max-width: 100%"><table><tr><td style="white-space: {wrap}">{long_cell}</td></tr></table></div>
{extra}</article></body></html>"""


def _check(tmp_path, extra="", wrap="normal"):
    (tmp_path / "notebooks").mkdir()
    page = tmp_path / "notebooks" / "01_vgg16_binary.html"
    page.write_text(PAGE.format(long_cell="x " * 600, wrap=wrap, extra=extra))
    return [(p.what, p.text) for p in browser.check_pages([page], tmp_path)]


def test_a_page_that_fits_passes_a_long_cell_wrapping_in_its_table(tmp_path):
    assert _check(tmp_path) == []


def test_a_table_wider_than_the_column_fails_even_inside_its_scroll_box(tmp_path):
    problems = _check(tmp_path, wrap="nowrap")  # the reader would scroll sideways to find the deciding column
    assert [what for what, _ in problems] == ["a table wider than the text column"]
    assert "in a 800 px column" in problems[0][1]


def test_a_page_made_too_wide_fails(tmp_path):
    problems = _check(tmp_path, '<div class="cell_output"><div class="figure" style="width: 1700px">x</div></div>')
    assert problems == [("an element wider than the text column", '<div class="figure"> 898 px too wide')]  # 2 px of slack


def test_a_script_error_and_a_missing_image_fail(tmp_path):
    problems = _check(tmp_path, '<script>const A = 1;</script><script>const A = 2;</script><img src="missing.png" width="10">')
    assert ("an image that does not load", (tmp_path / "notebooks" / "missing.png").as_uri()) in problems
    assert any(what == "a console error" and "JavaScript error" in text for what, text in problems)
