"""How chapter 00 grows with the number of images: its wall time and peak memory on generated collections.

Each size is a covid-xray folder of ``n`` generated radiograph-like images (64 x 64 PNG, multi-scale noise,
2% exact copies and 2% slightly changed copies, split 80/20 into train and test over the four classes, ``two/``
holding hard links to the covid and normal ones), beside the shared sample's other two datasets (linked), so
that chapter 00 audits every image of a collection of that size (``max_images_per_class 0``). The chapter runs
through ``xray-book run`` in a process of its own; peak memory is the largest process's (``ru_maxrss`` of the
children).

    python benchmarks/chapter00_scale.py --sample ../shared/data --folder /tmp/scale 5000 20000 50000
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("covid", "normal", "pneumonia_bac", "pneumonia_vir")


def radiograph(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Noise at four scales (a natural-image-like spectrum, so perceptual hashes behave as on photographs), uint8."""
    image = np.zeros((size, size))
    for cells, amplitude in ((4, 1.0), (8, 0.5), (16, 0.25), (32, 0.12)):
        noise = Image.fromarray(rng.random((cells, cells)).astype(np.float32))
        image += amplitude * np.asarray(noise.resize((size, size), Image.BICUBIC))
    image = (image - image.min()) / (image.max() - image.min())
    return (image * 255).astype(np.uint8)


def collection(root: Path, n: int, sample: Path, seed: int = 0) -> Path:
    """``root`` as a data folder: ``n`` generated covid-xray images, the sample's other datasets linked. Made once."""
    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(seed)
    previous = None
    for i in range(n):
        split, cls = ("train" if i % 5 else "test"), CLASSES[i % len(CLASSES)]
        if previous is not None and rng.random() < 0.02:
            array = previous  # an exact copy
        elif previous is not None and rng.random() < 0.02:
            array = np.clip(previous.astype(int) + rng.integers(-3, 4, previous.shape), 0, 255).astype(np.uint8)
        else:
            array = radiograph(rng)
        path = root / "covid-xray" / "all" / split / cls / f"img-{i:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
        if cls in ("covid", "normal"):
            twin = root / "covid-xray" / "two" / split / cls / path.name
            twin.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, twin)
        previous = array
    for other in ("coronahack", "covid-chestxray-dataset"):
        (root / other).symlink_to((sample / ("coronahack-mini" if other == "coronahack" else other)).resolve())
    done.touch()
    return root


def measure(data: Path, build: Path) -> tuple[float, float]:
    """Chapter 00 on every image of ``data``: seconds, and the peak memory of the largest process in GB."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "xrayutils.cli", "run", "notebooks/00_data_exploration.ipynb", "--profile", "cpu",
                    "--data-dir", str(data), "--build-dir", str(build), "-p", "max_images_per_class", "0"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", type=int, nargs="+")
    parser.add_argument("--sample", type=Path, required=True, help="the shared sample data (its coronahack and adults are linked)")
    parser.add_argument("--folder", type=Path, required=True, help="where the collections and builds go (kept for reruns)")
    args = parser.parse_args(argv)
    print("images | generated in | chapter 00 | peak memory (largest process)")
    for n in args.sizes:
        started = time.perf_counter()
        data = collection(args.folder / f"data-{n}", n, args.sample)
        made = time.perf_counter() - started
        seconds, peak = subprocess.run(  # each size in a process of its own, so that peak memory is that size's
            [sys.executable, __file__, "--measure", str(data), str(args.folder / f"build-{n}")],
            check=True, capture_output=True, text=True).stdout.split()
        print(f"{n:,} | {made:.0f} s | {float(seconds):.0f} s | {float(peak):.2f} GB", flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        seconds, peak = measure(Path(sys.argv[2]), Path(sys.argv[3]))
        print(seconds, peak)
        sys.exit(0)
    sys.exit(main())
