"""What a profile costs before it runs: each chapter's training work, and its time here (measured) and on a GPU (stored).

``xray-book plan --profile paper`` reads the profile's parameters as the runner
would (:func:`xrayutils.runner.parameters.resolve_parameters`), counts the images each model
trains on from the data, times a few training steps of each model on this
machine, at the profile's image size, batch size and switches, and multiplies
out: a user learns before an hour-long run whether the profile needs a GPU.
The estimates are lower bounds (steps on batches in memory: no decoding, no
start-up, no tracing); a build's own times are printed beside them when this
checkout has built the profile before.  Each model is measured in a process of
its own (:func:`measure_apart`), so that the memory of one is freed before the
next: in one process, ``plan --profile paper`` grew to 16.9 GB.  With
``--workers N`` the plan also gives the wall time of the chapters' runs side
by side on N workers (:func:`side_by_side`), as the Ray engine runs them
(:mod:`xrayutils.cluster`).
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import pandas as pd
import tensorflow as tf

from xrayutils import augmentations, benchmark, caching, chapters, devices, models, prose, results, train
from xrayutils.protocol import TrainingProtocol

#: Chapter 04 trains each chapter of its ``shortcut_chapters`` again: one run per shortcut variant (border only, centre only).
SHORTCUT_RUNS = 2
#: Above this many hours here, the plan says the profile is meant for a GPU.
GPU_ADVISED_HOURS = 2.0
#: Stored step times (``benchmarks/whole_network_speed.py --output``); a file measured on a GPU gives the GPU column.
STORED = benchmark.STEP_TIMES.parent


@dataclass(frozen=True)
class Work:
    """One model's training in one chapter: its protocol, its images per split, and how many times it trains."""

    chapter: str
    model: str
    protocol: TrainingProtocol
    images: dict[str, int]
    runs: int
    why: str = "runs"

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.images["train"] / self.protocol.batch_size)

    def seconds(self, cost: dict[str, Any]) -> float:
        """Time of every run from measured costs (:func:`measure`): training steps, validation passes, the test split.

        With a cached frozen base, the base runs once per augmented view of each
        training image and once per validation and test image; the epochs train
        only the head.  Unaugmented, that encoding is done once for every seed
        (:func:`xrayutils.caching.encode_shared`).
        """
        p, n = self.protocol, self.images
        if cost["cached"]:
            views = p.augmented_views if p.augment else 1
            encoding = (views * n["train"] + n["validation"] + n["test"]) * cost["forward"]
            head = p.num_epochs * self.steps_per_epoch * cost["step"]
            return (self.runs if p.augment else 1) * encoding + self.runs * head
        one = p.num_epochs * (self.steps_per_epoch * cost["step"] + n["validation"] * cost["forward"])
        return self.runs * (one + n["test"] * cost["forward"])

    def key(self) -> tuple:
        """What a step's time depends on: the same key is measured once."""
        p = self.protocol
        return (p.study, self.model, p.image_size, p.batch_size, p.cache_features, p.fine_tune, p.augment, str(p.mixed_precision),
                str(p.jit_compile), self.images["classes"])


def chapter_work(chapter: str, parameters: dict[str, Any], data_dir: str | None) -> list[Work]:
    """The training a modelling chapter does under ``parameters`` (notebook defaults updated with the profile's).

    Its study, data and models come from its :class:`~xrayutils.chapters.ChapterRecord`, which its page reads too.
    """
    record = chapters.record(chapter)
    protocol = TrainingProtocol.from_parameters(parameters, study=record.study)
    data, frames = train.load_split(record.dataset, record.task, protocol, data_dir)
    images = {split: len(frame) for split, frame in frames.items()} | {"classes": len(data.classes)}
    names = record.models or tuple(parameters["model_names"])
    return [Work(chapter, name, protocol.for_model(name), images, len(protocol.training_seeds), "seed(s)") for name in names]


def shortcut_work(parameters: dict[str, Any], trained: list[Work]) -> list[Work]:
    """Chapter 04's retraining: each of its ``shortcut_chapters``, once per variant with the first seed.

    Which model a chapter retrains (its best) is known only after it ran, so
    its last-listed model stands in for it.
    """
    return [Work(chapters.TRUST_CHECKS, work.model, work.protocol, work.images, SHORTCUT_RUNS, f"masks ({chapter[:2]}'s)")
            for chapter in parameters.get("shortcut_chapters", [])
            for work in [w for w in trained if w.chapter == chapter][-1:]]


def measure(work: Work, *, steps: int = 2) -> dict[str, Any]:
    """Seconds of one training step and of one image's forward pass of ``work``'s model here, from random weights.

    The model is built and run as its chapter runs it (precision, XLA,
    augmentation, frozen base); with feature caching, the step is the head's on
    cached features and the forward pass the base's.  The first step (tracing)
    is left out; the augmentation runs on each batch, as in training.
    """
    p = work.protocol
    keras.backend.clear_session()
    train.set_seed(0, p.jit_compile)
    def build() -> keras.Model:
        return models.build(p.study, work.model, p.input_shape, work.images["classes"], models.resolve_weights("none"),
                            fine_tune=p.fine_tune)

    policy = devices.set_precision(p.mixed_precision, model=work.model, work=devices.work_of(build))
    try:
        model = build()
        split = caching.split_frozen(model) if p.cache_features else None
        images = tf.random.uniform((p.batch_size, *p.input_shape), 0, 255, seed=0)
        if split is None:
            step = benchmark.timed_steps(model, images, p, steps=steps, augment=augmentations.augmentation_for(p), warmup_steps=1)
            forward = forward_seconds(model, images, steps)
        else:
            encoder, head = split
            forward = forward_seconds(encoder, images, steps)
            step = benchmark.timed_steps(head, encoder.predict_on_batch(images), p, steps=steps, warmup_steps=1)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return {"step": step, "forward": forward, "cached": split is not None, "precision": policy}


