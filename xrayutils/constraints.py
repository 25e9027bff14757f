"""What each chapter parameter accepts, declared once (as scikit-learn's ``_parameter_constraints``).

The runner checks a build's values here before anything runs
(:mod:`xrayutils.runner.parameters`); the objects that take them check them here
too when a notebook runs alone (:class:`~xrayutils.protocol.TrainingProtocol`,
chapter 04's region mask, the within-source test, the engine), so the two can
never disagree.  No Keras import: the runner checks before TensorFlow starts.

>>> check("validation_fraction", 0.1)
>>> check("validation_fraction", 1.5)
Traceback (most recent call last):
...
ValueError: validation_fraction must lie in (0, 1), got 1.5
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Protocol

from xrayutils import catalogue, chapters, precision


class Constraint(Protocol):
    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value``, said after the parameter's name; ``None`` when it is allowed."""


@dataclass(frozen=True)
class OneOf:
    """One of ``values`` (each item, for a list); ``True`` and ``False`` only where listed, never taken for 1 and 0."""

    values: tuple[Any, ...]

    def problem(self, value: Any) -> str | None:
        wrong = [v for v in (value if isinstance(value, list) else [value])
                 if not any(v == a and isinstance(v, bool) == isinstance(a, bool) for a in self.values)]
        return f"takes {', '.join(map(repr, self.values))}; got {', '.join(map(repr, wrong))}" if wrong else None


@dataclass(frozen=True)
class Interval:
    """A number from ``low`` (included when ``closed``) up to ``high`` (never included)."""

    low: float
    high: float = math.inf
    closed: bool = True

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None  # a kind, not a range: the runner checks kinds against the notebook's default
        if (self.low <= value if self.closed else self.low < value) and value < self.high:
            return None
        if self.high == math.inf:
            return f"must be {'positive' if self.low == 0 and not self.closed else f'at least {self.low:g}'}, got {value!r}"
        return f"must lie in {'[' if self.closed else '('}{self.low:g}, {self.high:g}), got {value!r}"


@dataclass(frozen=True)
class Matches:
    """One of ``values``, or text that matches ``pattern`` in full (a per-class metric, for one)."""

    values: tuple[str, ...]
    pattern: str
    said: str

    def problem(self, value: Any) -> str | None:
        if value in self.values or (isinstance(value, str) and re.fullmatch(self.pattern, value)):
            return None
        return f"takes {', '.join(self.values)} or {self.said}; got {value!r}"


#: Where chapters 01-03 train their runs, their ``engine`` parameter (:func:`xrayutils.cluster.engine` makes each).
ENGINES = ("auto", "local", "ray", "mirrored")
#: The optimizers ``keras.optimizers.get`` knows by name (a test holds this to Keras).
OPTIMIZERS = ("adadelta", "adafactor", "adagrad", "adam", "adamax", "adamw", "ftrl", "lion", "nadam", "rmsprop", "sgd")
#: The test metrics a leaderboard can rank by (:func:`xrayutils.evaluate.point_metrics`), besides the per-class ones.
METRICS = ("roc_auc", "balanced_accuracy", "accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
           "recall_weighted", "f1_weighted")
#: What ``weights`` takes besides a weights file or a folder of them (:func:`xrayutils.models.resolve_weights`).
WEIGHTS_CHOICES = ("auto", "imagenet", "none")

#: Above 0: sizes, counts and rates, for which 0 means nothing sensible (``max_images_per_class`` takes 0 for "all").
POSITIVE = Interval(0, closed=False)

#: Each constrained parameter of any chapter, by name.  A number is also never negative (the runner's rule for every number).
CONSTRAINTS: dict[str, Constraint] = {
    "optimizer": OneOf(OPTIMIZERS),
    "resnet34_optimizer": OneOf(OPTIMIZERS),
    "class_weight": OneOf(("none", "balanced")),
    "mixed_precision": OneOf(("auto", True, False, *precision.MIXED_POLICIES)),
    "jit_compile": OneOf(("auto", True, False)),
    "left_out_costs": OneOf(("measure", "stored", "none")),
    "model_names": OneOf(catalogue.CORONAHACK_CHOICES),
    "shortcut_chapters": OneOf(chapters.MODELLING),
    "engine": OneOf(ENGINES),
    "leaderboard_metric": Matches(METRICS, r"(precision|recall|f1)_\w+", "a per-class precision_/recall_/f1_<class>"),
    "validation_fraction": Interval(0.0, 1.0, closed=False),
    "border_fraction": Interval(0.0, 0.5, closed=False),
    "batchnorm_momentum": Interval(0.0, 1.0),
    "within_folds": Interval(2),
    "source_folds": Interval(2),
    **{name: POSITIVE for name in ("image_size", "batch_size", "num_epochs", "augmented_views", "bootstrap_resamples", "learning_rate",
                                   "timed_epochs", "repeats", "compute_steps", "calibration_bins", "tsne_perplexity", "hash_size",
                                   "histogram_bins")},
}


def problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the parameter ``name``, as a sentence naming it; ``None`` when nothing is or nothing is declared."""
    constraint = CONSTRAINTS.get(name)
    said = constraint.problem(value) if constraint is not None else None
    return f"{name} {said}" if said else None


def check(name: str, value: Any) -> None:
    """Raise ``ValueError`` with :func:`problem`'s sentence when ``value`` is not allowed for ``name``."""
    said = problem(name, value)
    if said:
        raise ValueError(said)
