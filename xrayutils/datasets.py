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
(:func:`join_collection`): covid-xray's COVID-19 images are images of it.

Where the files come from, in this order: an explicit ``root``; the folder named
by ``XRAY_DATA_DIR`` (or ``data_dir``) holding ``covid-xray/``, ``coronahack/``
(or ``coronahack-mini/``) and ``covid-chestxray-dataset/``; the local cache; a
download.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

#: The adults without COVID-19 from the collection the COVID-19 images come from.
ADULTS = "covid-chestxray-dataset"
#: Class names in the order every chapter uses (the same name for the same thing).  The adults'
#: classes are their ``finding``: "No Finding", or any other (pneumonias of many causes, ARDS).
CLASSES = {
    ("covid-xray", "two"): ["covid", "normal"],
    ("covid-xray", "all"): ["covid", "normal", "pneumonia_bac", "pneumonia_vir"],
    ("coronahack", "two"): ["normal", "pneumonia"],
    ("coronahack", "all"): ["covid", "normal", "pneumonia_bac", "pneumonia_vir"],
    (ADULTS, "two"): ["no_finding", "pneumonia"],
    (ADULTS, "all"): ["no_finding", "pneumonia"],
    (ADULTS, "covid"): ["covid", "other"],  # COVID-19 against every other finding of the collection
}
#: The tasks each dataset has.
TASKS = {"covid-xray": ("two", "all"), "coronahack": ("two", "all"), ADULTS: ("two", "all", "covid")}
SPLITS = ("train", "test")
#: The columns of every dataset's ``metadata`` (a dataset may add its own after them).
COLUMNS = ["path", "file", "split", "class_name", "label", "patient_id", "view"]
#: Suffixes of the files a dataset folder contributes: formats the ``tf.data`` pipeline decodes.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}
#: Suffixes ``xray-book predict`` looks for in a folder: the above, and formats it reads with
#: Pillow where TensorFlow cannot (TIFF; WebP, which only recent TensorFlow decodes).  Not
#: dataset images, so that a dataset holds the same images with every supported TensorFlow.
READABLE_SUFFIXES = IMAGE_SUFFIXES | {".tif", ".tiff", ".webp"}

#: The upstream commit the adults' download is pinned to, and its archive.
COHEN_COMMIT = "6a4242344473ccb5ed0d2148d8c7bfb1691e4ed8"
COHEN_ARCHIVE = f"https://github.com/ieee8023/covid-chestxray-dataset/archive/{COHEN_COMMIT}.zip"

