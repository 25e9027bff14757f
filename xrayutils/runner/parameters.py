"""Profiles and parameters: what each chapter runs with, checked against its ``parameters`` cell before anything runs."""

from __future__ import annotations

import ast
import contextlib
import re
from pathlib import Path
from typing import Any

import yaml

from xrayutils import book, catalogue, chapters, constraints, results
from xrayutils.chapters import load_profiles
from xrayutils.constraints import WEIGHTS_CHOICES

ROOT = chapters.REPO_ROOT
# Injected by the runner into every notebook, on top of the profile.
RUNNER_PARAMETERS = book.RUNNER_PARAMETERS


class ParameterError(ValueError):
    """A parameter name that the notebook does not declare, or a profile that does not exist."""


def profile_floors(profile: str, profiles: dict[str, Any] | None = None) -> list[results.Floor]:
    """The :class:`~xrayutils.results.Floor` s a profile holds its results to; a malformed one is an error before anything runs."""
    profiles = profiles if profiles is not None else load_profiles()
    try:
        return [results.Floor(**floor) for floor in profiles.get(profile, {}).get("floors", [])]
    except (TypeError, ValueError) as error:
        raise ParameterError(f"profiles.yml, profile {profile!r}: a floor is malformed: {error}") from None


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """The names and default values of a notebook's ``parameters`` cell (read with papermill)."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    if not declared:
        raise ParameterError(f"{notebook} has no cell tagged 'parameters'")
    return {name: info["default"] for name, info in declared.items()}


def chapter_notebooks(toc: Path = ROOT / "_toc.yml") -> list[Path]:
    """The notebooks the runner executes, in the order it runs them: the chapters as ``_toc.yml`` lists them, then the start page.

    The start page (``root:``, :data:`xrayutils.chapters.START`) states what the
    chapters found, so it runs after them although the book shows it first.
    """
    text = toc.read_text()
    files = re.findall(r"file:\s*(notebooks/\S+)", text) + re.findall(r"root:\s*(notebooks/\S+)", text)
    return [ROOT / (f if f.endswith(".ipynb") else f + ".ipynb") for f in files]


def chosen_parameters(notebooks: list[Path], profile: str, overrides: dict[str, Any]) -> dict[Path, dict[str, Any]]:
    """Each notebook's :func:`resolve_parameters`, given the overrides it declares; an override no notebook declares is an error."""
    declared = {nb: notebook_parameters(nb) for nb in notebooks}
    for name in overrides:
        if not any(name in names for names in declared.values()):
            raise ParameterError(f"no selected notebook declares the parameter {name!r}")
    return {nb: resolve_parameters(nb, profile, {k: v for k, v in overrides.items() if k in declared[nb]}) for nb in notebooks}


