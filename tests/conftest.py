"""Tiny generated datasets in both upstream layouts: no network and no shared data needed."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if os.environ.get("PYTEST_XDIST_WORKER"):  # make test runs a worker per core: one thread each, not every worker on every core
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

COVID_CLASSES = ["covid", "normal", "pneumonia_bac", "pneumonia_vir"]


def synthetic_xray(seed: int, size: tuple[int, int] = (40, 48)) -> np.ndarray:
    """A random multi-scale grey image of ``size`` (height, width), uint8.

    Noise at four scales gives a natural-image-like spectrum, so a perceptual hash
    is stable under rescaling and distinct seeds give clearly distinct hashes.
    """
    rng = np.random.default_rng(seed)
    image = np.zeros(size)
    for cells, amplitude in ((4, 1.0), (8, 0.5), (16, 0.25), (32, 0.12)):
        noise = Image.fromarray(rng.random((cells, cells)).astype(np.float32))
        image += amplitude * np.asarray(noise.resize(size[::-1], Image.BICUBIC))
    image = (image - image.min()) / (image.max() - image.min())
    return (image * 255).astype(np.uint8)


def save_image(path: Path, array: np.ndarray, mode: str = "L") -> Path:
    """Save ``array`` (uint8, 2-D) in one of the modes the pipeline must read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        Image.fromarray(array.astype(np.uint16) * 257).save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    image = Image.fromarray(array).convert(mode)
    image.save(path, format="PNG" if path.suffix == ".png" else "JPEG")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """``covid-xray/`` (two/ and all/) and ``coronahack/`` with 3 train and 2 test images per class."""
    return make_tiny_data(tmp_path / "data")


@pytest.fixture
def splits(data_dir):
    """The tiny covid-xray images of :func:`data_dir`, four classes, split as the chapters split them."""
    from xrayutils import datasets, pipeline

    data = datasets.load("covid-xray", task="all", data_dir=data_dir)
    return data, pipeline.split_frames(data, validation_fraction=0.25, seed=0)


def make_tiny_data(root: Path) -> Path:
    """Write the :func:`data_dir` datasets under ``root``."""
    modes = ["L", "RGB", "RGBA", "I;16"]
    seed = 0
    for split, n in (("train", 3), ("test", 2)):
        for c, cls in enumerate(COVID_CLASSES):
            for i in range(n):
                seed += 1
                name = f"{cls}-{split}-{i}" + ("-L" if cls == "covid" and i == 0 and split == "train" else "")
                mode = modes[(i + c) % len(modes)]
                suffix = ".png" if mode in ("RGBA", "I;16") else ".jpeg"
                saved = save_image(root / "covid-xray" / "all" / split / cls / (name + suffix), synthetic_xray(seed), mode)
                if cls in ("covid", "normal"):
                    target = root / "covid-xray" / "two" / split / cls / saved.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(saved.read_bytes())
    rows = []
    images = root / "coronahack" / "Coronahack-Chest-XRay-Dataset" / "Coronahack-Chest-XRay-Dataset"
    for split, n in (("train", 3), ("test", 2)):
        for label, virus, covid in (("Normal", "", ""), ("Pnemonia", "bacteria", ""), ("Pnemonia", "Virus", "")):
            for i in range(n):
                seed += 1
                name = f"person{seed}_{virus or 'normal'}_{i}.jpeg"
                save_image(images / split / name, synthetic_xray(seed))
                rows.append([name, label, split.upper(), covid, virus])
    frame = pd.DataFrame(rows, columns=["X_ray_image_name", "Label", "Dataset_type", "Label_2_Virus_category", "Label_1_Virus_category"])
    frame.to_csv(root / "coronahack" / "Chest_xray_Corona_Metadata.csv")
    make_tiny_adults(root / "covid-chestxray-dataset", first_seed=seed + 1)
    return root


#: Rows of the tiny adults' metadata: the confound check uses the four frontal non-COVID-19 rows, the within test the COVID-19 ones too.
ADULT_ROWS = [
    # patientid, age, sex, finding, view, filename
    ("1", "45", "M", "No Finding", "PA", "nofinding-1.jpg"),
    ("2", "", "F", "No Finding", "AP", "nofinding-2.png"),  # JPEG bytes under a .png name, as upstream
    ("3", "71", "F", "Pneumonia/Viral/SARS", "AP Supine", "sars-3.jpeg"),
    ("4", "38", "M", "Streptococcus", "PA", "strep-4.jpg"),
    ("5", "60", "M", "Pneumonia/Viral/COVID-19", "PA", "covid-5.jpg"),
    ("6", "52", "F", "Pneumonia/Viral/COVID-19", "AP", "covid-6.jpg"),  # three COVID-19 patients: chapter 04's within test can split them
    ("7", "", "M", "Pneumonia/Viral/COVID-19", "PA", "covid-7.jpg"),
    ("4", "38", "M", "Streptococcus", "L", "strep-4-L.jpg"),
]


def make_tiny_adults(folder: Path, first_seed: int) -> Path:
    """``covid-chestxray-dataset/`` in the upstream layout: ``metadata.csv`` and ``images/``."""
    for seed, row in enumerate(ADULT_ROWS, start=first_seed):
        image = Image.fromarray(synthetic_xray(seed, size=(48, 44)))
        (folder / "images").mkdir(parents=True, exist_ok=True)
        image.save(folder / "images" / row[-1], format="JPEG")
    frame = pd.DataFrame(ADULT_ROWS, columns=["patientid", "age", "sex", "finding", "view", "filename"])
    frame.insert(5, "modality", "X-ray")
    frame.to_csv(folder / "metadata.csv", index=False)
    return folder


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first in each half of the list, so that both workers of ``make test`` start on them.

    ``--dist worksteal`` gives each worker one half of the list and lets an idle
    worker take tests from the end of a busy one's; with every slow test at the
    front of one half, one worker ran them all in turn while the other ran out.
    The Ray tests stay in one half (two local clusters at once on two cores
    would time each other out); the nine models of the paper path are dealt to both.
    """
    def of(name: str) -> list[pytest.Item]:
        return [item for item in items if name in item.nodeid]

    ray, paper, installed = of("test_cluster.py"), of("test_paper_path.py"), of("test_installed.py")
    slow = {id(item) for item in ray + paper + installed}
    fast = [item for item in items if id(item) not in slow]
    first_slow, second_slow = ray + paper[0::2], installed + paper[1::2]
    first = max(0, len(items) // 2 - len(first_slow))
    items[:] = first_slow + fast[:first] + second_slow + fast[first:]


@dataclass
class FakeChapters:
    """Stands in for papermill: a chapter's page is its notebook copied; the chapters in ``fail`` raise their error once."""

    ran: list[str] = field(default_factory=list)
    fail: dict[str, BaseException] = field(default_factory=dict)
    writes_results: bool = False  # each run also writes ``outputs/<chapter>/results.json``

    def __call__(self, nb: Path, output: Path, parameters: dict) -> None:
        from xrayutils import results

        self.ran.append(nb.stem)
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(nb, output)
        if self.writes_results:
            results.write_json_atomic(Path(parameters["output_dir"]) / nb.stem / "results.json", {"results": {"ok": True}})
        if nb.stem in self.fail:
            raise self.fail.pop(nb.stem)


@pytest.fixture
def fake_chapters(monkeypatch: pytest.MonkeyPatch) -> FakeChapters:
    """:class:`FakeChapters` in place of the runner's papermill call."""
    from xrayutils.runner import execution

    fake = FakeChapters()
    monkeypatch.setattr(execution, "execute", fake)
    return fake
