"""Looking at the data before trusting it: image properties, intensities, duplicates.

Used by chapter 00 (data exploration) and, through the pairs file chapter 00
writes, by chapter 04 (leakage).  Functions take file paths and return plain
arrays or data frames.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from xrayutils import images


def image_properties(paths: Sequence[str]) -> pd.DataFrame:
    """Width, height, PIL mode, format and file size of each image (read lazily, not decoded)."""
    rows = []
    for path in paths:
        try:
            with Image.open(path) as image:
                rows.append((image.width, image.height, image.mode, image.format))
        except OSError:
            rows.append((np.nan, np.nan, "unreadable", None))
    frame = pd.DataFrame(rows, columns=["width", "height", "mode", "format"])
    frame["bytes"] = [os.path.getsize(p) for p in paths]
    return frame


def _gray_image(path: str) -> Image.Image:
    """The image's luminance as an 8-bit Pillow image, read by :func:`xrayutils.images.read`.

    Histograms and hashes are taken on 256 grey levels, so that an 8-bit file
    gives exactly its own pixels and a 16-bit one is scaled as the model sees it.
    """
    return Image.fromarray(images.to_uint8(images.read(path, gray=True)))


def gray_pixels(path: str, size: int) -> np.ndarray:
    """A ``(size, size)`` float array in ``[0, 1]`` of the image's luminance."""
    gray = _gray_image(path).resize((size, size), Image.BILINEAR)
    return np.asarray(gray, dtype=np.float64) / 255.0