UPSTREAM = {
    "covid-xray": "https://github.com/mdshopon/COVID19_Classification "
    "(folders data_two_class -> two/, data_four_class -> all/)",
    "coronahack": "https://www.kaggle.com/datasets/praveengovi/coronahack-chest-xraydataset",
    ADULTS: f"https://github.com/ieee8023/covid-chestxray-dataset (commit {COHEN_COMMIT}; its frontal X-rays without COVID-19)",
}
#: Images per split in the full upstream datasets (the sample data is laid out like them): (dataset, task) -> split -> n;
#: a chapter that has fewer ran on a sample.  covid-xray: mdshopon/COVID19_Classification, 80 training and 31 test images
#: per class; CoronaHack: the Kaggle dataset's Chest_xray_Corona_Metadata.csv (5,286 TRAIN and 624 TEST rows).
FULL_SIZE: dict[tuple[str, str], dict[str, int]] = {
    ("covid-xray", "two"): {"train": 160, "test": 62},
    ("covid-xray", "all"): {"train": 320, "test": 124},
    ("coronahack", "two"): {"train": 5286, "test": 624},
    ("coronahack", "all"): {"train": 5286, "test": 624},
}
LAYOUT = {
    "covid-xray": "covid-xray/two/{train,test}/{covid,normal}/<images>\n"
    "covid-xray/all/{train,test}/{covid,normal,pneumonia_bac,pneumonia_vir}/<images>",
    "coronahack": "coronahack/Chest_xray_Corona_Metadata.csv\n"
    "coronahack/Coronahack-Chest-XRay-Dataset/Coronahack-Chest-XRay-Dataset/{train,test}/<images>",
    ADULTS: f"{ADULTS}/metadata.csv (the upstream columns, at least patientid, age, sex, finding, view, filename)\n"
    f"{ADULTS}/images/<the file each metadata.csv row names>",
}
#: What a reader of a model card must know about each dataset's sources, biases and licences (see book/data.md).
SOURCES = {
    "covid-xray": (
        "COVID-19 images from the COVID-19 image data collection of Cohen et al. (mostly adults, many cut from "
        "figures in journal articles, some with text, arrows or lateral views; each image under its own licence "
        "in that collection's metadata). Normal and pneumonia images from the paediatric chest X-rays of Kermany "
        "et al. (2018, one hospital in Guangzhou, children aged 1-5, CC BY 4.0). Classes therefore differ in "
        "source, age and image processing as well as in disease."
    ),
    "coronahack": (
        "The Kaggle CoronaHack collection (praveengovi; redistributes the images below, no licence of its own): "
        "normal and pneumonia images from the paediatric data of Kermany et al. (2018, CC BY 4.0), plus a few "
        "dozen COVID-19 images from the Cohen collection in TRAIN only. The TEST images of the sample were "
        "stretched to 224x224 RGB before they reached this book; TRAIN images keep their aspect ratio."
    ),
    ADULTS: (
        "Frontal chest X-rays of adults without COVID-19 (no finding, or pneumonias of other causes) from the COVID-19 "
        "image data collection of Cohen et al., the source of the COVID-19 images of both other datasets: many cut "
        "from figures in journal articles, each image under its own licence (metadata column license)."
    ),
}
#: What is known of the patients' ages where the data give none per image: (youngest, oldest), in years.
KNOWN_AGES = {
    "children of Kermany et al. (normal, pneumonia)": (1.0, 5.0),  # "pediatric patients of one to five years old"
}
# Folder names accepted under a data directory, first match wins.
FOLDER_NAMES = {"covid-xray": ["covid-xray"], "coronahack": ["coronahack", "coronahack-mini"], ADULTS: [ADULTS]}
CORONAHACK_CSV = "Chest_xray_Corona_Metadata.csv"
CORONAHACK_IMAGES = Path("Coronahack-Chest-XRay-Dataset", "Coronahack-Chest-XRay-Dataset")
COVID_XRAY_ARCHIVE = "https://github.com/mdshopon/COVID19_Classification/archive/refs/heads/master.zip"
KAGGLE_HANDLE = "praveengovi/coronahack-chest-xraydataset"
COHEN_COLUMNS = {"patientid", "age", "sex", "finding", "view", "filename"}
#: The ``view`` values of frontal images in the collection's metadata (``L`` is lateral; CT rows have others).
FRONTAL_VIEWS = ("PA", "AP", "AP Supine", "AP Erect")
#: The ``view`` value of a lateral image in the collection's metadata.
LATERAL = "L"


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


def cache_dir() -> Path:
    """Where downloads are kept: ``XRAY_CACHE_DIR`` or ``~/.cache/xrayutils``."""
    return Path(os.environ.get("XRAY_CACHE_DIR", Path.home() / ".cache" / "xrayutils"))


