"""A student's session: the package installed as Colab installs it, chapter 01 opened from another folder, its head changed.

The wheel is built from this checkout and installed without ``-e`` into a fresh
environment (its dependencies borrowed from this one); chapter 01, with its
Dense(256) head edited to Dense(128) + Dropout(0.5), runs under plain papermill
from a folder outside the repository, on generated images.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from tests.conftest import make_tiny_data
from xrayutils import devices, precision
from xrayutils.runner import parameters

ROOT = parameters.ROOT
#: A line TensorFlow's C++ side writes (absl's "I0000 00:00:..." or "E0000 ..."), or its notice about them.
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:|All log messages before absl::InitializeLog", re.M)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh environment holding the wheel of this checkout (not editable); returns its python."""
    folder = tmp_path_factory.mktemp("installed")
    source = folder / "source"  # a copy: setuptools writes its build/ folder beside the sources
    shutil.copytree(ROOT / "xrayutils", source / "xrayutils", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(folder / "dist"),
                    str(source)], check=True, cwd=folder)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / "env")], check=True)
    python = folder / "env" / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # dependencies from here; no editable finder
    wheel = next((folder / "dist").glob("xrayutils-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)], check=True)
    return python


def _in_env(python: Path, code: str, cwd: Path) -> str:
    return subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True, cwd=cwd).stdout.strip()


def test_the_installed_package_is_the_wheel_and_reads_its_stored_measurements(installed, tmp_path):
    where = _in_env(installed, "import xrayutils; print(xrayutils.__file__)", tmp_path)
    assert "site-packages" in where and str(ROOT) not in where
    stored = _in_env(installed, "from xrayutils import precision; print(len(precision.stored_speedups()))", tmp_path)
    assert int(stored) == len(precision.stored_speedups()) > 0  # package data, as in the checkout


def test_chapter01_with_its_head_changed_runs_from_another_folder_and_records_the_new_head(installed, tmp_path):
    notebook = nbformat.read(ROOT / "notebooks" / "01_vgg16_binary.ipynb", as_version=4)
    model_cell = next(c for c in notebook.cells if c.source.startswith("#@save") and "def vgg16_transfer" in c.source)
    head = 'x = layers.Dense(256, activation="relu", name="features")(x)'
    assert head in model_cell.source
    model_cell.source = model_cell.source.replace(
        head, 'x = layers.Dense(128, activation="relu", name="features")(x)\n    x = layers.Dropout(0.5, name="dropout")(x)')
    work = tmp_path / "student"
    work.mkdir()
    nbformat.write(notebook, work / "chapter.ipynb")
    data = make_tiny_data(tmp_path / "data")
    chosen = parameters.resolve_parameters(ROOT / "notebooks" / "01_vgg16_binary.ipynb", "smoke", {})
    chosen.update(image_size=32, seeds=[1], weights="none", data_dir=str(data))
    args = [arg for name, value in chosen.items() for arg in ("-y", f"{name}: {json.dumps(value)}")]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL" and not k.startswith("PYTEST")}
    subprocess.run([str(installed), "-m", "papermill", "chapter.ipynb", "out.ipynb", "--log-level", "ERROR", *args],
                   check=True, cwd=work, env=env, timeout=600)

    output = work / "outputs" / "01_vgg16_binary"  # under the working directory, never in site-packages
    saved = json.loads((output / "results.json").read_text())["results"]["models"]["VGG16"]
    layers = saved["history"]["layers"]
    assert "features: Dense(128, relu)" in layers and "dropout: Dropout(0.5)" in layers
    assert saved["history"]["optimizer"] == "Adam" and saved["history"]["loss_function"] == "binary_crossentropy"
    stamp = json.loads((output / "run_info.json").read_text())["models"]["VGG16"]
    assert f"{saved['weight_counts']['total']:,} parameters" in stamp and "Dense(128, relu)" in stamp
    setting = parameters.with_defaults(ROOT / "notebooks" / "01_vgg16_binary.ipynb", chosen)["mixed_precision"]
    expected = devices.choose_precision(setting, model="VGG16", work=precision.FROZEN_FORWARD).reason
    assert saved["history"]["precision_reason"] == expected  # the installed package chooses as the checkout does
    image = next((data / "covid-xray" / "two" / "test" / "normal").iterdir())
    predicted = subprocess.run([str(installed.with_name("xray-book")), "predict", str(output / saved["model_file"]), str(image)],
                               check=True, capture_output=True, text=True, cwd=work, env=env).stdout
    assert image.name in predicted  # the changed model, saved, loads and predicts
    text = "\n".join(str(o.get("text", "")) for c in nbformat.read(work / "out.ipynb", as_version=4).cells for o in c.get("outputs", []))
    assert not TF_LOG_LINE.search(text), TF_LOG_LINE.search(text)