def intensity_histograms(paths: Sequence[str], *, bins: int = 64, size: int = 128) -> np.ndarray:
    """Normalised grey-level histogram of each image, shape ``(n_images, bins)``.

    Each row sums to 1, so images of different sizes weigh the same; averaging
    rows per class shows differences in exposure or processing between sources.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = [np.histogram(gray_pixels(p, size), bins=edges)[0] for p in paths]
    hist = np.asarray(rows, dtype=np.float64)
    return hist / hist.sum(axis=1, keepdims=True)


def mean_grey_levels(histograms: np.ndarray, groups: Sequence[str]) -> pd.Series:
    """Each group's mean grey level (0 black, 255 white) from :func:`intensity_histograms`' rows, darkest first.

    >>> mean_grey_levels(np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]), ["a", "b", "b"]).round().tolist()
    [64.0, 159.0]
    """
    centres = (np.arange(histograms.shape[1]) + 0.5) / histograms.shape[1] * 255
    return pd.Series(histograms @ centres).groupby(list(groups)).mean().sort_values()


def perceptual_hashes(paths: Sequence[str], *, hash_size: int = 8) -> np.ndarray:
    """DCT perceptual hash (``imagehash.phash``) of each image, shape ``(n, hash_size**2)`` of bool.

    The hash is taken on a square thumbnail, so the same radiograph stretched to
    another aspect ratio or re-encoded keeps (nearly) the same hash.
    """
    hashes = [imagehash.phash(_gray_image(path), hash_size=hash_size).hash.ravel() for path in paths]
    return np.asarray(hashes, dtype=bool).reshape(len(hashes), hash_size * hash_size)


def hamming_distances(hashes: np.ndarray, others: np.ndarray | None = None) -> np.ndarray:
    """Hamming distances (bits that differ) from each of ``hashes`` to each of ``others`` (default: ``hashes``), shape ``(n, m)``."""
    a = hashes.astype(np.int32)
    b = a if others is None else others.astype(np.int32)
    return a @ (1 - b).T + (1 - a) @ b.T


def near_duplicate_pairs(hashes: np.ndarray, *, max_distance: int, chunk: int = 2048) -> np.ndarray:
    """Pairs ``(i, j, distance)`` with ``i < j`` and distance at most ``max_distance``.

    Returns an ``(n_pairs, 3)`` int array sorted by distance, then ``i``, ``j``.
    Multi-index hashing (Norouzi et al., 2012): the bits are cut into
    ``max_distance + 1`` blocks, and two hashes within ``max_distance`` agree
    exactly on at least one of them (pigeonhole), so only images that share a
    block's value are compared, ``chunk`` rows at a time.  No ``n x n`` matrix
    is made: 20,000 images need megabytes, not the 5.6 GB a full distance
    matrix took, and a collection of 100,000 images stays within reach.

    >>> h = np.array([[0, 0, 1, 1], [0, 0, 1, 0], [1, 1, 0, 0]], dtype=bool)
    >>> near_duplicate_pairs(h, max_distance=1).tolist()
    [[0, 1, 1]]
    """
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    hashes = np.asarray(hashes, dtype=bool)
    found = [np.zeros((0, 3), dtype=np.int64)]
    for columns in np.array_split(np.arange(hashes.shape[1]), min(hashes.shape[1], max_distance + 1)):
        keys = hashes[:, columns].astype(np.uint64) @ (np.uint64(1) << np.arange(len(columns), dtype=np.uint64))
        order = np.argsort(keys, kind="stable")
        starts = np.flatnonzero(np.r_[True, keys[order][1:] != keys[order][:-1], True])
        for first, last in zip(starts[:-1], starts[1:]):
            if last - first > 1:
                found.append(_close_pairs(hashes, np.sort(order[first:last]), max_distance, chunk))
    pairs = np.unique(np.concatenate(found), axis=0)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0], pairs[:, 2]))] if len(pairs) else pairs.reshape(0, 3)


def _close_pairs(hashes: np.ndarray, members: np.ndarray, max_distance: int, chunk: int) -> np.ndarray:
    """The pairs of ``members`` (sorted indices) within ``max_distance``, compared ``chunk`` rows at a time."""
    bits = hashes[members]
    out = []
    for start in range(0, len(members), chunk):
        distances = hamming_distances(bits[start:start + chunk], bits)
        rows, cols = np.nonzero(distances <= max_distance)
        keep = rows + start < cols
        rows, cols = rows[keep], cols[keep]
        out.append(np.stack([members[rows + start], members[cols], distances[rows, cols]], axis=1))
    return np.concatenate(out).astype(np.int64)


#: The scope of a pair of two datasets' copies of one image (same file stem): one image, not a leak.
SAME_IMAGE = "same image in two datasets"


def duplicate_report(metadata: pd.DataFrame, hashes: np.ndarray, *, max_distance: int) -> pd.DataFrame:
    """Near-duplicate pairs with what makes each one matter.

    Parameters
    ----------
    metadata : DataFrame
        One row per hashed image, with columns ``dataset``, ``file``, ``path``,
        ``split`` and ``class_name``.
    hashes : array of shape (n, bits)
        From :func:`perceptual_hashes`, aligned with ``metadata``.

    Returns
    -------
    DataFrame
        One row per pair: both sides' dataset, file, split and class, the
        ``distance``, ``identical`` (distance 0), ``scope`` (e.g. ``"train-test"``,
        a leak when both sides are in one dataset; :data:`SAME_IMAGE` when two
        datasets name one image of the collection by the same file stem),
        ``label_conflict`` and, where ``metadata`` has ``patient_id``,
        ``same_patient``: ``"yes"``, ``"no"`` (two different patients, named by
        their metadata or file names) or ``"unknown"`` (a side names no patient).
    """
    if len(metadata) != len(hashes):
        raise ValueError(f"{len(metadata)} metadata rows but {len(hashes)} hashes")
    pairs = near_duplicate_pairs(hashes, max_distance=max_distance)
    meta = metadata.reset_index(drop=True)
    cols = ["dataset", "file", "path", "split", "class_name", *(["patient_id"] if "patient_id" in meta else [])]
    a = meta.loc[pairs[:, 0], cols].reset_index(drop=True).add_suffix("_a")
    b = meta.loc[pairs[:, 1], cols].reset_index(drop=True).add_suffix("_b")
    report = pd.concat([a, b], axis=1)
    report["distance"] = pairs[:, 2]
    report["identical"] = report["distance"] == 0
    report["scope"] = [
        SAME_IMAGE if da != db and Path(fa).stem == Path(fb).stem
        else ("" if da == db else "cross-dataset ") + "-".join(sorted({sa, sb}, key=["train", "test"].index))
        for da, db, sa, sb, fa, fb in zip(report["dataset_a"], report["dataset_b"], report["split_a"], report["split_b"],
                                          report["file_a"], report["file_b"])
    ]
    report["label_conflict"] = report["class_name_a"] != report["class_name_b"]
    if "patient_id" in meta:
        report["same_patient"] = [same_patient(fa, pa, fb, pb) for fa, pa, fb, pb in
                                  zip(report["file_a"], report["patient_id_a"], report["file_b"], report["patient_id_b"])]
    return report


def same_patient(file_a: str, patient_a: str, file_b: str, patient_b: str) -> str:
    """Whether two images are of one patient: ``"yes"``, ``"no"``, or ``"unknown"`` when a side names no patient.

    A patient id equal to the file's stem means neither metadata nor the file
    name named one (:func:`xrayutils.datasets.patient_id`).

    >>> same_patient("person1_virus_6.jpeg", "person1", "person1_virus_8.jpeg", "person1")
    'yes'
    >>> same_patient("person1_virus_6.jpeg", "person1", "person7_bacteria_2.jpeg", "person7")
    'no'
    >>> same_patient("scan.png", "scan", "person7_bacteria_2.jpeg", "person7")
    'unknown'
    """
    if patient_a == patient_b:
        return "yes"
    named = patient_a != Path(file_a).stem and patient_b != Path(file_b).stem
    return "no" if named else "unknown"


def summarise_duplicates(report: pd.DataFrame) -> pd.DataFrame:
    """Pairs counted by scope: how many, how many identical, how many with two labels."""
    if report.empty:
        return pd.DataFrame(columns=["pairs", "identical", "label_conflicts"])
    return report.groupby("scope").agg(
        pairs=("distance", "size"), identical=("identical", "sum"), label_conflicts=("label_conflict", "sum")
    )


def summarise_properties(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, split and class: image count, median and range of sizes, and the modes seen.

    ``table`` is metadata joined with :func:`image_properties`.  Sizes are whole
    pixels (a median of an even count is rounded).
    """
    sides = table[["width", "height"]]
    table = table.assign(short_side=sides.min(axis=1), long_side=sides.max(axis=1))
    return table.groupby(["dataset", "split", "class_name"], sort=False).agg(
        images=("file", "size"),
        median_width=("width", lambda w: round(w.median())),
        median_height=("height", lambda h: round(h.median())),
        smallest_side=("short_side", "min"),
        largest_side=("long_side", "max"),
        modes=("mode", lambda m: ", ".join(f"{k} ({v})" for k, v in m.value_counts().items())),
        formats=("format", lambda f: ", ".join(sorted(set(map(str, f))))),
    )


