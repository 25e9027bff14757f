"""The chest X-ray datasets of the book, behind one API.

Every chapter gets its images through :func:`load`, which returns an
:class:`XrayDataset`: one row per image in ``metadata`` (path, split, label,
patient, view), class names in a fixed order, a ``totals()`` table and a
content ``fingerprint()``.  The datasets look alike to a chapter, so that a
model trained on one can be scored on another (chapter 04):

- ``covid-xray`` and ``coronahack``, the data of the two reproduced studies;
- ``covid-chestxray-dataset``: adults *without* COVID-19 from the COVID-19
  images' own source (Cohen et al.), for the age and source confound.  It has no
  training split: every image is a test image.  Its ``covid`` task also has the
  COVID-19 images covid-xray holds, for a test within one collection.

When that collection's ``metadata.csv`` is present, the other datasets' images
it names (matched by file stem) take their patient, view, age and sex from it
(:func:`~xrayutils.sources.adults.join_collection`): covid-xray's COVID-19 images are images of it.

Each dataset is one record (:mod:`xrayutils.sources`: its classes, layout,
upstream, download and how to read it), assembled in :data:`SOURCES`; a new one
is added with :func:`register`.

Where the files come from, in this order: an explicit ``root``; the folder named
by ``XRAY_DATA_DIR`` (or ``data_dir``) holding ``covid-xray/``, ``coronahack/``
(or ``coronahack-mini/``) and ``covid-chestxray-dataset/``; the local cache; a
download.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xrayutils.sources import adults, coronahack, covid_xray
from xrayutils.sources.base import IMAGE_SUFFIXES, SPLITS, Source, cache_dir

#: The adults without COVID-19 from the collection the COVID-19 images come from.
ADULTS = adults.NAME
#: Every dataset the book reads, by name (:func:`register` adds one).
SOURCES: dict[str, Source] = {one.name: one for one in (covid_xray.SOURCE, coronahack.SOURCE, adults.SOURCE)}
#: The columns of every dataset's ``metadata`` (a dataset may add its own after them).
COLUMNS = ["path", "file", "split", "class_name", "label", "patient_id", "view"]
#: Suffixes ``xray-book predict`` looks for in a folder: the pipeline's (:data:`~xrayutils.sources.base.IMAGE_SUFFIXES`)
#: and formats it reads with Pillow where TensorFlow cannot (TIFF; WebP, which only recent TensorFlow decodes).  Not
#: dataset images, so that a dataset holds the same images with every supported TensorFlow.
READABLE_SUFFIXES = IMAGE_SUFFIXES | {".tif", ".tiff", ".webp"}
#: What is known of the patients' ages where the data give none per image: (youngest, oldest), in years.
KNOWN_AGES = {
    "children of Kermany et al. (normal, pneumonia)": (1.0, 5.0),  # "pediatric patients of one to five years old"
}


def register(source: Source) -> Source:
    """Add a dataset record (a :class:`~xrayutils.sources.base.ClassFolders` for class folders): :func:`load` then reads it by name."""
    SOURCES[source.name] = source
    return source


def source(name: str) -> Source:
    """The record of dataset ``name``, or an error naming the datasets there are."""
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(SOURCES)}")
    return SOURCES[name]


def classes(name: str, task: str) -> list[str]:
    """Class names of ``name``'s ``task``, in the order every chapter uses (the same name for the same thing)."""
    return source(name).classes[task]


class DataNotFoundError(FileNotFoundError):
    """Raised when a dataset is neither local, cached nor downloadable."""


