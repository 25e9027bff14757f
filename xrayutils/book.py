"""What every chapter does around its science, on the page: provenance, the weights notice, the stamp, glue.

A chapter opens with ``chapter = book.Chapter(name, profile=profile, output_root=output_dir)``,
which records the notebook's parameters itself (:func:`executed_parameters`),
records its data with ``chapter.add_dataset(ds)``, saves results with
``chapter.save_results(...)`` (:mod:`xrayutils.results` writes them) and ends with
``chapter.stamp()``, which shows profile, parameters, data fingerprints, weights,
versions, commit, device and wall time.  Used by every chapter.
"""

from __future__ import annotations

import ast
import datetime as _dt
import html
import logging
import os
import platform
import re
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import pandas as pd

from xrayutils import chapters, datasets, progress, prose, results

PACKAGES = ["tensorflow", "keras", "numpy", "pandas", "scikit-learn", "pillow", "imagehash", "matplotlib"]


def versions(packages: list[str] = PACKAGES) -> dict[str, str]:
    """Installed version of each package (``"not installed"`` when absent), plus Python's."""
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def git_commit(repo: Path = chapters.REPO_ROOT) -> str:
    """Short commit of the book's sources, with ``+dirty`` when they have uncommitted changes.

    An installed package (``pip install .``, Colab) is no checkout: its folder may
    even lie inside someone else's repository, whose commit would be a false one.
    """
    if not (Path(repo) / ".git").exists():
        return "unknown (an installed package, not a git checkout)"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + ("+dirty" if dirty else "")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name and its widest vector instructions, e.g. ``"AMD EPYC, AVX2, no AVX-512"``.

    Timings depend on both: bfloat16 mixed precision doubled VGG16's rate on a CPU
    with AVX512-BF16 and gave nothing on an AVX2-only one.  ``"unknown CPU"`` where
    ``/proc/cpuinfo`` cannot be read (not Linux).
    """
    try:
        text = cpuinfo.read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    if "avx512_bf16" in flags:
        vector = "AVX-512 with bfloat16" + (" and AMX" if "amx_bf16" in flags else "")
    elif "avx512f" in flags:
        vector = "AVX-512, no bfloat16"
    else:
        vector = "AVX2, no AVX-512" if "avx2" in flags else "no AVX2"
    return f"{fields.get('model name', 'unknown CPU')}, {vector}"


def device() -> str:
    """The devices TensorFlow will compute on, e.g. ``"CPU (2 cores: AMD EPYC, AVX2, no AVX-512)"`` or ``"GPU: NVIDIA T4"``."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU ({os.cpu_count()} cores: {cpu_model()}), no GPU"
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    return "GPU: " + ", ".join(names)


def default_output_root() -> Path:
    """Where chapters write results when the runner does not say: ``$XRAY_OUTPUT_DIR``, else ``outputs/`` in the working directory.

    Never beside the package: installed (``pip install .``, Colab) it lives in
    ``site-packages``, where nothing of a user's belongs.
    """
    return Path(os.environ.get("XRAY_OUTPUT_DIR") or Path.cwd() / "outputs")


#: Set by the runner on every notebook; recorded apart (profile) or not at all (machine paths).
RUNNER_PARAMETERS = ("profile", "data_dir", "output_dir")


def executed_parameters(history: list[str], namespace: dict[str, Any]) -> dict[str, Any]:
    """The parameters of the running notebook: every name assigned in a cell of literal assignments only.

    The ``parameters`` cell and the cell papermill injects after it are such cells
    (papermill's own rule), so their names, with their values now in ``namespace``,
    are the chapter's parameters, wherever it runs (papermill, JupyterLab, Colab),
    and no notebook lists them a second time.  ``history`` holds the executed
    cells' sources in order (IPython's ``In``); the runner's own
    :data:`RUNNER_PARAMETERS` are left out.
    """
    names: dict[str, None] = {}
    for source in history:
        assigned = _literal_assignments(source)
        names.update(dict.fromkeys(assigned or ()))
    return {name: namespace[name] for name in names if name in namespace and name not in RUNNER_PARAMETERS}