def locate(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Find the folder of dataset ``name``, downloading it if allowed and needed.

    Parameters
    ----------
    name : {"covid-xray", "coronahack", "covid-chestxray-dataset"}
    data_dir : path, optional
        A folder holding the datasets' folders (:data:`FOLDER_NAMES`).  Defaults to ``XRAY_DATA_DIR``.  When a folder is
        named and the dataset is not in it, that is an error (no fallback).
    download : bool
        Whether to download into :func:`cache_dir` when nothing is local.
    """
    _check_name(name)
    data_dir = data_dir or os.environ.get("XRAY_DATA_DIR")
    searched = []
    if data_dir:
        for folder in FOLDER_NAMES[name]:
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
    return (
        f"Dataset {name!r} not found.\nLooked in:\n{looked}\n"
        f"{'A download was attempted.' if download_tried else 'No download was attempted.'}\n"
        f"Upstream: {UPSTREAM[name]}\n"
        f"Put the files in this layout under a folder and point XRAY_DATA_DIR (or --data-dir) at it:\n"
        f"{LAYOUT[name]}"
    )


def _download(name: str, target: Path) -> Path:
    """Download ``name`` into ``target`` with the library made for its host."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    if name == "covid-xray":
        import pooch

        # GitHub branch archives have no fixed hash; what we verify is the layout below.
        files = pooch.retrieve(
            COVID_XRAY_ARCHIVE,
            known_hash=None,
            path=cache_dir() / "downloads",
            processor=pooch.Unzip(extract_dir="covid-xray-archive"),
            progressbar=_has_tqdm(),
        )
        extracted = Path(os.path.commonpath(files))
        while extracted.name not in ("", "/") and not (extracted / "data_two_class").is_dir():
            extracted = extracted.parent
        staging.mkdir()
        shutil.copytree(extracted / "data_two_class", staging / "two")
        shutil.copytree(extracted / "data_four_class", staging / "all")
    elif name == ADULTS:
        _download_adults(staging)
    else:
        import kagglehub

        downloaded = Path(kagglehub.dataset_download(KAGGLE_HANDLE))
        shutil.copytree(downloaded, staging)
    check_layout(name, staging)  # verify before the cache is trusted
    staging.rename(target)
    return target


def _download_adults(staging: Path) -> None:
    """The pinned upstream archive's ``metadata.csv``, and the images of the X-ray rows :func:`load` uses (every task)."""
    import pooch

    files = pooch.retrieve(
        COHEN_ARCHIVE,
        known_hash=None,  # GitHub archives carry no published hash; the layout is checked instead
        path=cache_dir() / "downloads",
        processor=pooch.Unzip(extract_dir=f"{ADULTS}-archive"),
        progressbar=_has_tqdm(),
    )
    extracted = next(Path(f).parent for f in files if Path(f).name == "metadata.csv")
    (staging / "images").mkdir(parents=True)
    shutil.copy2(extracted / "metadata.csv", staging / "metadata.csv")
    table = pd.read_csv(extracted / "metadata.csv", dtype=str, keep_default_na=False)
    for filename in table.loc[_adult_selection(table, covid=True), "filename"]:
        if (extracted / "images" / filename).is_file():
            shutil.copy2(extracted / "images" / filename, staging / "images" / filename)


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def check_layout(name: str, root: Path, tasks: tuple[str, ...] = ("two", "all")) -> None:
    """Raise ``DataNotFoundError`` naming every missing or empty folder of ``name``'s layout.

    For covid-xray only the folders of ``tasks`` are required.
    """
    _check_name(name)
    problems = []
    if name == "covid-xray":
        for task in tasks:
            for split in SPLITS:
                for cls in CLASSES[(name, task)]:
                    folder = root / task / split / cls
                    if not folder.is_dir():
                        problems.append(f"missing folder {folder}")
                    elif not _image_files(folder):
                        others = _other_files(folder)
                        files = f"{len(others)} other file{'s' if len(others) > 1 else ''}"
                        problems.append(f"no images in {folder}" + (f" ({files}, such as {others[0].name}: {not_an_image(others[0])})"
                                                                     if others else ""))
    elif name == ADULTS:
        if not (root / "metadata.csv").is_file():
            problems.append(f"missing file {root / 'metadata.csv'}")
        if not (root / "images").is_dir():
            problems.append(f"missing folder {root / 'images'}")
    else:
        if not (root / CORONAHACK_CSV).is_file():
            problems.append(f"missing file {root / CORONAHACK_CSV}")
        for split in SPLITS:
            if not (root / CORONAHACK_IMAGES / split).is_dir():
                problems.append(f"missing folder {root / CORONAHACK_IMAGES / split}")
    if problems:
        raise DataNotFoundError(
            f"Dataset {name!r} at {root} does not have the expected layout:\n  - "
            + "\n  - ".join(problems)
            + f"\nExpected:\n{LAYOUT[name]}"
        )


def _check_name(name: str) -> None:
    if name not in UPSTREAM:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(UPSTREAM)}")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _other_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that are not images the pipeline reads (hidden files such as ``.DS_Store`` apart)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES and not p.name.startswith("."))


