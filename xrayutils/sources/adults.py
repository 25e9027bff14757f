"""The adults without COVID-19 of the COVID-19 image data collection (Cohen et al.), read from its metadata (chapters 00, 04).

The collection is also where covid-xray's and CoronaHack's COVID-19 images come
from: :func:`join_collection` gives their images the patient, view, age and sex
its metadata records.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from xrayutils.sources.base import Source, existing, image_files, left_out, listing, retrieve

#: The dataset's name, and its folder's.
NAME = "covid-chestxray-dataset"
#: The upstream commit the adults' download is pinned to, and its archive.
COMMIT = "6a4242344473ccb5ed0d2148d8c7bfb1691e4ed8"
ARCHIVE = f"https://github.com/ieee8023/covid-chestxray-dataset/archive/{COMMIT}.zip"
#: The columns of ``metadata.csv`` this book reads.
COLUMNS = {"patientid", "age", "sex", "finding", "view", "filename"}
#: The ``view`` values of frontal images in the collection's metadata (``L`` is lateral; CT rows have others).
FRONTAL_VIEWS = ("PA", "AP", "AP Supine", "AP Erect")
#: The ``view`` value of a lateral image in the collection's metadata.
LATERAL = "L"


@dataclass(frozen=True, repr=False)
class Collection(Source):
    """``metadata.csv`` names each image, its finding, view, patient, age and sex; the images sit in ``images/``."""

    def problems(self, root: Path, tasks: tuple[str, ...]) -> list[str]:
        return ([] if (root / "metadata.csv").is_file() else [f"missing file {root / 'metadata.csv'}"]) + (
            [] if (root / "images").is_dir() else [f"missing folder {root / 'images'}"])

    def rows(self, root: Path, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """One row per image of a selected metadata row; absent images and images no row names are left out, named."""
        table = metadata(root)
        named = set(table["filename"])
        covid = task == "covid"
        table = table[selection(table, covid=covid)].drop_duplicates("filename").reset_index(drop=True)
        frame = described(table)
        if covid:
            classes = np.where(frame["finding"].str.contains("COVID-19"), "covid", "other")
        else:
            classes = np.where(frame["finding"] == "No Finding", "no_finding", "pneumonia")
        frame.insert(0, "class_name", classes)
        frame.insert(0, "split", "test")  # nothing of this dataset is for training
        frame.insert(0, "file", [str(Path("images", f)) for f in table["filename"]])
        frame.insert(0, "path", [str(root / f) for f in frame["file"]])
        exists, absent = existing(frame, NAME, "metadata.csv")
        unnamed = sorted(str(Path("images", p.name)) for p in image_files(root / "images") if p.name not in named)
        if unnamed:
            warnings.warn(f"{NAME}: {len(unnamed)} image(s) in images/ that no row of metadata.csv names are left out "
                          f"(no label): {listing(unnamed)}", stacklevel=3)
        skipped = pd.concat([absent, left_out(unnamed, "no row of metadata.csv names it")])
        return frame[exists].reset_index(drop=True), skipped.reset_index(drop=True)

    def download(self, staging: Path) -> None:
        """The pinned upstream archive's ``metadata.csv``, and the images of the X-ray rows :meth:`rows` uses (every task)."""
        files = retrieve(ARCHIVE, f"{NAME}-archive")
        extracted = next(Path(f).parent for f in files if Path(f).name == "metadata.csv")
        (staging / "images").mkdir(parents=True)
        shutil.copy2(extracted / "metadata.csv", staging / "metadata.csv")
        table = pd.read_csv(extracted / "metadata.csv", dtype=str, keep_default_na=False)
        for filename in table.loc[selection(table, covid=True), "filename"]:
            if (extracted / "images" / filename).is_file():
                shutil.copy2(extracted / "images" / filename, staging / "images" / filename)


def selection(table: pd.DataFrame, *, covid: bool = False) -> pd.Series:
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


def metadata(root: Path) -> pd.DataFrame:
    """The collection's ``metadata.csv``, every value a string; an error naming the columns it lacks."""
    table = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    if missing := COLUMNS - set(table.columns):
        raise ValueError(f"{root / 'metadata.csv'} lacks the columns {sorted(missing)}")
    return table


def described(table: pd.DataFrame) -> pd.DataFrame:
    """What the collection's metadata says of each selected row, in this book's columns."""
    finding = table["finding"].str.split("/").str[-1]
    return pd.DataFrame({
        "patient_id": (NAME + "/" + table["patientid"]).to_numpy(),
        "view": np.where(table["view"] == LATERAL, "lateral", "frontal"),
        "projection": table["view"].to_numpy(),
        "finding": finding.to_numpy(),
        "age": pd.to_numeric(table["age"], errors="coerce").to_numpy(),
        "sex": table["sex"].replace("", None).to_numpy(),
    })


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
    table = metadata(root)
    table = table[selection(table, covid=True)].reset_index(drop=True)
    by_stem = described(table).set_axis(table["filename"].map(lambda f: Path(f).stem)).groupby(level=0).head(1)
    stems = frame["file"].map(lambda f: Path(f).stem)
    hit = stems.isin(by_stem.index).to_numpy()
    for column in by_stem.columns:
        frame[column] = frame[column].astype(object) if column != "age" else frame[column].astype(float)
        frame.loc[hit, column] = by_stem.loc[stems[hit], column].to_numpy()
    frame["in_collection"] = hit
    return frame


#: The record :mod:`xrayutils.datasets` assembles.
SOURCE = Collection(
    name=NAME,
    classes={"two": ["no_finding", "pneumonia"], "all": ["no_finding", "pneumonia"],
             "covid": ["covid", "other"]},  # covid: COVID-19 against every other finding of the collection
    upstream=f"https://github.com/ieee8023/covid-chestxray-dataset (commit {COMMIT}; its frontal X-rays without COVID-19)",
    layout=f"{NAME}/metadata.csv (the upstream columns, at least patientid, age, sex, finding, view, filename)\n"
           f"{NAME}/images/<the file each metadata.csv row names>",
    about=(
        "Frontal chest X-rays of adults without COVID-19 (no finding, or pneumonias of other causes) from the COVID-19 "
        "image data collection of Cohen et al., the source of the COVID-19 images of both other datasets: many cut "
        "from figures in journal articles, each image under its own licence (metadata column license)."
    ),
    fetch="covid-chestxray-dataset (GitHub, downloaded by pooch)",
    joins_collection=False,
)
