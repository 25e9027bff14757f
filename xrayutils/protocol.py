"""A modelling chapter's training settings as one typed object, written once and read back whole.

Chapters 01-03 build a :class:`TrainingProtocol` from their parameters cell
(:meth:`TrainingProtocol.from_parameters`), train with it
(:func:`xrayutils.jobs.train_and_test`) and record it in their results file;
chapter 04, the benchmark and the model cards rebuild it from there
(:meth:`TrainingProtocol.from_results`) instead of re-reading settings by name.
Every field has the name of the notebook parameter it comes from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xrayutils import constraints

#: The published ``ImageDataGenerator`` settings of each study, as :func:`xrayutils.augmentations.augmentation` options.
PUBLISHED_AUGMENTATION: dict[str, dict[str, Any]] = {
    "class-challenge": dict(rotation_degrees=50, shift=0.2, shear_degrees=0.25, zoom=0.1, channel_shift=20, flips=True),
    "coronahack": dict(
        rotation_degrees=0, shift=0.1, shear_degrees=0, zoom=0.1, channel_shift=0, brightness_range=(0.5, 1.3), flips=False
    ),
}


@dataclass(frozen=True)
class TrainingProtocol:
    """How a chapter trains its models: data split, image size, optimiser, epochs, augmentation, speed switches.

    ``study`` (``"class-challenge"`` or ``"coronahack"``) names the reproduced
    study, which decides the model heads (:func:`xrayutils.models.build`) and the
    published augmentation used when ``augment`` is on.  ``resnet34_optimizer``
    is chapter 03's: the study trained its ResNet34 with Adam, the backbones with
    Adamax (:meth:`for_model`).

    ``seed`` draws the split (and the images kept by ``max_images_per_class``);
    ``seeds`` are the training seeds: each model trains once per seed
    (:meth:`for_seed`), which changes its initial weights (all of them when it
    starts from random weights, the head's on ImageNet ones), the augmentation
    drawn (cached views included) and the order of the batches, never the split.
    Empty ``seeds`` train once, with ``seed``.  ``class_weight="balanced"``
    weighs each image by the inverse of its class's share of the training images
    (scikit-learn's rule), in the training and the validation loss, so that a 2:1
    imbalance makes "always the larger class" neither the easiest minimum of the
    loss nor the epoch kept.  ``batchnorm_momentum`` replaces the momentum of
    every batch-normalisation layer (``None`` keeps the models' own, Keras' 0.99):
    a network trained from random weights for a few hundred steps keeps, at 0.99,
    much of its initial moving statistics, and then predicts one class at test
    time however well it trained.  ``model_settings`` changes settings for one
    model (:meth:`for_model`), e.g. ``{"AlexNet": {"num_epochs": 10}}``: a network
    trained whole from scratch may need a shorter run than a cached head beside it.
    ``fine_tune=False`` freezes chapter 03's backbones (a linear probe of their
    features, each image's encoding computed once); the published protocol trains them whole.
    """

    study: str
    image_size: int
    batch_size: int
    num_epochs: int
    optimizer: str
    learning_rate: float
    validation_fraction: float
    seed: int
    weights: str = "auto"
    augment: bool = True
    cache_features: bool = False
    augmented_views: int = 1
    fine_tune: bool = True
    mixed_precision: bool | str = False
    jit_compile: bool | str = "auto"
    max_images_per_class: int = 0
    resnet34_optimizer: str | None = None
    seeds: tuple[int, ...] = ()
    class_weight: str = "none"
    batchnorm_momentum: float | None = None
    model_settings: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))  # a list from a notebook or a results file
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must differ from one another, got {list(self.seeds)}")
        for field in dataclasses.fields(self):  # what the runner checks before a build (xrayutils.constraints), for a chapter run alone
            if getattr(self, field.name) is not None:  # None: an optional setting not given
                constraints.check(field.name, getattr(self, field.name))
        shared = {"study", "model_settings", "seed", "seeds", "validation_fraction", "max_images_per_class", "weights"}  # one split
        settings = {f.name for f in dataclasses.fields(self)} - shared
        for model, changes in self.model_settings.items():
            unknown = set(changes) - settings
            if unknown:
                raise ValueError(f"model_settings[{model!r}] names no training setting: {sorted(unknown)} (settings: {sorted(settings)})")
        if self.study not in PUBLISHED_AUGMENTATION:
            raise ValueError(f"study must be one of {sorted(PUBLISHED_AUGMENTATION)}, got {self.study!r}")

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any], *, study: str) -> TrainingProtocol:
        """The protocol a chapter's parameters describe; parameters that are not training settings are ignored."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(study=study, **{name: value for name, value in parameters.items() if name in fields})

    @classmethod
    def from_results(cls, saved: Mapping[str, Any]) -> TrainingProtocol:
        """The protocol recorded in a chapter's results file (``{"provenance", "results"}``)."""
        if "protocol" not in saved.get("results", {}):
            chapter = saved.get("provenance", {}).get("chapter", "this chapter")
            raise ValueError(f"the results of {chapter} record no training protocol: rerun {chapter}")
        return cls(**saved["results"]["protocol"])

    def to_dict(self) -> dict[str, Any]:
        """Every field, for the results file."""
        return dataclasses.asdict(self)

    def for_model(self, name: str) -> TrainingProtocol:
        """The protocol ``name`` trains with: its ``model_settings``, and for chapter 03's ResNet34 ``resnet34_optimizer``."""
        changes = dict(self.model_settings.get(name, {}))
        if name == "ResNet34" and self.resnet34_optimizer:
            changes.setdefault("optimizer", self.resnet34_optimizer)
        return dataclasses.replace(self, **changes) if changes else self

    @property
    def training_seeds(self) -> list[int]:
        """The seeds each model trains with: ``seeds``, or ``[seed]`` when none are given."""
        return list(self.seeds) or [self.seed]

    def for_seed(self, seed: int) -> TrainingProtocol:
        """The protocol of one training run: ``seed`` for initial weights, augmentation and order.

        The split was drawn before, with the chapter's own ``seed``
        (:func:`xrayutils.train.load_split`); training code reads ``seed`` only for
        what a training seed changes.
        """
        return dataclasses.replace(self, seed=seed, seeds=(seed,))

    def class_weights(self, labels: Sequence[int], num_classes: int) -> dict[int, float] | None:
        """Keras' ``class_weight`` for training labels ``labels``: ``n / (classes * count)`` each, or ``None``.

        A class absent from ``labels`` gets weight 1 (it contributes nothing anyway).
        """
        if self.class_weight == "none":
            return None
        counts = np.bincount(np.asarray(labels, dtype=int), minlength=num_classes)
        return {c: float(len(labels) / (num_classes * n)) if n else 1.0 for c, n in enumerate(counts)}

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    def augmentation_options(self) -> dict[str, Any] | None:
        """The study's published augmentation (:func:`xrayutils.augmentations.augmentation` options), ``None`` with ``augment`` off."""
        return PUBLISHED_AUGMENTATION[self.study] if self.augment else None
