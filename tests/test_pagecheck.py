"""The page check fails on each thing a reader must not meet, and passes a clean page."""

import pytest
from PIL import Image

from xrayutils import pagecheck

CLEAN = """<html><body><nav>PosixPath('/work/x') in the navigation is not read</nav><main>
<h1>Task 1</h1><p>Accuracy 0.903 [0.823, 0.968] on 62 test images; p &lt; 0.001.</p>
<div class="cell docutils container"><div class="cell_input"><div class="highlight"><pre>x = float("nan")  # code is not read
print(Path("/work/data"))</pre></div></div>
<div class="cell_output"><table class="xray-table"><tr><th>model</th><th>accuracy</th></tr>
<tr><td>VGG16</td><td>0.903 [0.823, 0.968]</td></tr><tr><td>AlexNet</td><td>–</td></tr></table>
<img src="../_images/fig.png"></div></div></main></body></html>"""

DEFECTS = {
    "a truncated table cell": ("<td>0.903 [0.823, 0.968]</td>", "<td>own test set, not COVID-19 2/31 = 0.06 [0.02, ...</td>"),
    "TensorFlow's C++ log": ("p &lt; 0.001.</p>", "p &lt; 0.001.</p><pre>E0000 00:00:1733 node_def_util.cc:680] NodeDef mentions</pre>"),
    "a TensorFlow or absl warning": ("p &lt; 0.001.</p>", "p &lt; 0.001.</p><pre>WARNING:tensorflow:5 out of the last 15 calls</pre>"),
    "Keras' generator message": ("p &lt; 0.001.</p>", "p &lt; 0.001.</p><pre>Found 26 validated image filenames.</pre>"),
    "a traceback": ("p &lt; 0.001.</p>", "p &lt; 0.001.</p><pre>Traceback (most recent call last):</pre>"),
    "raw exception text": ("p &lt; 0.001.</p>", "p &lt; 0.001.</p><p>weights: random ([Errno -2] Name or service not known)</p>"),
    "the weights warning (the weights box says it)": ("p &lt; 0.001.</p>", "p &lt; 0.001.</p><pre>UserWarning: ImageNet weights "
                                                       "unavailable (ImageNet weights could not be downloaded: no network)</pre>"),
    "a Python repr": ("<td>VGG16</td>", "<td>PosixPath('&lt;build&gt;/outputs/01/results.json')</td>"),
    "a raw dict": ("p &lt; 0.001.</p>", "p &lt; 0.001.</p><pre>{'num_epochs': 10}</pre>"),
    "a bare NaN": ("<td>–</td>", "<td>NaN</td>"),
    "a float with more digits than it means": ("<td>0.903 [0.823, 0.968]</td>", "<td>0.951613</td>"),
    "a machine path": ("p &lt; 0.001.</p>", "p &lt; 0.001.</p><p>read from /work/shared/data/covid-xray</p>"),
    "an unfilled glue": ("p &lt; 0.001.</p>", "p &lt; 0.001.</p><p>reaches {glue:text}`accuracy`</p>"),
}


def _book(tmp_path, html, width=800):
    (tmp_path / "notebooks").mkdir(parents=True)
    (tmp_path / "_images").mkdir()
    (tmp_path / "notebooks" / "01_vgg16_binary.html").write_text(html)
    Image.new("RGB", (width, 300), "white").save(tmp_path / "_images" / "fig.png")
    return tmp_path


def test_what_a_cell_printed_is_read_though_it_is_laid_out_as_code(tmp_path):
    printed = ('<div class="cell_output"><div class="output stream highlight-myst-ansi"><div class="highlight"><pre>'
               "PosixPath('&lt;build&gt;/outputs/00/results.json')</pre></div></div></div>")
    problems = pagecheck.check_book(_book(tmp_path, CLEAN.replace("</main>", printed + "</main>")))
    assert [p.what for p in problems] == ["a Python repr"]


def test_a_clean_page_passes(tmp_path):
    assert pagecheck.check_book(_book(tmp_path, CLEAN)) == []


@pytest.mark.parametrize("what", sorted(DEFECTS))
def test_each_defect_fails_the_page_naming_it(tmp_path, what):
    clean, defective = DEFECTS[what]
    assert clean in CLEAN
    problems = pagecheck.check_book(_book(tmp_path, CLEAN.replace(clean, defective, 1)))
    assert {(p.page, p.what) for p in problems} == {("notebooks/01_vgg16_binary.html", what)}


def test_a_figure_much_wider_than_the_column_fails(tmp_path):
    problems = pagecheck.check_book(_book(tmp_path, CLEAN, width=1800))
    assert [p.what for p in problems] == ["a figure much wider than the page shows it"]
    assert "1800 px" in problems[0].text


LINKED = ('<div class="cell_input"><pre>from xrayutils import plots\n<a class="sphinx-codeautolink-a" '
          'title="xrayutils.plots.plot_gradcam">plots.plot_gradcam</a>(explained)</pre></div>')


def test_every_xrayutils_call_in_a_code_cell_links_to_its_reference(tmp_path):
    linked = CLEAN.replace("<main>", "<main>" + LINKED)
    assert pagecheck.check_book(_book(tmp_path, linked)) == []
    plain = linked.replace('<a class="sphinx-codeautolink-a" title="xrayutils.plots.plot_gradcam">plots.plot_gradcam</a>',
                           "plots.plot_gradcam")
    problems = pagecheck.check_book(_book(tmp_path / "plain", plain))
    assert [(p.what, p.text) for p in problems] == [("an xrayutils name not linked to its reference",
                                                     "xrayutils.plots.plot_gradcam (1 of 1)")]


def test_a_failed_chapters_page_may_show_its_traceback(tmp_path):
    html = CLEAN.replace("p &lt; 0.001.</p>", "p &lt; 0.001.</p><pre>Traceback (most recent call last):</pre>")
    assert pagecheck.check_book(_book(tmp_path, html), failed=("01_vgg16_binary",)) == []


def test_the_reference_pages_are_read_for_machine_paths_and_may_name_what_they_document(tmp_path):
    html_dir = _book(tmp_path, CLEAN)
    api = html_dir / "book" / "api"
    api.mkdir(parents=True)
    (api / "runner.html").write_text("<html><body><main><dl><dt>load_profiles(path: Path = PosixPath('/home/me/clone/profiles.yml'))"
                                     "</dt><dd>A NaN becomes null; {glue:text}`name` pastes it.</dd></dl></main></body></html>")
    (api / "plan.html").write_text('<html><body><main><dt>STORED = Path("&lt;repository&gt;/xrayutils/measurements")</dt>'
                                   "</main></body></html>")
    found = pagecheck.check_book(html_dir)
    assert [(p.page, p.what) for p in found] == [("book/api/runner.html", "a machine path")]