def imbalance_ratio(totals: pd.DataFrame) -> pd.Series:
    """Largest over smallest non-empty class count, per split (1.0 means balanced).

    >>> imbalance_ratio(pd.DataFrame({"a": [10, 4], "b": [5, 4]}, index=["train", "test"])).tolist()
    [2.0, 1.0]
    """
    counts = totals.where(totals > 0)
    return (counts.max(axis=1) / counts.min(axis=1)).rename("imbalance")


def file_digests(paths: Sequence[str]) -> list[str]:
    """SHA-256 of each file's bytes: byte-identical files share a digest."""
    return [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths]


def near_duplicate_files(pairs: pd.DataFrame, *, dataset: str, split: str, partners: set[tuple[str, str]]) -> set[str]:
    """Names of ``dataset``'s ``split`` images with a near-duplicate in any ``(dataset, split)`` of ``partners``.

    ``pairs`` is chapter 00's ``near_duplicates.csv``.  Chapter 04 asks it which test
    images were also seen in training (a leak) or count twice in the test split, and
    which external images a model was trained on.  Files are matched by name, so
    the ``two/`` and ``all/`` copies of one covid-xray image agree.
    """
    found = set()
    for a, b in (("a", "b"), ("b", "a")):
        mine = (pairs[f"dataset_{a}"] == dataset) & (pairs[f"split_{a}"] == split)
        theirs = pd.Series(list(zip(pairs[f"dataset_{b}"], pairs[f"split_{b}"])), index=pairs.index).isin(partners)
        found.update(pairs.loc[mine & theirs, f"file_{a}"].map(lambda f: Path(f).name))
    return found


