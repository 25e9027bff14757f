"""The results files: the chapters' names, what each needs, and writing and reading what they leave behind.

Every chapter writes ``<output_root>/<chapter>/results.json``
(``{"provenance", "results"}``); a modelling chapter also records its
:class:`~xrayutils.protocol.TrainingProtocol` under ``results["protocol"]``, one
entry per model under ``results["models"]`` (:meth:`xrayutils.jobs.ModelRun.record`)
and one ``test_predictions_<model>.csv`` per model.  Chapters 04, 05 and the
Performance page read only these files, so every number they show was computed
by a chapter, never typed in.  This is the only module that names a chapter's files.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xrayutils import chapters

#: Measurements the code reads at run time (bfloat16 speed-ups, step times, seed comparisons): package data, so that an
#: installed package reads the same files as a checkout; ``benchmarks/`` scripts write them (``benchmarks/README.md``).
MEASUREMENTS = Path(str(resources.files("xrayutils") / "measurements"))

#: How results files and findings name a model: ``<chapter>/<model>`` (:func:`xrayutils.checks.key`).
_MODEL_KEY = re.compile(r"^(\d\d)_[a-z0-9_]+/(\S+)$")


def display_name(name: str) -> str:
    """A model's key as a page names it: ``"01_vgg16_binary/VGG16"`` -> ``"VGG16 (01)"``; any other name unchanged.

    >>> display_name("03_coronahack_models/ResNet34"), display_name("thumbnails")
    ('ResNet34 (03)', 'thumbnails')
    """
    key = _MODEL_KEY.match(name) if isinstance(name, str) else None
    return f"{key[2]} ({key[1]})" if key else name


#: The file each chapter writes its results to, in its output folder.
RESULTS_FILE = "results.json"
#: Chapter 00's near-duplicate pairs, read by chapters 04 and 05.
NEAR_DUPLICATES_FILE = "near_duplicates.csv"


# Writing

#: The suffix of a file :func:`write_atomic` has not finished: never a result, removed by :func:`sweep_partial`.
PARTIAL = ".partial"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it: a reader never sees half a file.

    When the write fails (a full disk) the temporary file is removed and
    ``path``, if it existed, is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL, delete=False)  # noqa: SIM115
    tmp = Path(handle.name)
    try:
        with handle:
            handle.write(text)
        tmp.chmod(0o644)  # NamedTemporaryFile makes files private; results are for every reader
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sweep_partial(folder: Path) -> list[Path]:
    """Remove the unfinished files a killed process left under ``folder`` (:data:`PARTIAL`); the ones removed.

    The runner calls it when a build starts, under the build's lock, so no
    writer of this build folder is running.
    """
    left = sorted(Path(folder).rglob(f".*{PARTIAL}")) if Path(folder).is_dir() else []
    for path in left:
        path.unlink(missing_ok=True)
    return left


def write_json_atomic(path: Path, payload: Any) -> None:
    """:func:`write_atomic` for strict JSON: numpy values and paths are converted, and NaN or infinity is written ``null``.

    Python's ``json`` would write ``NaN``, which is not JSON: strict parsers
    (``jq``, JavaScript, many JSON libraries) reject the whole file.
    :func:`read_json` turns the ``null`` of an undefined metric back into NaN.
    """
    write_atomic(path, json.dumps(_strict(payload), indent=2, allow_nan=False))


def _strict(value: Any) -> Any:
    """``value`` with numpy values as Python ones, paths as text and non-finite floats as ``None``."""
    if isinstance(value, dict):
        return {str(k) if isinstance(k, Path) else k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _strict(value.tolist())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _undefined_as_nan(value: Any) -> Any:
    """A metric interval ``{"value", "low", "high"}`` read with ``null`` in it holds NaN again, as it was computed."""
    if isinstance(value, dict):
        if {"value", "low", "high"} <= set(value):
            return {k: math.nan if v is None and k in ("value", "low", "high") else _undefined_as_nan(v) for k, v in value.items()}
        return {k: _undefined_as_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_undefined_as_nan(v) for v in value]
    return value


class BrokenResultsError(ValueError):
    """A results file or sidecar that does not parse: named, with the chapter that wrote it."""


def read_json(path: Path) -> Any:
    """A file :func:`write_json_atomic` wrote; undefined metrics (``null`` in an interval) come back as NaN.

    A file that does not parse (cut short by a full disk, say) is named with
    the chapter whose folder holds it, instead of JSON's bare line and column.
    """
    path = Path(path)
    try:
        return _undefined_as_nan(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BrokenResultsError(f"{path} is broken ({error}): rerun chapter {path.parent.name}, which wrote it "
                                 "(xray-book build sets a broken file aside and reruns its chapter)") from None


def save(path: Path, results: dict, provenance: dict) -> Path | None:
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
    return json.loads(json.dumps(_strict({k: v for k, v in provenance.items() if k not in ignored})))


def predictions_filename(model: str) -> str:
    """The file a model's per-image test results go to, in its chapter's folder."""
    return f"test_predictions_{model.lower()}.csv"


def near_duplicates_path(output_root: str | Path) -> Path:
    """Chapter 00's table of near-duplicate pairs, which chapter 04 reads."""
    return Path(output_root) / chapters.DATA_EXPLORATION / NEAR_DUPLICATES_FILE


# Reading

def load(output_root: str | Path, chapter: str) -> dict[str, Any]:
    """``{"provenance", "results"}`` of one chapter; a missing file says which and how to make it."""
    path = Path(output_root) / chapter / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no results of chapter {chapter} at {path}: run it first "
            f"(xray-book run notebooks/{chapter}.ipynb with the same profile and --build-dir)"
        )
    return read_json(path)


