"""What every chapter does around its science: provenance, results files, glue.

A chapter opens with ``run = book.Chapter(name, profile=..., parameters=...)``,
records its data with ``run.add_dataset(ds)``, saves results with
``run.save_results(...)`` and ends with ``run.stamp()``, which shows profile,
parameters, data fingerprints, weights, versions, commit, device and wall time.
Used by every chapter.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata as _metadata
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
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


def git_commit(repo: Path = REPO_ROOT) -> str:
    """Short commit of the book's sources, with ``+dirty`` when they have uncommitted changes."""
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


def device() -> str:
    """The devices TensorFlow will compute on, e.g. ``"CPU (2 cores)"`` or ``"GPU: NVIDIA T4"``."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU ({os.cpu_count()} cores), no GPU"
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    return "GPU: " + ", ".join(names)


def default_output_root() -> Path:
    """Where chapters write results when the runner does not say: ``$XRAY_OUTPUT_DIR`` or ``outputs/``."""
    return Path(os.environ.get("XRAY_OUTPUT_DIR", REPO_ROOT / "outputs"))


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        handle.write(text)
        tmp = Path(handle.name)
    tmp.chmod(0o644)  # NamedTemporaryFile makes files private; results are for every reader
    tmp.replace(path)


def write_json_atomic(path: Path, payload: Any) -> None:
    """:func:`write_atomic` for JSON (numpy values and paths are converted)."""
    write_atomic(path, json.dumps(payload, indent=2, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def save_results(path: Path, results: dict, provenance: dict) -> Path | None:
    """Write ``{"provenance": ..., "results": ...}`` atomically, never losing a different earlier run.

    When ``path`` already holds results whose provenance (parameters, data,
    weights) differs from this run's, that file is kept beside the new one as
    ``<stem>.previous-<timestamp>.json`` and the kept path is returned, so a
    rerun never silently overwrites a finished result it cannot reproduce.
    """
    path = Path(path)
    kept = None
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}
        if _comparable(old.get("provenance", {})) != _comparable(provenance):
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            kept = path.with_name(f"{path.stem}.previous-{stamp}{path.suffix}")
            path.replace(kept)
    write_json_atomic(path, {"provenance": provenance, "results": results})
    return kept


def _comparable(provenance: dict) -> dict:
    """The part of a provenance that decides the result (not when or how long it ran)."""
    ignored = {"started", "wall_time_s", "commit", "versions", "device"}
    return json.loads(json.dumps({k: v for k, v in provenance.items() if k not in ignored}, default=_jsonable))


@dataclass
class Chapter:
    """The provenance of one executed chapter: what ran, on what, where, for how long."""

    name: str
    profile: str
    parameters: dict[str, Any]
    output_root: str | Path | None = None
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.output_root = Path(self.output_root) if self.output_root else default_output_root()
        self.output_dir = self.output_root / self.name
        self.output_dir.mkdir(parents=True, exist_ok=True)

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
            "started": _dt.datetime.fromtimestamp(self.started).isoformat(timespec="seconds"),
            "wall_time_s": round(time.time() - self.started, 1),
            "commit": git_commit(),
            "versions": versions(),
            "device": device(),
        }

    def save_results(self, results: dict, filename: str = "results.json") -> Path:
        """Save ``results`` with this chapter's provenance in the output folder; say if an older run was kept."""
        path = self.output_dir / filename
        kept = save_results(path, results, self.provenance())
        if kept:
            print(f"Note: {path.name} held results of a different run; they were kept as {kept.name}.")
        return path

    def use_weights(self, weights: dict[str, Any]) -> None:
        """Record which weights each model starts from and show it in an admonition at the chapter's top.

        ``weights`` maps a model name to a :class:`xrayutils.models.Weights`.  Any
        model without pretrained weights is called out as not transfer learning.
        """
        from IPython.display import HTML, display

        self.weights.update({name: w.description for name, w in weights.items()})
        display(HTML(weights_notice(weights)))

    def stamp(self) -> None:
        """Display the reproducibility stamp as a table and write it to ``run_info.json``."""
        from IPython.display import Markdown, display

        info = self.provenance()
        write_json_atomic(self.output_dir / "run_info.json", info)
        display(Markdown(stamp_markdown(info)))


def stamp_markdown(info: dict[str, Any]) -> str:
    """The stamp as a Markdown table, one row per fact."""

    def cell(value: Any) -> str:
        if isinstance(value, dict):
            return "<br>".join(f"`{k}` = `{v}`" for k, v in value.items()) or "none"
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
        ("Versions", info["versions"]),
        ("Commit", f"`{info['commit']}`"),
        ("Device", info["device"]),
        ("Started", info["started"]),
        ("Wall time", f"{info['wall_time_s']:.1f} s"),
    ]
    body = "\n".join(f"| {name} | {cell(value)} |" for name, value in rows)
    return "**Reproducibility stamp**\n\n| | |\n|---|---|\n" + body


def glue(name: str, value: Any, display: bool = False) -> None:
    """Glue ``value`` for use in the chapter's prose (``{glue:text}`name```); prints it outside a book build."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # Colab or plain Jupyter without the book tools
        print(f"{name} = {value}")
        return
    _glue(name, value, display=display)


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


def published_results(study: str | None = None) -> pd.DataFrame:
    """The numbers the reproduced studies published (``published_results.csv``, shipped with the package)."""
    import pandas as pd

    with resources.files("xrayutils").joinpath("published_results.csv").open() as handle:
        table = pd.read_csv(handle)
    return table if study is None else table[table["study"] == study].reset_index(drop=True)
