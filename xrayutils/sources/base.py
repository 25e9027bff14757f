"""What every dataset record is (:class:`Source`), the class-folder layout (:class:`ClassFolders`), and the helpers they share."""

from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

#: The splits every dataset has (the adults only ``test``).
SPLITS = ("train", "test")
#: Suffixes of the files a dataset folder contributes: formats the ``tf.data`` pipeline decodes.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}


@dataclass(frozen=True, repr=False)
class Source:
    """One dataset: what it holds and where it comes from; subclasses say how its files are laid out and read.

    ``classes`` maps each task to its class names, in the order every chapter
    uses (a label indexes this list).  ``folders`` are the folder names accepted
    for it under a data directory, first match first.  ``layout`` shows the
    expected files (the message of a missing or wrong folder prints it),
    ``upstream`` where it comes from, ``about`` what a model card's reader must
    know of its sources, biases and licences, ``fetch`` what getting it takes
    beyond ``XRAY_DATA_DIR``.  ``full_size`` gives, per task, the images per split
    of the full upstream dataset: a chapter with fewer ran on a sample.
    ``joins_collection``: its images that the adults' collection also holds get
    that collection's patient, view, age and sex (:func:`xrayutils.datasets.load`).
    """

    name: str
    classes: dict[str, list[str]]
    upstream: str
    layout: str
    about: str
    fetch: str
    folders: tuple[str, ...] = ()
    full_size: dict[str, dict[str, int]] = field(default_factory=dict)
    joins_collection: bool = True

    def __repr__(self) -> str:
        """``ClassFolders('covid-xray')``: the record's kind and name (a whole record is pages long)."""
        return f"{type(self).__name__}({self.name!r})"

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.classes)

    @property
    def folder_names(self) -> tuple[str, ...]:
        """``folders``, or the dataset's own name."""
        return self.folders or (self.name,)

    def problems(self, root: Path, tasks: tuple[str, ...]) -> list[str]:
        """Every missing or empty part of the layout under ``root`` that ``tasks`` need, in words; none when it is whole."""
        raise NotImplementedError

    def rows(self, root: Path, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """One row per image of ``task`` (``path``, ``file``, ``split``, ``class_name``, any of its own), and the files left out."""
        raise NotImplementedError

    def download(self, staging: Path) -> None:
        """Put the dataset, laid out as :attr:`layout` says, into the new folder ``staging``."""
        raise NotImplementedError(f"{self.name} has no download: put its files in this layout and point XRAY_DATA_DIR at them:\n"
                                  f"{self.layout}")


@dataclass(frozen=True, repr=False)
class ClassFolders(Source):
    """A dataset laid out as ``<name>/<task>/<split>/<class>/<images>``: the class a folder's name, nothing else to read.

    ``archive`` (a zip URL) and ``archive_folders`` (task -> the folder inside it
    holding that task's splits) make it downloadable with pooch; without them
    a reader puts the folders in place.
    """

    archive: str | None = None
    archive_folders: dict[str, str] = field(default_factory=dict)

    def problems(self, root: Path, tasks: tuple[str, ...]) -> list[str]:
        found = []
        for task in tasks:
            for split in SPLITS:
                for cls in self.classes[task]:
                    folder = root / task / split / cls
                    if not folder.is_dir():
                        found.append(f"missing folder {folder}")
                    elif not image_files(folder):
                        others = other_files(folder)
                        files = f"{len(others)} other file{'s' if len(others) > 1 else ''}"
                        found.append(f"no images in {folder}" + (f" ({files}, such as {others[0].name}: {not_an_image(others[0])})"
                                                                 if others else ""))
        return found

    def rows(self, root: Path, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        classes = self.classes[task]
        for split in SPLITS:
            extra = sorted(p.name for p in (root / task / split).iterdir() if p.is_dir() and p.name not in classes)
            if extra:
                warnings.warn(f"{root / task / split} holds folder(s) {extra} that are no class of task {task!r} "
                              f"({classes}): their images are not used", stacklevel=3)
        folders = [(split, cls, root / task / split / cls) for split in SPLITS for cls in classes]
        rows = [{"path": str(p), "file": str(p.relative_to(root)), "split": split, "class_name": cls}
                for split, cls, folder in folders for p in image_files(folder)]
        skipped = pd.DataFrame([{"file": str(p.relative_to(root)), "reason": not_an_image(p)}
                                for _, _, folder in folders for p in other_files(folder)], columns=["file", "reason"])
        for reason, files in skipped.groupby("reason", sort=False)["file"]:  # one warning per kind of file, not one per file
            warnings.warn(f"{len(files)} file{'s' if len(files) > 1 else ''} in the class folders of {root / task} left out, such as "
                          f"{files.iloc[0]}: {reason}", stacklevel=3)
        return pd.DataFrame(rows, columns=["path", "file", "split", "class_name"]), skipped

    def download(self, staging: Path) -> None:
        if self.archive is None:
            super().download(staging)
        files = retrieve(self.archive, f"{self.name}-archive")
        extracted = Path(os.path.commonpath(files))
        first = next(iter(self.archive_folders.values()))
        while extracted.name not in ("", "/") and not (extracted / first).is_dir():
            extracted = extracted.parent
        staging.mkdir()
        for task, folder in self.archive_folders.items():
            shutil.copytree(extracted / folder, staging / task)


def cache_dir() -> Path:
    """Where downloads are kept: ``XRAY_CACHE_DIR`` or ``~/.cache/xrayutils``."""
    return Path(os.environ.get("XRAY_CACHE_DIR", Path.home() / ".cache" / "xrayutils"))


def retrieve(url: str, extract_dir: str) -> list[str]:
    """The files of the zip archive at ``url``, downloaded once into the cache by pooch and unpacked into ``extract_dir``.

    GitHub archives carry no published hash: what is verified is the layout, before the cache is trusted.
    """
    import pooch

    return pooch.retrieve(url, known_hash=None, path=cache_dir() / "downloads", processor=pooch.Unzip(extract_dir=extract_dir),
                          progressbar=_has_tqdm())


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def image_files(folder: Path) -> list[Path]:
    """The files of ``folder`` the pipeline reads as images (:data:`IMAGE_SUFFIXES`), sorted."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def other_files(folder: Path) -> list[Path]:
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


def left_out(files: list[str], reason: str) -> pd.DataFrame:
    """``files`` as rows of a dataset's ``skipped`` table, each with ``reason``."""
    return pd.DataFrame({"file": files, "reason": reason}, columns=["file", "reason"])


def existing(table: pd.DataFrame, name: str, csv: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Which rows' ``path`` is a file, and the others left out, named in a warning (a download cut short, a file deleted)."""
    exists = np.array([Path(p).is_file() for p in table["path"]], dtype=bool)
    absent = table.loc[~exists, "file"].tolist()
    if absent:
        warnings.warn(f"{name}: {len(absent)} rows of {csv} name files that are absent and are left out: {listing(absent)}",
                      stacklevel=4)
    return exists, left_out(absent, f"named in {csv}, but no such file")


def listing(files: list[str]) -> str:
    """The first ten of ``files``, for a warning."""
    return ", ".join(files[:10]) + (" ..." if len(files) > 10 else "")