@dataclass
class XrayDataset:
    """One dataset, one task: a metadata table with one row per image.

    Attributes
    ----------
    name : str
        ``"covid-xray"``, ``"coronahack"`` or ``"covid-chestxray-dataset"``.
    task : str
        ``"two"`` (binary) or ``"all"`` (every class the data has).
    classes : list of str
        Class names; ``label`` in ``metadata`` indexes this list.
    root : pathlib.Path
        The dataset folder the files were read from.
    metadata : pandas.DataFrame
        Columns ``path`` (absolute), ``file`` (relative to ``root``), ``split``,
        ``class_name``, ``label``, ``patient_id``, ``view``; the adults' also
        ``projection`` (``PA``, ``AP``, ``AP Supine``, ``L``...), ``finding`` (the most
        specific one), ``age`` (years, NaN when unknown) and ``sex``.  The other
        datasets have these columns too, filled for the images the collection's
        metadata names (``in_collection``) and empty for the others; coronahack's
        ``finding`` is its CSV's most specific label.
    skipped : pandas.DataFrame
        Files left out, with the reason (``file``, ``reason``).
    """

    name: str
    task: str
    classes: list[str]
    root: Path
    metadata: pd.DataFrame
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["file", "reason"]))

    def __len__(self) -> int:
        return len(self.metadata)

    def __str__(self) -> str:
        """What ``print`` shows (a chapter's page): the dataset in a sentence, its root by folder name."""
        counts = ", ".join(f"{len(part)} {split}" for split, part in self.metadata.groupby("split", sort=False))
        return (f"{self.name}/{self.task}: {len(self)} images ({counts}) in {len(self.classes)} classes "
                f"({', '.join(self.classes)}), {len(self.skipped)} skipped, read from {self.root}")

    def __repr__(self) -> str:
        counts = ", ".join(
            f"{split}: {len(part)}" for split, part in self.metadata.groupby("split", sort=False)
        )
        return (
            f"XrayDataset(name={self.name!r}, task={self.task!r}, classes={self.classes}, "
            f"images={len(self)} ({counts}), skipped={len(self.skipped)}, root='{self.root}')"
        )

    def totals(self) -> pd.DataFrame:
        """Images per split (rows) and class (columns), classes in their fixed order."""
        table = pd.crosstab(self.metadata["split"], self.metadata["class_name"])
        table = table.reindex(columns=self.classes, fill_value=0)
        return table.reindex([s for s in SPLITS if s in table.index])

    def subset(self, split: str) -> pd.DataFrame:
        """The rows of one split, in a stable order."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.metadata[self.metadata["split"] == split].reset_index(drop=True)

    def fingerprint(self) -> str:
        """SHA-256 over the relative path, label and content of every image used.

        Two runs with the same fingerprint saw the same bytes with the same labels,
        whatever machine or folder they ran from.
        """
        digest = hashlib.sha256()
        for row in self.metadata.sort_values("file").itertuples():
            digest.update(f"{row.file}\t{row.split}\t{row.class_name}\t".encode())
            digest.update(_file_sha256(Path(row.path)).encode())
        return digest.hexdigest()[:16]


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- locating


def locate(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Find the folder of dataset ``name``, downloading it if allowed and needed.

    Parameters
    ----------
    name : {"covid-xray", "coronahack", "covid-chestxray-dataset"}
    data_dir : path, optional
        A folder holding the datasets' folders (each record's ``folder_names``).  Defaults to ``XRAY_DATA_DIR``.  When a folder is
        named and the dataset is not in it, that is an error (no fallback).
    download : bool
        Whether to download into :func:`cache_dir` when nothing is local.
    """
    record = source(name)
    data_dir = data_dir or os.environ.get("XRAY_DATA_DIR")
    searched = []
    if data_dir:
        for folder in record.folder_names:
            candidate = Path(data_dir).expanduser() / folder
            searched.append(candidate)
            if candidate.is_dir():
                return candidate.resolve()
        raise DataNotFoundError(_not_found_message(name, searched, download_tried=False))
    cached = cache_dir() / name
    searched.append(cached)
    if cached.is_dir():
        return cached
    if download:
        try:
            return _download(name, cached)
        except Exception as error:  # no network, no Kaggle credentials, bad archive...
            raise DataNotFoundError(
                _not_found_message(name, searched, download_tried=True) + f"\nDownload failed: {error}"
            ) from error
    raise DataNotFoundError(_not_found_message(name, searched, download_tried=False))


def _not_found_message(name: str, searched: list[Path], *, download_tried: bool) -> str:
    looked = "\n".join(f"  - {p}" for p in searched) or "  (no folder given and XRAY_DATA_DIR unset)"
    record = source(name)
    return (
        f"Dataset {name!r} not found.\nLooked in:\n{looked}\n"
        f"{'A download was attempted.' if download_tried else 'No download was attempted.'}\n"
        f"Upstream: {record.upstream}\n"
        f"Put the files in this layout under a folder and point XRAY_DATA_DIR (or --data-dir) at it:\n"
        f"{record.layout}"
    )


def _download(name: str, target: Path) -> Path:
    """Download ``name`` into ``target`` as its record says, and check the layout before the cache is trusted."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    source(name).download(staging)
    check_layout(name, staging)
    staging.rename(target)
    return target


def check_layout(name: str, root: Path, tasks: tuple[str, ...] = ("two", "all")) -> None:
    """Raise ``DataNotFoundError`` naming every missing or empty folder of ``name``'s layout (only the folders ``tasks`` need)."""
    record = source(name)
    problems = record.problems(Path(root), tuple(t for t in tasks if t in record.classes))
    if problems:
        raise DataNotFoundError(
            f"Dataset {name!r} at {root} does not have the expected layout:\n  - "
            + "\n  - ".join(problems)
            + f"\nExpected:\n{record.layout}"
        )


# --------------------------------------------------------------------------- loading