def near_duplicates(output_root: str | Path) -> pd.DataFrame:
    """Chapter 00's near-duplicate pairs; a missing file says which chapter makes it."""
    path = near_duplicates_path(output_root)
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: run chapter {chapters.DATA_EXPLORATION} with the same profile and output folder first")
    return pd.read_csv(path)


def modelling_chapters(output_root: str | Path) -> list[str]:
    """The modelling chapters that left results under ``output_root``, in book order."""
    return [chapter for chapter in chapters.MODELLING if (Path(output_root) / chapter / RESULTS_FILE).is_file()]


def model_records(output_root: str | Path, chapters: list[str] | None = None) -> list[dict[str, Any]]:
    """One flat record per model of every modelling chapter: where it came from, how it trained, what it scored or why it failed.

    ``folder`` is the chapter's output folder, where the model and its predictions are;
    ``data_root`` the folder its predictions' ``file`` names are relative to.
    """
    records = []
    for chapter in chapters if chapters is not None else modelling_chapters(output_root):
        saved = load(output_root, chapter)
        provenance, results = saved["provenance"], saved["results"]
        dataset = next(iter(provenance.get("datasets", {})), "unknown")
        for name, entry in results["models"].items():
            records.append({
                "chapter": chapter,
                "model": name,
                "folder": str(Path(output_root) / chapter),
                "dataset": dataset,
                "data_root": provenance.get("datasets", {}).get(dataset, {}).get("root"),
                "profile": provenance.get("profile", "unknown"),
                "protocol": results.get("protocol", {}),
                "classes": results.get("classes", []),
                "n": results.get("n", {}),
                **entry,
            })
    return records


def best_model(records: list[dict[str, Any]], chapter: str, metric: str = "roc_auc") -> str | None:
    """The chapter's model with the highest ``metric`` among those that ran (ties: the first listed)."""
    ran = [r for r in records if r["chapter"] == chapter and "metrics" in r]
    scored = [r for r in ran if not np.isnan(r["metrics"][metric]["value"])]
    if not scored:
        return ran[0]["model"] if ran else None
    return max(scored, key=lambda r: r["metrics"][metric]["value"])["model"]


def predictions(record: dict[str, Any]) -> pd.DataFrame:
    """The per-image test results a model's chapter wrote (``file``, ``true``, ``predicted``, ``correct``, ``p_<class>``)."""
    return pd.read_csv(Path(record["folder"]) / (record.get("predictions_file") or predictions_filename(record["model"])))


def model_path(record: dict[str, Any]) -> Path:
    """The ``.keras`` file a model's chapter saved."""
    return Path(record["folder"]) / record["model_file"]


def probabilities(table: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """The ``p_<class>`` columns of a predictions table as an ``(n, n_classes)`` array."""
    return table[[f"p_{c}" for c in classes]].to_numpy()


def true_labels(table: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """The ``true`` column of a predictions table as class indices."""
    return table["true"].map(classes.index).to_numpy()


# Floors: d2l-style assertions on a profile's results

@dataclass(frozen=True)
class Floor:
    """A result a build must reach: ``metric`` of ``model`` (``"*"``: every model) of ``chapter``.

    ``at_least`` bounds the test value from below; ``interval_above`` asks the
    95% interval's low end to lie above it (``balanced_accuracy`` above 0.5: better
    than one class for all, beyond the test set's noise).  A model that failed is
    below every floor.  Declared per profile in ``profiles.yml`` (``floors:``).
    """

    chapter: str
    metric: str
    model: str = "*"
    at_least: float | None = None
    interval_above: float | None = None

    def __post_init__(self) -> None:
        if self.chapter not in chapters.MODELLING:
            raise ValueError(f"a floor needs a modelling chapter ({', '.join(chapters.MODELLING)}), got {self.chapter!r}")
        if (self.at_least is None) == (self.interval_above is None):
            raise ValueError(f"a floor on {self.chapter} {self.metric} needs exactly one of at_least and interval_above")

    def failures(self, records: list[dict[str, Any]]) -> list[str]:
        """One message per model of ``records`` below this floor, naming chapter, model, metric, value and floor."""
        mine = [r for r in records if r["chapter"] == self.chapter and self.model in ("*", r["model"])]
        if not mine:
            return [f"{self.chapter}: no model {self.model!r} to hold to its {self.metric} floor"]
        found = []
        for r in mine:
            where = f"{self.chapter}, model {r['model']}, {self.metric}"
            if "metrics" not in r:
                found.append(f"{where}: no value (the model failed: {r.get('error')}), floor {self._floor()}")
                continue
            ci = r["metrics"][self.metric]
            if self.at_least is not None and not ci["value"] >= self.at_least:
                found.append(f"{where}: {ci['value']:.3f}, below the floor {self._floor()}")
            if self.interval_above is not None and not ci["low"] > self.interval_above:
                found.append(f"{where}: {ci['value']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}], below the floor {self._floor()}")
        return found

    def _floor(self) -> str:
        return f">= {self.at_least}" if self.at_least is not None else f"interval above {self.interval_above}"


def floor_failures(output_root: str | Path, floors: list[Floor], chapters: list[str]) -> list[str]:
    """Every result of ``chapters`` (those this build ran) below its floor, as messages; none when all hold."""
    held = [floor for floor in floors if floor.chapter in chapters]
    records = model_records(output_root, sorted({floor.chapter for floor in held}))
    return [message for floor in held for message in floor.failures(records)]