def measure_apart(work: Work, *, steps: int = 2) -> dict[str, Any]:
    """:func:`measure` in a fresh process, which exits after it: every model's memory is freed; ``peak_gb``: that process's peak."""
    spawn = multiprocessing.get_context("spawn")  # not forked from a process that has TensorFlow's threads running
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(_measured_with_peak, work, steps).result()


def _measured_with_peak(work: Work, steps: int) -> dict[str, Any]:
    cost = measure(work, steps=steps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return cost | {"peak_gb": peak / (2**30 if sys.platform == "darwin" else 2**20)}


def forward_seconds(model: keras.Model, images: tf.Tensor, steps: int) -> float:
    """Seconds per image of inference on one batch in memory (the median of ``steps`` after a first call)."""
    model.predict_on_batch(images)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        model.predict_on_batch(images)
        times.append(time.perf_counter() - started)
    return statistics.median(times) / len(images)


def gpu_step_times(folder: Path = STORED) -> list[dict[str, Any]]:
    """Step times stored from a GPU (rows of ``*step_times*.json`` whose device names one), each with its device and file."""
    rows = []
    for path in sorted(Path(folder).glob("*step_times*.json")):
        stored = results.read_json(path)
        if "GPU" in stored.get("device", "") and "no GPU" not in stored["device"]:
            rows += [{**row, "device": stored["device"], "file": path.name} for row in stored["rows"]]
    return rows


def gpu_estimate(work: Work, stored: list[dict[str, Any]]) -> tuple[float | None, str]:
    """``work``'s time from a stored GPU step time at its model, image and batch size, and where it comes from; else ``(None, why)``."""
    p = work.protocol
    for row in stored:
        if (row["model"], row["image size"], row["batch"]) == (work.model, p.image_size, p.batch_size):
            seconds = work.runs * p.num_epochs * work.steps_per_epoch * row["s/step"]
            return seconds, f"{row['device']} ({row['file']}, training steps only)"
    return None, "no GPU step time stored for this model, image and batch size"


def table(works: list[Work], *, steps: int = 2, stored: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """One row per chapter and model: the work, the measured step, and the estimated time here and on a GPU.

    Each model is measured in a process of its own (:func:`measure_apart`);
    ``peak GB`` is that process's peak memory.
    """
    stored = gpu_step_times() if stored is None else stored
    costs: dict[tuple, dict[str, Any]] = {}
    rows = []
    for work in works:
        if work.key() not in costs:
            costs[work.key()] = measure_apart(work, steps=steps)
        cost = costs[work.key()]
        p = work.protocol
        gpu, source = gpu_estimate(work, stored)
        rows.append({
            "chapter": work.chapter,
            "model": work.model,
            "size": p.image_size,
            "batch": p.batch_size,
            "train images": work.images["train"],
            "epochs": p.num_epochs,
            "runs": f"{work.runs} {work.why}",
            "frozen base": f"cached, {p.augmented_views if p.augment else 1} views" if cost["cached"] else "",
            "precision": cost["precision"],
            "s/step here": round(cost["step"], 3),
            "min here": round(work.seconds(cost) / 60, 1),
            "min per run": round(work.seconds(cost) / 60 / work.runs, 1),
            "min on a GPU": float("nan") if gpu is None else round(gpu / 60, 1),
            "GPU figure from": source,
            "peak GB": round(cost["peak_gb"], 1),
        })
    return pd.DataFrame(rows)


def longest_first(durations: list[float], workers: int) -> float:
    """The time ``durations`` take on ``workers`` side by side, each next-longest run given to the first free worker.

    As Ray hands queued tasks to free workers; longest first is within 4/3 of
    the best order (Graham's bound).
    """
    finish = [0.0] * max(1, workers)
    for duration in sorted(durations, reverse=True):
        finish[finish.index(min(finish))] += duration
    return max(finish)


def side_by_side(works: list[Work], plan: pd.DataFrame, workers: int) -> pd.Series:
    """Minutes per chapter with each training chapter's runs on ``workers`` workers, each as fast as this machine.

    The runs of chapters 01-03 (one per model and seed) go side by side;
    chapter 04's retraining runs one after another in its kernel, and chapters
    follow each other.
    """
    minutes: dict[str, float] = {}
    for chapter in plan["chapter"].unique():
        runs = [per_run for work, per_run in zip(works, plan["min per run"], strict=True) if work.chapter == chapter
                for _ in range(work.runs)]
        minutes[chapter] = longest_first(runs, workers if chapters.record(chapter).reproduces else 1)
    return pd.Series(minutes, dtype=float)


def verdict(plan: pd.DataFrame, profile: str) -> str:
    """The plan's total here, and whether the profile is meant for a GPU."""
    hours = plan["min here"].sum() / 60
    if hours > GPU_ADVISED_HOURS:
        return (f"The {profile} profile's training would take about {hours:.1f} hours on this machine (a lower bound): "
                "it is meant for a GPU.")
    return f"The {profile} profile's training takes about {prose.duration(hours * 3600)} on this machine (a lower bound)."


def last_build(build_dir: Path) -> pd.Series | None:
    """Seconds each chapter took in this checkout's last build of the profile (``timings.json``), if there was one."""
    path = Path(build_dir) / "timings.json"
    if not path.is_file():
        return None
    rows = [t for t in results.read_json(path)["notebooks"] if t.get("status") == "ok"]
    return pd.Series({t["notebook"]: t["seconds"] for t in rows}, dtype=float)