def _literal_assignments(source: str) -> list[str] | None:
    """The names a cell assigns, when it does nothing but assign literals to names; otherwise ``None``."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return None
    names = []
    for statement in body:
        if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name)):
            return None
        try:
            ast.literal_eval(statement.value)
        except ValueError:
            return None
        names.append(statement.targets[0].id)
    return names or None


def _notebook_parameters() -> dict[str, Any]:
    """:func:`executed_parameters` of the IPython kernel this runs in (empty outside one)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return {}
    shell = get_ipython()
    if shell is None:
        return {}
    return executed_parameters(shell.user_ns.get("In", []), shell.user_ns)


def quiet_logs() -> None:
    """Keep TensorFlow's own log lines (tf.function retracing, its C++ messages) off the page; warnings about the data stay.

    A reader needs "image X could not be decoded", not "5 out of the last 15 calls
    to <function ...> triggered tf.function retracing" or a C++ ``node_def_util``
    line: those are about the framework, and the runner keeps its kernels' raw
    messages in the build's ``kernels.log``.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads: C++ errors that are not ours too
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    # a chapter's own model.fit on tf.data batches (which the pipeline shuffles) need not pass shuffle=False to stay quiet
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed, but will be ignored", category=UserWarning)


def start_tensorflow() -> None:
    """Load TensorFlow with its C++ start-up messages (CUDA probes, absl's notice) kept off the page, and its later log lines quiet.

    A chapter's first cell calls it, before anything imports Keras.  Those
    messages go to the process's own standard error before ``TF_CPP_MIN_LOG_LEVEL``
    can silence them, and a Jupyter kernel copies that onto the page of a plain
    papermill or JupyterLab run, so standard error points at ``os.devnull``
    while TensorFlow loads and looks for devices.
    """
    quiet_logs()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf

            tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def tables_for_the_page() -> None:
    """Show every table a chapter's cell returns as :func:`page_table` does: one convention for the whole book."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, page_table)
    pd.set_option("display.max_colwidth", None)  # the plain-text view too: a cell is never cut to "..."
    pd.set_option("display.max_columns", None)


#: A text cell longer than this is a sentence: its column may wrap.
LONG_CELL = 40
_PATH = re.compile(r"[^\s/]+(/[^\s/]+)+")  # a relative file path: one unbreakable word as long as the folders it names
#: Columns whose numbers are p-values, shown as ``< 0.001`` below that.
P_VALUE_COLUMNS = ("p_value", "mcnemar_p_vs_best", "p-value", "McNemar p")


def page_table(frame: pd.DataFrame) -> str:
    """A table as a page shows it: no cell cut short, numbers rounded for reading, no NaN, no index of row numbers.

    Rates and metrics get three decimals, p-values ``< 0.001`` below it, True and
    False read "yes" and "no", a missing value "–"; an unnamed index of row numbers
    (0, 1, 2 ..., or what a filter kept of them) is left out (a meaningful index, such as a model's name, stays).  Column names
    read as words (``roc_auc`` is "ROC AUC"), and an interval may wrap only before
    its bracket, so a table narrows to the text column instead of running past it.
    The results files keep full precision: this is only how the page shows it.
    """
    shown = frame.copy()
    for column in shown.columns:
        values = shown[column]
        if str(column) in P_VALUE_COLUMNS:
            shown[column] = [("–" if pd.isna(v) else "< 0.001" if v < 0.001 else f"{v:.3f}") if isinstance(v, (int, float)) else v
                             for v in values]
        elif values.dtype == bool:
            shown[column] = values.map({True: "yes", False: "no"})
        elif pd.api.types.is_float_dtype(values):
            whole = values.dropna().apply(float.is_integer).all() and len(values.dropna())
            shown[column] = [("–" if pd.isna(v) else f"{int(v):,}" if whole else f"{round(v, 3) + 0.0:.3f}") for v in values]
        elif values.dtype == object:
            shown[column] = [_cell(v) for v in values]
    texts = (pd.api.types.is_object_dtype, pd.api.types.is_string_dtype)  # pandas 3 keeps text as "str", not object
    shown = shown.rename(columns=prose.header, index=prose.header if any(t(shown.index) for t in texts) else None)
    for column in shown.columns:
        if any(t(shown[column]) for t in texts):
            shown[column] = [_readable(v) for v in shown[column]]
    if not shown.index.is_unique:  # e.g. several unranked models, rank "-": a column of its own (the styler needs unique rows)
        shown = shown.reset_index()
    plain = shown.index.name is None and pd.api.types.is_integer_dtype(shown.index)  # row numbers, also of a filtered frame
    styler = shown.style.format(na_rep="–", escape="html")
    prose_columns = [c for c in shown.columns if shown[c].map(lambda v: isinstance(v, str) and len(v) > LONG_CELL).any()]
    path_columns = [c for c in shown.columns if shown[c].map(lambda v: isinstance(v, str) and bool(_PATH.fullmatch(v))).any()]
    if prose_columns or path_columns:  # a sentence wraps in its cell, a file path anywhere; a number or interval stays whole
        classes = pd.DataFrame("", index=shown.index, columns=shown.columns)  # (_static/xray.css)
        classes[prose_columns] = "xray-text"
        classes[path_columns] = "xray-path"
        styler = styler.set_td_classes(classes)
    if plain:
        styler = styler.hide(axis="index")
    return styler.set_table_attributes('class="dataframe xray-table"').to_html()


#: An interval's bracket, ``[0.790, 0.935]``, whose inner space must not break a line.
_INTERVAL = re.compile(r"\[[^\[\]]{0,40}\]")


def _readable(value: Any) -> Any:
    """A text cell with a model's key as its name (:func:`~xrayutils.prose.header`), each interval and "± sd" unbroken."""
    if not isinstance(value, str):
        return value
    return _INTERVAL.sub(lambda m: m[0].replace(" ", "\u00a0"), results.display_name(value)).replace("± ", "±\u00a0")


def _cell(value: Any) -> Any:
    """One cell of a mixed column as :func:`page_table` shows it: no NaN, no True/False, no repr of a path."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{int(value):,}" if value.is_integer() else f"{round(value, 3) + 0.0:.3f}"  # never "-0.000"
    if isinstance(value, Path):
        return value.name
    return value


def _plain_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
    """A warning as its kind and message: the default adds the file and line that raised it, a path of the build machine."""
    return f"{category.__name__}: {message}\n"


@dataclass
class Chapter:
    """The provenance of one executed chapter: what ran, on what, where, for how long."""

    name: str
    profile: str
    parameters: dict[str, Any] = field(default_factory=_notebook_parameters)
    output_root: str | Path | None = None
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)
    precision: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        os.environ[progress.ENV_CHAPTER] = self.name  # the runner's terminal tells chapters apart by it
        warnings.formatwarning = _plain_warning
        quiet_logs()
        tables_for_the_page()
        self.output_root = Path(self.output_root) if self.output_root else default_output_root()
        self.output_dir = self.output_root / self.name
        self.output_dir.mkdir(parents=True, exist_ok=True)

    @property
    def record(self) -> chapters.ChapterRecord:
        """What this chapter is (:mod:`xrayutils.chapters`): the study, dataset and task it trains on, the chapters it reads."""
        return chapters.record(self.name)

    def add_dataset(self, dataset: Any) -> None:
        """Record a :class:`~xrayutils.datasets.XrayDataset`'s name, task, size and fingerprint."""
        self.datasets[f"{dataset.name}/{dataset.task}"] = {
            "root": str(dataset.root),
            "images": len(dataset),
            "skipped": len(dataset.skipped),
            "fingerprint": dataset.fingerprint(),
        }

    def provenance(self) -> dict[str, Any]:
        return {
            "chapter": self.name,
            "profile": self.profile,
            "parameters": self.parameters,
            "datasets": self.datasets,
            "weights": self.weights,
            "precision": self.precision,
            "models": self.models,
            "started": _dt.datetime.fromtimestamp(self.started).isoformat(timespec="seconds"),
            "wall_time_s": round(time.time() - self.started, 1),
            "commit": git_commit(),
            "versions": versions(),
            "device": device(),
        }

    def save_results(self, payload: dict, filename: str = results.RESULTS_FILE) -> None:
        """Save ``payload`` with this chapter's provenance in the output folder, and say so (and if an older run was kept).

        It says it in a sentence and returns nothing: a chapter's cell ends with
        this call, and a returned path would show on the page as its repr.
        """
        path = self.output_dir / filename
        for name, model in payload.get("models", {}).items():  # a modelling chapter's: the stamp says what each model was
            if isinstance(model, dict) and "precision" in model:
                self.precision[name] = model["precision"]
            if isinstance(model, dict) and model.get("weight_counts"):
                self.models[name] = model_line(model)
        kept = results.save(path, payload, self.provenance())
        print(f"Saved {path.name} in {self.name}'s output folder" + (
            f"; it held results of a different run, kept as {kept.name}." if kept else "."))

    def use_weights(self, weights: dict[str, Any]) -> None:
        """Record which weights each model starts from and show it in an admonition at the chapter's top.

        ``weights`` maps a model name to a :class:`xrayutils.models.Weights`.  Any
        model without pretrained weights is called out as not transfer learning.
        """
        from IPython.display import HTML, display

        self.weights.update({name: w.description for name, w in weights.items()})
        display(HTML(weights_notice(weights)))

    def show_setup(self, protocol: Any, weights: dict[str, Any], dataset: Any, frames: dict[str, Any]) -> None:
        """Record each model's starting weights and glue the box of what this run is, for the chapter's top (``setup_box``).

        The box (:func:`xrayutils.findings.setup_box`) gives the profile, the weights
        per model, the data against the full dataset and every way this run differs
        from the published protocol.  The chapter's first cell pastes it under its
        title (```{glue} setup_box```); outside a book build it is shown here.
        """
        from xrayutils import findings

        self.weights.update({name: w.description for name, w in weights.items()})
        glue_html("setup_box", findings.setup_box(self.profile, self.name, protocol, weights, f"{dataset.name}/{dataset.task}",
                                                  {split: len(frame) for split, frame in frames.items()}))

    def stamp(self) -> None:
        """Display the reproducibility stamp as a table and write it to ``run_info.json``."""
        from IPython.display import Markdown, display

        info = self.provenance()
        results.write_json_atomic(self.output_dir / "run_info.json", info)
        display(Markdown(stamp_markdown(info)))
        glue_html("rerun_box", rerun_box(self.name, list(self.datasets), info["wall_time_s"], self.profile))


def rerun_box(chapter: str, loaded: list[str], wall_time_s: float, profile: str) -> str:
    """The box under a chapter's title: what it needs, what it took in this build and the whole book elsewhere, how to run it again.

    ``loaded`` are the dataset keys the chapter recorded (``"covid-xray/two"``);
    the chapters it reads results from come from its :class:`~xrayutils.chapters.ChapterRecord`.
    """
    names = dict.fromkeys(key.split("/")[0] for key in loaded)
    needs = [datasets.SOURCES[name].fetch if name in datasets.SOURCES else name for name in names]
    record = chapters.get(chapter) or chapters.ChapterRecord(chapter, chapter)  # a page a reader added: needs and trains nothing
    earlier = record.needs
    if earlier:
        needs.append(f"the results of {', '.join(earlier)} in the same output folder (`xray-book build` runs them first)")
    measured = [f"{m['minutes']} minutes on {m['machine']} ({m['date']})" for m in measured_times(profile)]
    gpu = ("a GPU for the <code>paper</code> profile (<code>xray-book plan --profile paper</code> estimates its time on "
           "your machine); the <code>cpu</code> profile runs on a laptop") if record.trains else "no GPU: it trains nothing"
    items = [
        f"<b>Needs</b>: {html.escape('; '.join(needs) or 'nothing beyond the package')}",
        f"<b>This build</b>: this chapter took {prose.duration(wall_time_s)} under the <code>{html.escape(profile)}</code> profile"
        + (f"; the whole book under it took {html.escape('; '.join(measured))}" if measured else ""),
        f"<b>Hardware</b>: {gpu}",
        f"<b>Rerun</b>: <code>xray-book run notebooks/{chapter}.ipynb --profile cpu -p NAME VALUE</code> from a clone "
        f"(after <code>make setup</code>), or <code>papermill notebooks/{chapter}.ipynb out.ipynb -p NAME VALUE</code>; "
        "<code>make lab</code> opens it in JupyterLab; elsewhere (Colab, another environment) install the package first, "
        "<code>pip install /path/to/repository</code>. The download button gives this page's notebook, which finds the data "
        "through <code>XRAY_DATA_DIR</code>",
    ]
    return prose.admonition("Running this chapter", items, "tip")


def measured_times(profile: str, path: Path = chapters.PROFILES) -> list[dict[str, Any]]:
    """The whole book's recorded wall times under ``profile`` (``measured:`` in ``profiles.yml``); none where the file is not at hand."""
    if not path.is_file():  # an installed package: the profiles live in the repository
        return []
    return chapters.load_profiles(path).get(profile, {}).get("measured", [])


def stamp_markdown(info: dict[str, Any]) -> str:
    """The stamp as a Markdown table, one row per fact."""

    def cell(value: Any) -> str:
        if isinstance(value, dict):
            return "<br>".join(f"`{k}` = {prose.plain(v)}" for k, v in value.items()) or "none"
        return str(value)

    datasets = {
        key: f"{d['images']} images, {d['skipped']} skipped, fingerprint {d['fingerprint']}"
        for key, d in info["datasets"].items()
    }
    rows = [
        ("Chapter", info["chapter"]),
        ("Profile", f"`{info['profile']}`"),
        ("Parameters", info["parameters"]),
        ("Data", datasets),
        ("Weights", info["weights"] or "none used in this chapter"),
        *([("Precision", info["precision"])] if info.get("precision") else []),
        *([("Models", info["models"])] if info.get("models") else []),
        ("Versions", info["versions"]),
        ("Commit", f"`{info['commit']}`"),
        ("Device", info["device"]),
        ("Started", info["started"]),
        ("Wall time", f"{info['wall_time_s']:.1f} s"),
    ]
    body = "\n".join(f"| {name} | {cell(value)} |" for name, value in rows)
    return "**Reproducibility stamp**\n\n| | |\n|---|---|\n" + body


def model_line(entry: dict[str, Any]) -> str:
    """A trained model's size, layers and training in one line, from its results-file entry, for the stamp.

    The layers and the optimiser are those that really trained, so a model
    changed on the chapter's page shows here.
    """
    counts, history = entry["weight_counts"], entry.get("history") or {}
    trained = f"; {history['optimizer']} at {history['learning_rate']:g}, {history['loss_function']}" if "optimizer" in history else ""
    head = f"; last layers {', '.join(history['layers'][-3:])}" if history.get("layers") else ""  # every layer: the results file
    return f"{counts['total']:,} parameters ({counts['trainable']:,} trainable){trained}{head}"


def glue(name: str, value: Any, display: bool = False) -> None:
    """Glue ``value`` for use in the chapter's prose (``{glue:text}`name```); prints it outside a book build."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # Colab or plain Jupyter without the book tools
        print(f"{name} = {value}")
        return
    _glue(name, value, display=display)


def glue_html(name: str, text: str) -> None:
    """Glue HTML (a box) for a page to paste where its prose says (```{glue} name```); shown in place outside a book build."""
    from IPython.display import HTML, display

    try:
        from myst_nb import glue as _glue
    except ImportError:  # Colab or plain Jupyter: no page to paste into
        display(HTML(text))
        return
    _glue(name, HTML(text), display=False)


def weights_notice(weights: dict[str, Any]) -> str:
    """HTML admonition (Sphinx classes, so the book styles it) stating each model's starting weights."""
    scratch = [name for name, w in weights.items() if not w.pretrained]
    items = "".join(
        f"<li><b>{name}</b>: {html.escape(w.description)}"
        + ("" if w.pretrained else " &mdash; <b>not transfer learning</b>")
        + "</li>"
        for name, w in weights.items()
    )
    kind, title = ("warning", "Weights: some models start from random weights") if scratch else ("note", "Weights used")
    extra = (
        f"<p>{', '.join(scratch)} started from random weights and learned only from this chapter's images. Do not "
        "read such numbers as those of an ImageNet-pretrained model. To use ImageNet weights, set <code>weights</code> to "
        "<code>imagenet</code> on a machine that can download them, or to the path of a weights file.</p>"
        if scratch else ""
    )
    return f'<div class="admonition {kind}"><p class="admonition-title">{title}</p><ul>{items}</ul>{extra}</div>'