def load(
    name: str,
    *,
    task: str = "two",
    root: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    views: tuple[str, ...] = ("frontal", "lateral"),
    unique_patients: bool = False,
    max_images_per_class: int | None = None,
    seed: int = 0,
    check_images: bool = True,
) -> XrayDataset:
    """Load one dataset for one task: the single entry point every chapter uses.

    Parameters
    ----------
    name : {"covid-xray", "coronahack", "covid-chestxray-dataset"}
    task : {"two", "all", "covid"}
        ``"two"``: covid vs normal (covid-xray), normal vs pneumonia (coronahack).
        ``"all"``: covid, normal, bacterial and viral pneumonia.  The adults
        have the same two classes in both: no finding and any other finding,
        frontal views without COVID-19.  ``"covid"`` (the adults' collection
        only): COVID-19 against every other finding, every view.
    root : path, optional
        The dataset folder itself; found with :func:`locate` when omitted.
    data_dir : path, optional
        Passed to :func:`locate`.
    views : tuple of str
        Keep only these views (``"frontal"``, ``"lateral"``): from the
        collection's metadata where it names the image, else from the file name
        (ending in ``-L``, the only marker covid-xray has).
    unique_patients : bool
        Keep only the first image (by file name) of each patient, where file
        names tell the patient.
    max_images_per_class : int, optional
        Keep at most this many images per split and class, drawn with ``seed``
        (used by the ``smoke`` profile; ``None`` or 0 keeps all).
    check_images : bool
        Decode every image once and leave out, with a warning naming it, any
        file that cannot be decoded.
    """
    record = source(name)
    if task not in record.tasks:
        raise ValueError(f"task must be one of {record.tasks} for {name}, got {task!r}")
    root = Path(root) if root else locate(name, data_dir)
    check_layout(name, root, tasks=(task,))
    frame, absent = record.rows(root, task)
    if record.joins_collection:
        frame = adults.join_collection(frame, collection_root(root, data_dir))
    names = record.classes[task]
    frame["label"] = frame["class_name"].map(names.index).astype(int)
    for column, from_name in (("patient_id", patient_id), ("view", view_of)):  # what no metadata names, the file name tells
        guessed = frame["file"].map(from_name)
        frame[column] = frame[column].fillna(guessed) if column in frame else guessed
    frame = frame[COLUMNS + [c for c in frame.columns if c not in COLUMNS]]  # the same first columns in every dataset
    frame = frame[frame["view"].isin(views)]
    if unique_patients:
        frame = frame.sort_values("file").drop_duplicates(["split", "patient_id"], keep="first")
    if max_images_per_class:
        frame = sample_per_class(frame, max_images_per_class, seed=seed)
    frame = frame.sort_values(["split", "label", "file"]).reset_index(drop=True)
    skipped = pd.DataFrame(columns=["file", "reason"])
    if check_images:
        frame, skipped = _drop_undecodable(frame)
    skipped = pd.concat([absent, skipped], ignore_index=True) if len(absent) else skipped
    return XrayDataset(name, task, names, root, frame, skipped)


def sample_per_class(frame: pd.DataFrame, n: int, *, seed: int) -> pd.DataFrame:
    """At most ``n`` random rows per split and class (all of a smaller class), the same for the same ``seed``.

    Used by :func:`load` (the ``smoke`` profile) and by chapter 00's sample grids.
    """
    shuffled = frame.sample(frac=1.0, random_state=seed)
    return shuffled.groupby(["split", "class_name"], sort=False).head(n).sort_values(["split", "class_name"])


def collection_root(root: Path, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The adults' collection beside ``root``, or where :func:`locate` finds it without a download; ``None`` when absent."""
    beside = Path(root).parent / ADULTS
    if (beside / "metadata.csv").is_file():
        return beside
    try:
        found = locate(ADULTS, data_dir, download=False)
    except DataNotFoundError:
        return None
    return found if (found / "metadata.csv").is_file() else None


# Heuristics, documented in the data chapter: file names are all these datasets give.
_PATIENT_PATTERNS = [
    re.compile(r"^(person\d+)_"),  # Kermany pneumonia: person12_bacteria_47
    re.compile(r"^((?:NORMAL2-)?IM-\d+)-"),  # Kermany normal: IM-0011-0001-0002
    re.compile(r"^(.*?)(?:-(?:L|PA|AP))$"),  # Cohen: covid-19-pneumonia-14-L / -PA
]


def patient_id(file: str) -> str:
    """The patient a file name points to, or the file's stem when it tells none.

    >>> patient_id("all/train/pneumonia_bac/person12_bacteria_47.jpeg")
    'person12'
    >>> patient_id("IM-0011-0001-0002.jpeg")
    'IM-0011'
    """
    stem = Path(file).stem
    for pattern in _PATIENT_PATTERNS:
        if match := pattern.match(stem):
            return match.group(1)
    return stem


def view_of(file: str) -> str:
    """``"lateral"`` for file names ending in ``-L`` (covid-xray's marker), else ``"frontal"``.

    >>> view_of("covid-19-pneumonia-14-L.jpeg"), view_of("gr1_lrg-a.jpeg")
    ('lateral', 'frontal')
    """
    return "lateral" if re.search(r"[-_]L$", Path(file).stem) else "frontal"


def _drop_undecodable(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    from xrayutils import pipeline

    reasons = [pipeline.decode_error(p) for p in frame["path"]]
    bad = np.array([r is not None for r in reasons], dtype=bool)
    skipped = pd.DataFrame({"file": frame.loc[bad, "file"], "reason": [r for r in reasons if r]})
    for row in skipped.itertuples():
        warnings.warn(f"cannot decode {row.file}: {row.reason}; left out", stacklevel=3)
    return frame[~bad].reset_index(drop=True), skipped.reset_index(drop=True)
