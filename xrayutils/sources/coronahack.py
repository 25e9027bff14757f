"""CoronaHack: the Kaggle collection the CoronaHack study used, read from its metadata CSV (chapter 03)."""

from __future__ import annotations

import csv
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from xrayutils.sources.base import SPLITS, Source, existing

#: The metadata file naming each image, its split and labels.
CSV = "Chest_xray_Corona_Metadata.csv"
#: The folder holding one folder of images per split.
IMAGES = Path("Coronahack-Chest-XRay-Dataset", "Coronahack-Chest-XRay-Dataset")
#: The dataset on Kaggle (kagglehub downloads it with the reader's credentials).
KAGGLE_HANDLE = "praveengovi/coronahack-chest-xraydataset"
#: The labels CoronaHack's CSV uses (its own spelling): any other, or none, leaves the row out with its line named.
LABELS = ("Normal", "Pnemonia")


@dataclass(frozen=True, repr=False)
class CoronaHack(Source):
    """The CSV names each image's split and labels; the images sit in one folder per split."""

    def problems(self, root: Path, tasks: tuple[str, ...]) -> list[str]:
        found = [] if (root / CSV).is_file() else [f"missing file {root / CSV}"]
        return found + [f"missing folder {root / IMAGES / split}" for split in SPLITS if not (root / IMAGES / split).is_dir()]

    def rows(self, root: Path, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        table, malformed = read_csv(root / CSV)
        table["class_name"] = table.apply(_class_of, axis=1, task=task) if len(table) else pd.Series(dtype=object)
        unlabeled = table[table["class_name"].isna()]
        if len(unlabeled):
            warnings.warn(
                f"coronahack: {len(unlabeled)} CSV rows fit no class of task {task!r} and are left out "
                f"(Label_1_Virus_category values: {sorted(set(unlabeled['Label_1_Virus_category']))})",
                stacklevel=3,
            )
        table = table.dropna(subset=["class_name"])
        table["split"] = table["Dataset_type"].str.lower()
        table["file"] = [str(IMAGES / s / f) for s, f in zip(table["split"], table["X_ray_image_name"])]
        table["path"] = [str(root / f) for f in table["file"]]
        # The most specific label: "COVID-19" (Label_2), else "bacteria" or "Virus" (Label_1), else "Normal".
        virus, cause = table["Label_2_Virus_category"], table["Label_1_Virus_category"]
        table["finding"] = virus.where(virus != "", cause.where(cause != "", table["Label"]))
        exists, absent = existing(table, "coronahack", CSV)
        absent = pd.concat([malformed, absent], ignore_index=True) if len(malformed) else absent
        return table.loc[exists, ["path", "file", "split", "class_name", "finding"]].reset_index(drop=True), absent

    def download(self, staging: Path) -> None:
        import kagglehub

        shutil.copytree(Path(kagglehub.dataset_download(KAGGLE_HANDLE)), staging)


def _class_of(row: pd.Series, task: str) -> str | None:
    if row["Label"] == "Normal":
        return "normal"
    if task == "two":
        return "pneumonia"
    if row["Label_2_Virus_category"] == "COVID-19":
        return "covid"
    return {"bacteria": "pneumonia_bac", "Virus": "pneumonia_vir"}.get(row["Label_1_Virus_category"])


def read_csv(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CoronaHack's metadata rows, and the rows left out (``file``, ``reason``), each named with its line, with a warning.

    A row with more or fewer fields than the header, or with a label that is
    empty or not one of :data:`LABELS`, is left out: one bad line
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
            if row["Label"] in LABELS:
                rows.append(row)
                continue
            reason = f"line {number} of {path.name} has the label {row['Label']!r}, not one of {', '.join(LABELS)}"
        name = fields[header.index("X_ray_image_name")] if len(fields) > header.index("X_ray_image_name") else f"line {number}"
        left_out.append((name, reason))
    if left_out:
        warnings.warn(f"coronahack: {len(left_out)} rows of {path.name} are malformed and left out: "
                      + "; ".join(reason for _, reason in left_out[:5]) + (" ..." if len(left_out) > 5 else ""), stacklevel=3)
    table = pd.DataFrame(rows, columns=header).drop(columns=[c for c in header if c == "" or c.startswith("Unnamed")])
    return table, pd.DataFrame(left_out, columns=["file", "reason"])


#: The record :mod:`xrayutils.datasets` assembles.
SOURCE = CoronaHack(
    name="coronahack",
    classes={"two": ["normal", "pneumonia"], "all": ["covid", "normal", "pneumonia_bac", "pneumonia_vir"]},
    upstream="https://www.kaggle.com/datasets/praveengovi/coronahack-chest-xraydataset",
    layout=f"coronahack/{CSV}\ncoronahack/{IMAGES.as_posix()}/{{train,test}}/<images>",
    about=(
        "The Kaggle CoronaHack collection (praveengovi; redistributes the images below, no licence of its own): "
        "normal and pneumonia images from the paediatric data of Kermany et al. (2018, CC BY 4.0), plus a few "
        "dozen COVID-19 images from the Cohen collection in TRAIN only. The TEST images of the sample were "
        "stretched to 224x224 RGB before they reached this book; TRAIN images keep their aspect ratio."
    ),
    fetch="coronahack (Kaggle: downloading it needs Kaggle credentials, ~/.kaggle/kaggle.json)",
    folders=("coronahack", "coronahack-mini"),
    # the Kaggle dataset's Chest_xray_Corona_Metadata.csv: 5,286 TRAIN and 624 TEST rows
    full_size={"two": {"train": 5286, "test": 624}, "all": {"train": 5286, "test": 624}},
)