def not_an_image(path: Path) -> str:
    """Why a file in a class folder is left out, in words that say what to do about it.

    >>> not_an_image(Path("x.dcm"))
    'a DICOM file: convert it to PNG first (pydicom reads it, Pillow writes it); the pipeline reads .bmp, .gif, .jpeg, .jpg, .png'
    """
    reads = ", ".join(sorted(IMAGE_SUFFIXES))
    if path.suffix.lower() in (".dcm", ".dicom"):
        return f"a DICOM file: convert it to PNG first (pydicom reads it, Pillow writes it); the pipeline reads {reads}"
    return f"not an image file the pipeline reads ({path.suffix or 'no suffix'}; it reads {reads})"


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
    _check_name(name)
    if task not in TASKS[name]:
        raise ValueError(f"task must be one of {TASKS[name]} for {name}, got {task!r}")
    root = Path(root) if root else locate(name, data_dir)
    check_layout(name, root, tasks=(task,))
    rows = {"covid-xray": _covid_xray_rows, "coronahack": _coronahack_rows, ADULTS: _adult_rows}[name]
    frame, absent = rows(root, task)
    if name != ADULTS:
        frame = join_collection(frame, collection_root(root, data_dir))
    classes = CLASSES[(name, task)]
    frame["label"] = frame["class_name"].map(classes.index).astype(int)
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
    return XrayDataset(name, task, classes, root, frame, skipped)


def sample_per_class(frame: pd.DataFrame, n: int, *, seed: int) -> pd.DataFrame:
    """At most ``n`` random rows per split and class (all of a smaller class), the same for the same ``seed``.

    Used by :func:`load` (the ``smoke`` profile) and by chapter 00's sample grids.
    """
    shuffled = frame.sample(frac=1.0, random_state=seed)
    return shuffled.groupby(["split", "class_name"], sort=False).head(n).sort_values(["split", "class_name"])


def _left_out(files: list[str], reason: str) -> pd.DataFrame:
    return pd.DataFrame({"file": files, "reason": reason}, columns=["file", "reason"])