def resolve_parameters(
    notebook: Path, profile: str, overrides: dict[str, Any], profiles: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Profile values for ``notebook`` updated with ``overrides``; every name must be declared."""
    profiles = profiles if profiles is not None else load_profiles()
    if profile not in profiles:
        raise ParameterError(f"unknown profile {profile!r}; profiles.yml has {sorted(profiles)}")
    declared = notebook_parameters(notebook)
    chosen = dict(profiles[profile].get("notebooks", {}).get(notebook.stem, {}))
    chosen.update(overrides)
    unknown = sorted(set(chosen) - set(declared))
    if unknown:
        raise ParameterError(
            f"{notebook.name} does not declare the parameter(s) {unknown}; it declares {sorted(declared)}"
        )
    for name, value in chosen.items():
        check_value(notebook.name, name, value, declared[name])
    check_image_size(notebook.name, with_defaults(notebook, chosen))
    if chosen.get("weights") not in (None, *WEIGHTS_CHOICES):  # a file or folder: the chapter runs in its own folder
        chosen["weights"] = str(Path(chosen["weights"]).expanduser().resolve())
    return chosen


#: The first bytes of a weights file: HDF5 (``.h5``, Keras' ImageNet files) or a zip (``.keras``, ``.weights.h5`` of Keras 3 is HDF5).
WEIGHTS_SIGNATURES = (b"\x89HDF\r\n\x1a\n", b"PK\x03\x04")


def check_value(notebook: str, name: str, value: Any, default_source: str) -> None:
    """Refuse a value of the wrong kind for its parameter, judged by the default in the notebook's parameters cell.

    A number where the default is a number (a whole one where it is whole), text
    or True/False where it is text (``mixed_precision = "auto"`` also takes
    True/False), a list (of what the default's list holds) or a mapping where it
    is one; no negative number; and what :mod:`xrayutils.constraints` declares.
    Checked before anything runs, so a bad value stops the build with its name
    instead of failing deep inside a chapter, or silently doing something else.
    """
    if name in RUNNER_PARAMETERS:
        raise ParameterError(f"{name} is set by the runner (--profile, --data-dir, --build-dir), not with -p")
    check_allowed(notebook, name, value)
    try:
        default = ast.literal_eval(default_source)
    except (ValueError, SyntaxError):
        return  # an expression, not a literal: nothing to compare with
    if default is None:
        return
    if not _same_kind(value, default) or (isinstance(value, list) and default and not all(_same_kind(v, default[0]) for v in value)):
        raise ParameterError(f"{notebook}: {name} must be {_kind_name(default)} like its default {default_source}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise ParameterError(f"{notebook}: {name} must be 0 or more, got {value!r}")


def check_image_size(notebook: str, values: dict[str, Any]) -> None:
    """Refuse an ``image_size`` smaller than one of the chosen ``model_names`` accepts (its ``min_image_size``), naming them.

    Checked before a build, where ``-p image_size 40`` failed Xception after other models had trained for minutes.
    """
    size, names = values.get("image_size"), values.get("model_names")
    if not isinstance(size, int) or not isinstance(names, list):
        return
    sides = {name: catalogue.network(name).min_image_size or 0 for name in names if name in catalogue.CORONAHACK_CHOICES}
    small = {name: side for name, side in sides.items() if size < side}
    if small:
        raise ParameterError(f"{notebook}: image_size {size} is too small for "
                             + ", ".join(f"{name} (at least {least})" for name, least in small.items())
                             + ": raise image_size, or leave them out of model_names")


def check_allowed(notebook: str, name: str, value: Any) -> None:
    """Refuse a value its parameter does not accept (:data:`~xrayutils.constraints.CONSTRAINTS`, a weights file), saying what it does."""
    said = constraints.problem(name, value)
    if said:
        raise ParameterError(f"{notebook}: {said}")
    if name == "weights" and isinstance(value, str):
        check_weights(notebook, value)


def check_weights(notebook: str, value: str) -> None:
    """A ``weights`` value must be one of :data:`~xrayutils.constraints.WEIGHTS_CHOICES`, a folder, or a file that starts as one does."""
    if value in WEIGHTS_CHOICES:
        return
    path = Path(value).expanduser()
    if path.is_dir():
        return
    if not path.is_file():
        raise ParameterError(f"{notebook}: weights takes {', '.join(WEIGHTS_CHOICES)}, a weights file or a folder of them; "
                             f"{value!r} is none of these (no such file or folder)")
    with open(path, "rb") as file:
        start = file.read(8)
    if not start.startswith(WEIGHTS_SIGNATURES):
        raise ParameterError(f"{notebook}: weights file {path} is not a weights file (neither HDF5, as Keras' .h5 files are, "
                             "nor a .keras archive)")


def _same_kind(value: Any, default: Any) -> bool:
    kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str, bool), list: (list,), dict: (dict,)}
    expected = kinds.get(type(default))
    if expected is None:
        return True
    return isinstance(value, expected) and not (isinstance(value, bool) and bool not in expected)


def _kind_name(default: Any) -> str:
    if isinstance(default, list) and default:
        return f"a list of {_kind_name(default[0]).removeprefix('a ')}s"
    return {bool: "True or False", int: "a whole number", float: "a number", str: "text (or True/False)", list: "a list",
            dict: "a mapping"}[type(default)]



def parse_overrides(pairs: list[list[str]] | None) -> dict[str, Any]:
    """``-p NAME VALUE`` pairs, typed as papermill's ``-p`` types them (``5`` int, ``1e-4`` float)."""
    return {name: _typed(name, value) for name, value in (pairs or [])}


def _typed(name: str, text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or "not readable"
        raise ParameterError(f"-p {name} {text!r}: {problem}; give a number, text, or a YAML list such as '[a, b]'") from None
    if isinstance(value, str):
        try:
            return float(text)
        except ValueError:
            return value
    return value



def with_defaults(notebook: Path, chosen: dict[str, Any]) -> dict[str, Any]:
    """Every parameter ``notebook`` runs with: its defaults (those written as literals) updated with ``chosen``."""
    defaults = {}
    for name, source in notebook_parameters(notebook).items():
        with contextlib.suppress(ValueError, SyntaxError):
            defaults[name] = ast.literal_eval(source)
    return {**defaults, **chosen}


