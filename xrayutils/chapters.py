"""The book's chapters, one record each: the single place where what a chapter is, reads and needs is written.

The runner orders and skips chapters by these records, ``xray-book plan`` and
:mod:`xrayutils.published` find a chapter's study, dataset and task here, and
the pages name a chapter's task from here; a chapter's page reads its own
record (``book.Chapter(...).record``), so the page and the plan cannot disagree
on what it trains on.  Only names, tuples and the profiles file: no TensorFlow, no pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: The checkout the package runs from: its ``notebooks/``, ``profiles.yml`` and ``_toc.yml`` (an installed package has none beside it).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The parameter sets (``smoke``, ``cpu``, ``paper``) each chapter runs under.
PROFILES = REPO_ROOT / "profiles.yml"


@dataclass(frozen=True)
class ChapterRecord:
    """What one chapter (a notebook in ``notebooks/``, named by its file's stem) is.

    ``reads``: the datasets it loads (names as :data:`xrayutils.datasets.SOURCES`
    has them): a chapter reruns only when one of these changed, or a chapter
    it ``needs`` (whose results files it reads; the runner runs those first)
    reran.  ``trains``: it trains models, so a GPU is expected for its ``paper``
    profile.  A chapter reproducing a study names its ``study``, ``dataset``,
    ``task`` and, where the chapter has no ``model_names`` parameter, its
    ``models``; ``published_task`` is how the study's table names the task
    (``published_results.csv``) and ``models_called`` how the pages name one of its
    models, "the task-1" VGG16 (:meth:`model_words`).  ``runs_alone``: it times itself, so the runner gives
    it the machine alone.  ``cpu_minutes``: its time in the ``cpu`` book on 2
    AVX2 cores (2026-12-03): the runner starts the slowest of a wave first, so
    that the short ones fill the other cores beside it rather than leave it
    alone at the end on the share of the cores it started with.
    """

    name: str
    title: str
    reads: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    trains: bool = False
    study: str | None = None
    dataset: str | None = None
    task: str | None = None
    published_task: str | None = None
    models_called: str | None = None
    models: tuple[str, ...] | None = None
    runs_alone: bool = False
    cpu_minutes: float | None = None

    @property
    def reproduces(self) -> bool:
        """Whether it trains a study's models on the study's data (chapters 01-03)."""
        return self.study is not None

    def model_words(self, model: str) -> str:
        """How a sentence names this chapter's ``model``: ``"the task-1 VGG16"`` (the bare name without ``models_called``)."""
        return f"{self.models_called} {model}" if self.models_called else model


#: Chapter 00: the data, its duplicates and its sizes.
DATA_EXPLORATION = "00_data_exploration"
#: Chapter 01: task 1, VGG16, COVID-19 against normal.
TASK1 = "01_vgg16_binary"
#: Chapter 02: task 2, VGG16 against AlexNet on four classes.
TASK2 = "02_vgg16_vs_alexnet"
#: Chapter 03: the CoronaHack CNNs, normal against pneumonia.
CORONAHACK = "03_coronahack_models"
#: Chapter 04: the trust checks on the models 01-03 saved.
TRUST_CHECKS = "04_trust_checks"
#: Chapter 05: every results file on one page, and the model cards.
SUMMARY = "05_summary"
#: The Performance page: training speed, measured.
PERFORMANCE = "performance"
#: The start page: what the book found and what this build is, from every chapter's results.
START = "index"

_ALL_DATA = ("covid-xray", "coronahack", "covid-chestxray-dataset")

#: The chapters that make data and models, in book order; the others read their results.
_MAKERS = (
    ChapterRecord(DATA_EXPLORATION, "Data exploration: what is in the three datasets", reads=_ALL_DATA, cpu_minutes=0.5),
    ChapterRecord(TASK1, "Task 1: VGG16, COVID-19 against normal", reads=("covid-xray",), trains=True, study="class-challenge",
                  dataset="covid-xray", task="two", published_task="task 1", models_called="the task-1",
                  models=("VGG16",), cpu_minutes=14),
    ChapterRecord(TASK2, "Task 2: VGG16 against AlexNet, four classes", reads=("covid-xray",), trains=True,
                  study="class-challenge", dataset="covid-xray", task="all", published_task="task 2", models_called="the task-2",
                  models=("VGG16", "AlexNet"), cpu_minutes=19),
    ChapterRecord(CORONAHACK, "CoronaHack: CNNs compared, normal against pneumonia", reads=("coronahack",), trains=True,
                  study="coronahack", dataset="coronahack", task="two", published_task="normal vs pneumonia",
                  models_called="the CoronaHack", cpu_minutes=49),
)
#: The chapters that reproduce a study's training (01-03), in book order.
MODELLING = tuple(chapter.name for chapter in _MAKERS if chapter.reproduces)

#: Every chapter, in book order.
CHAPTERS = (
    *_MAKERS,
    ChapterRecord(TRUST_CHECKS, "Can these numbers be trusted? Shortcuts, leakage, external data, calibration", reads=_ALL_DATA,
                  needs=(DATA_EXPLORATION, *MODELLING), trains=True, cpu_minutes=36),
    ChapterRecord(SUMMARY, "Summary: every model, its scores, and how far to trust them",
                  needs=(DATA_EXPLORATION, *MODELLING, TRUST_CHECKS)),
    ChapterRecord(PERFORMANCE, "Performance: how fast the book trains", reads=("covid-xray",), needs=(TASK1,), trains=True,
                  runs_alone=True),
    ChapterRecord(START, "COVID-19 chest X-ray classification: an executable book", needs=(DATA_EXPLORATION, *MODELLING, TRUST_CHECKS)),
)

_BY_NAME = {chapter.name: chapter for chapter in CHAPTERS}


def record(name: str) -> ChapterRecord:
    """The record of the chapter whose notebook is ``name`` (its stem), or an error naming the chapters there are."""
    if name not in _BY_NAME:
        raise KeyError(f"no chapter {name!r}; the chapters are {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def get(name: str) -> ChapterRecord | None:
    """The record of chapter ``name``, or ``None`` for a notebook that is not one of the book's (a page a reader added)."""
    return _BY_NAME.get(name)


#: Chapters by their time in the ``cpu`` book, slowest first (those never timed are left out).
SLOWEST_FIRST = tuple(c.name for c in sorted((c for c in CHAPTERS if c.cpu_minutes is not None), key=lambda c: -c.cpu_minutes))


def load_profiles(path: Path = PROFILES) -> dict[str, dict[str, Any]]:
    """The profiles file: ``{profile: {"description": str, "notebooks": {stem: {name: value}}, "floors": [...], "measured": [...]}}``."""
    return yaml.safe_load(Path(path).read_text())