def _covid_xray_rows(root: Path, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    for split in SPLITS:
        extra = sorted(p.name for p in (root / task / split).iterdir() if p.is_dir() and p.name not in CLASSES[("covid-xray", task)])
        if extra:
            warnings.warn(f"{root / task / split} holds folder(s) {extra} that are no class of task {task!r} "
                          f"({CLASSES[('covid-xray', task)]}): their images are not used", stacklevel=3)
    folders = [(split, cls, root / task / split / cls) for split in SPLITS for cls in CLASSES[("covid-xray", task)]]
    rows = [{"path": str(p), "file": str(p.relative_to(root)), "split": split, "class_name": cls}
            for split, cls, folder in folders for p in _image_files(folder)]
    left_out = pd.DataFrame([{"file": str(p.relative_to(root)), "reason": not_an_image(p)}
                             for _, _, folder in folders for p in _other_files(folder)], columns=["file", "reason"])
    for reason, files in left_out.groupby("reason", sort=False)["file"]:  # one warning per kind of file, not one per file
        warnings.warn(f"{len(files)} file{'s' if len(files) > 1 else ''} in the class folders of {root / task} left out, such as "
                      f"{files.iloc[0]}: {reason}", stacklevel=3)
    return pd.DataFrame(rows), left_out


def _coronahack_class(row: pd.Series, task: str) -> str | None:
    if row["Label"] == "Normal":
        return "normal"
    if task == "two":
        return "pneumonia"
    if row["Label_2_Virus_category"] == "COVID-19":
        return "covid"
    return {"bacteria": "pneumonia_bac", "Virus": "pneumonia_vir"}.get(row["Label_1_Virus_category"])


#: The labels CoronaHack's CSV uses (its own spelling): any other, or none, leaves the row out with its line named.
CORONAHACK_LABELS = ("Normal", "Pnemonia")


def read_coronahack_csv(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CoronaHack's metadata rows, and the rows left out (``file``, ``reason``), each named with its line, with a warning.

    A row with more or fewer fields than the header, or with a label that is
    empty or not one of :data:`CORONAHACK_LABELS`, is left out: one bad line
    must neither stop the chapter nor be read as something it is not (an
    empty label is not "pneumonia").
    """
    expected = {"X_ray_image_name", "Label", "Dataset_type", "Label_1_Virus_category", "Label_2_Virus_category"}
    with open(path, newline="", encoding="utf-8", errors="replace") as file:
        lines = list(csv.reader(file))
    if not lines:
        raise ValueError(f"{path} is empty")
    header, rows, left_out = lines[0], [], []
    if missing := expected - set(header):
        raise ValueError(f"{path} lacks the columns {sorted(missing)}")
    for number, fields in enumerate(lines[1:], 2):
        if not fields:
            continue
        if len(fields) != len(header):
            reason = f"line {number} of {path.name} has {len(fields)} fields, the header {len(header)}"
        else:
            row = dict(zip(header, fields))
            if row["Label"] in CORONAHACK_LABELS:
                rows.append(row)
                continue
            reason = f"line {number} of {path.name} has the label {row['Label']!r}, not one of {', '.join(CORONAHACK_LABELS)}"
        name = fields[header.index("X_ray_image_name")] if len(fields) > header.index("X_ray_image_name") else f"line {number}"
        left_out.append((name, reason))
    if left_out:
        warnings.warn(f"coronahack: {len(left_out)} rows of {path.name} are malformed and left out: "
                      + "; ".join(reason for _, reason in left_out[:5]) + (" ..." if len(left_out) > 5 else ""), stacklevel=3)
    table = pd.DataFrame(rows, columns=header).drop(columns=[c for c in header if c == "" or c.startswith("Unnamed")])
    return table, pd.DataFrame(left_out, columns=["file", "reason"])


def _coronahack_rows(root: Path, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    table, malformed = read_coronahack_csv(root / CORONAHACK_CSV)
    table["class_name"] = table.apply(_coronahack_class, axis=1, task=task) if len(table) else pd.Series(dtype=object)
    unlabeled = table[table["class_name"].isna()]
    if len(unlabeled):
        warnings.warn(
            f"coronahack: {len(unlabeled)} CSV rows fit no class of task {task!r} and are left out "
            f"(Label_1_Virus_category values: {sorted(set(unlabeled['Label_1_Virus_category']))})",
            stacklevel=3,
        )
    table = table.dropna(subset=["class_name"])
    table["split"] = table["Dataset_type"].str.lower()
    table["file"] = [str(CORONAHACK_IMAGES / s / f) for s, f in zip(table["split"], table["X_ray_image_name"])]
    table["path"] = [str(root / f) for f in table["file"]]
    # The most specific label: "COVID-19" (Label_2), else "bacteria" or "Virus" (Label_1), else "Normal".
    virus, cause = table["Label_2_Virus_category"], table["Label_1_Virus_category"]
    table["finding"] = virus.where(virus != "", cause.where(cause != "", table["Label"]))
    exists, absent = _existing(table, "coronahack", CORONAHACK_CSV)
    absent = pd.concat([malformed, absent], ignore_index=True) if len(malformed) else absent
    return table.loc[exists, ["path", "file", "split", "class_name", "finding"]].reset_index(drop=True), absent


def _existing(table: pd.DataFrame, name: str, csv: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Which rows' ``path`` is a file, and the others left out, named in a warning (a download cut short, a file deleted)."""
    exists = np.array([Path(p).is_file() for p in table["path"]], dtype=bool)
    absent = table.loc[~exists, "file"].tolist()
    if absent:
        warnings.warn(f"{name}: {len(absent)} rows of {csv} name files that are absent and are left out: {_listing(absent)}",
                      stacklevel=4)
    return exists, _left_out(absent, f"named in {csv}, but no such file")


def _listing(files: list[str]) -> str:
    """The first ten of ``files``, for a warning."""
    return ", ".join(files[:10]) + (" ..." if len(files) > 10 else "")


def _adult_selection(table: pd.DataFrame, *, covid: bool = False) -> pd.Series:
    """The rows of the collection's ``metadata.csv`` this book uses: frontal X-rays without COVID-19, or (``covid``) every X-ray.

    Findings are flat (``SARS``) in early versions of the metadata and paths
    (``Pneumonia/Viral/SARS``) in later ones; either way a row with no finding
    yet (``todo``, ``Unknown``) is left out, and so is, without ``covid``, a row
    naming COVID-19 or a lateral view.
    """
    finding = table["finding"].astype(str)
    chosen = table["view"].isin((*FRONTAL_VIEWS, LATERAL) if covid else FRONTAL_VIEWS) & ~finding.isin(["todo", "Unknown", ""])
    if not covid:
        chosen &= ~finding.str.contains("COVID-19")
    if "modality" in table:
        chosen &= table["modality"] == "X-ray"
    return chosen


def _metadata_table(root: Path) -> pd.DataFrame:
    table = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    if missing := COHEN_COLUMNS - set(table.columns):
        raise ValueError(f"{root / 'metadata.csv'} lacks the columns {sorted(missing)}")
    return table


def _described(table: pd.DataFrame) -> pd.DataFrame:
    """What the collection's metadata says of each selected row, in this book's columns."""
    finding = table["finding"].str.split("/").str[-1]
    return pd.DataFrame({
        "patient_id": (ADULTS + "/" + table["patientid"]).to_numpy(),
        "view": np.where(table["view"] == LATERAL, "lateral", "frontal"),
        "projection": table["view"].to_numpy(),
        "finding": finding.to_numpy(),
        "age": pd.to_numeric(table["age"], errors="coerce").to_numpy(),
        "sex": table["sex"].replace("", None).to_numpy(),
    })


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


def join_collection(frame: pd.DataFrame, root: Path | None) -> pd.DataFrame:
    """``frame`` with the collection's patient, view, projection, finding, age and sex for each image its metadata names.

    Images are matched by file stem: covid-xray and CoronaHack keep the
    collection's file names for its images (as ``.jpeg`` where it had ``.png``).
    Rows it does not name (the children's images), and every row when ``root``
    is ``None``, keep empty values; ``in_collection`` says which were matched.
    """
    frame = frame.copy()
    for column in ("patient_id", "view", "projection", "finding", "age", "sex"):
        if column not in frame:
            frame[column] = np.nan if column == "age" else None
    frame["in_collection"] = False
    if root is None:
        return frame
    table = _metadata_table(root)
    table = table[_adult_selection(table, covid=True)].reset_index(drop=True)
    described = _described(table).set_axis(table["filename"].map(lambda f: Path(f).stem)).groupby(level=0).head(1)
    stems = frame["file"].map(lambda f: Path(f).stem)
    hit = stems.isin(described.index).to_numpy()
    for column in described.columns:
        frame[column] = frame[column].astype(object) if column != "age" else frame[column].astype(float)
        frame.loc[hit, column] = described.loc[stems[hit], column].to_numpy()
    frame["in_collection"] = hit
    return frame


def _adult_rows(root: Path, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per image of a selected metadata row; absent images and images no row names are left out, named."""
    table = _metadata_table(root)
    named = set(table["filename"])
    covid = task == "covid"
    table = table[_adult_selection(table, covid=covid)].drop_duplicates("filename").reset_index(drop=True)
    frame = _described(table)
    if covid:
        classes = np.where(frame["finding"].str.contains("COVID-19"), "covid", "other")
    else:
        classes = np.where(frame["finding"] == "No Finding", "no_finding", "pneumonia")
    frame.insert(0, "class_name", classes)
    frame.insert(0, "split", "test")  # nothing of this dataset is for training
    frame.insert(0, "file", [str(Path("images", f)) for f in table["filename"]])
    frame.insert(0, "path", [str(root / f) for f in frame["file"]])
    exists, absent = _existing(frame, ADULTS, "metadata.csv")
    unnamed = sorted(str(Path("images", p.name)) for p in _image_files(root / "images") if p.name not in named)
    if unnamed:
        warnings.warn(f"{ADULTS}: {len(unnamed)} image(s) in images/ that no row of metadata.csv names are left out "
                      f"(no label): {_listing(unnamed)}", stacklevel=3)
    left_out = pd.concat([absent, _left_out(unnamed, "no row of metadata.csv names it")])
    return frame[exists].reset_index(drop=True), left_out.reset_index(drop=True)


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