def covid_images(metadata: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per split: how many images, how many of them COVID-19 (``finding``), and under which class those are filed, beside its size.

    CoronaHack files its COVID-19 images (adults', from the collection of Cohen
    et al.) under "pneumonia", in TRAIN only: a model can learn "adult" as one of
    the looks of pneumonia, and its TEST set (children only) never asks.
    """
    covid = metadata["finding"].astype(str).str.contains("COVID-19")
    counted = {}
    for split, rows in metadata.groupby("split"):
        filed = rows.loc[covid[rows.index], "class_name"].value_counts()
        counted[split] = {"images": len(rows), "covid": int(filed.sum()),
                          "filed as": {cls: {"covid": int(n), "of": int((rows["class_name"] == cls).sum())} for cls, n in filed.items()}}
    return counted


def who_they_are(groups: dict[str, pd.DataFrame], known: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """One row per group of images: images, patients, ages (youngest, median, oldest; unknown) and sex, from the metadata.

    A group without any age per image (the children) shows the ``known`` range
    its source describes instead, named for what it is.
    """
    rows = {}
    for name, frame in groups.items():
        ages = frame["age"] if "age" in frame else pd.Series(np.nan, index=frame.index)
        sex = frame["sex"].fillna("unknown") if "sex" in frame else pd.Series("unknown", index=frame.index)
        known_range = next((f"{low:g}-{high:g} ({source})" for source, (low, high) in known.items() if ages.isna().all()), None)
        rows[name] = {
            "images": len(frame), "patients": frame["patient_id"].nunique(),
            "age, years": known_range or f"{ages.min():.0f}-{ages.max():.0f}, median {ages.median():.0f}",
            "no age": int(ages.isna().sum()),
            **{label: int((sex == code).sum()) for code, label in (("F", "female"), ("M", "male"), ("unknown", "sex unknown"))},
        }
    return pd.DataFrame(rows).T


def patients_in_both_splits(metadata: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and class: test images, and how many are of a patient with an image in the training split.

    Patients are :func:`xrayutils.datasets.load`'s ``patient_id``: the
    collection's patient where its metadata names the image, else what the file
    name tells.  A hash audit cannot see these: two different images of one
    patient.
    """
    rows = []
    for (dataset, cls), test in metadata[metadata["split"] == "test"].groupby(["dataset", "class_name"]):
        seen = set(metadata.loc[(metadata["dataset"] == dataset) & (metadata["split"] == "train"), "patient_id"])
        rows.append({"dataset": dataset, "class": cls, "test images": len(test),
                     "of a patient seen in training": int(test["patient_id"].isin(seen).sum())})
    return pd.DataFrame(rows, columns=["dataset", "class", "test images", "of a patient seen in training"])


def age_summary(ages: pd.Series, known: dict[str, tuple[float, float]]) -> dict[str, float | int]:
    """Youngest, median and oldest of ``ages`` (years), how many are unknown, and how many are as young as a ``known`` range allows.

    Chapter 00 sets the adults' ages beside the children's ranges (:data:`xrayutils.datasets.KNOWN_AGES`).
    """
    oldest_known = max(high for _, high in known.values())
    return {"min": float(ages.min()), "median": float(ages.median()), "max": float(ages.max()),
            "unknown": int(ages.isna().sum()), "as_young": int((ages <= oldest_known).sum())}
