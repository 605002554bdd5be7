"""The family contract: what every model family gives the tools, the notebook and the bundle.

A family is a sub-package ``kaggle_kit/families/<name>/`` whose ``api.py`` defines ``family``, a
:class:`Family`. The registry finds families by that file alone (:mod:`kaggle_kit.registry`), so adding a
family edits no other module. ``api.py`` must stay cheap to import (no torch at module top): the heavy
modules of the family are imported inside its functions.

Families import only ``data``, ``io``, ``metric``, ``engine``, ``post``, ``losses`` and this module, never a
sibling family (a test walks the imports). What two families share (the 2.5D input pipeline, the box tables)
lives in ``data/`` or ``io/``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = ["Family", "KINDS", "Predictor", "VolumeSource"]

#: what a family's maps are: pixel (D, C, H, W), classifier (D, C), boxes (a box table per case-day)
KINDS = ("pixel", "classifier", "boxes")


@runtime_checkable
class VolumeSource(Protocol):
    """Where predictors read images from: the training cache (:class:`kaggle_kit.data.cache.Cache`) or the
    notebook's PNG reader (:class:`kaggle_kit.data.png_volumes.PngVolumes`)."""

    def index(self, split: str) -> pd.DataFrame:
        """The slice table of ``split`` (columns case_day, z, slice, height, width, ...)."""

    def case_days(self, split: str | None = None) -> list[str]:
        """Case-day names of ``split`` in a stable order."""

    def image(self, split: str, case_day: str, mmap: bool = True) -> np.ndarray:
        """uint16 (D, H, W), raw geometry, slice order."""

    def fingerprint(self) -> str:
        """A short hash of the data the volumes come from."""


@runtime_checkable
class Predictor(Protocol):
    """A loaded model: ``pred(volumes, split, case_day, **kw)`` -> float32 (D, C, H, W) for pixel families,
    float32 (D, C) for classifiers, a box table (DataFrame: z, y0, y1, x0, x1, score, detected) for detectors;
    always raw geometry and slice order. Crop families take ``boxes=`` (the case-day's box table)."""

    def __call__(self, volumes: VolumeSource, split: str, case_day: str, **kw): ...


@dataclass(frozen=True)
class Family:
    """One model family as the tools see it.

    Attributes:
        name: registry name (the sub-package name).
        kind: one of :data:`KINDS`.
        train: ``train(cfg, fold, exp, resume=False) -> work_dir``.
        predict: ``predict(cfg, exp, split, folds=None) -> summary dict`` (writes the probability-map store
            or the box table).
        make_predictor: ``make_predictor(ckpt_path, tta="none", batch_size=..., device=None, **settings)``
            -> :class:`Predictor`; loads with ``weights_only=True``, needs no YAML.
        predictor_settings: ``predictor_settings(cfg) -> dict``, the keyword arguments of ``make_predictor``
            (``tta``, ``batch_size`` and the family's own) from the config's ``predict`` section: the one source
            of both ``predict()``'s predictors and the notebook's (recorded verbatim in the maps' manifest and
            the bundle). A ``predict`` key that changes the outputs goes here or is named in ``predict_elsewhere``.
        predict_elsewhere: ``{predict key: where it is used}`` for the keys that are not predictor settings
            (``checkpoint``: which fold file the manifest and the bundle name; report-only keys).
        runtime_deps: ``runtime_deps(model_cfg) -> tuple of pip distribution names`` the family's inference
            needs beyond torch / torchvision and kaggle_kit's own dependencies (what a bundle must carry for a
            member; ``model_cfg`` is the ``model`` section stored in the checkpoint meta).
        val_metric: what the training loop validates with (the ``val/`` keys logged each epoch).
        loss_terms: the loss terms the training loop logs (``loss_<term>``).
    """

    name: str
    kind: str
    train: Callable
    predict: Callable
    make_predictor: Callable[..., Predictor]
    predictor_settings: Callable[[Mapping], dict]
    predict_elsewhere: Mapping[str, str]
    runtime_deps: Callable[[Mapping], tuple[str, ...]]
    val_metric: str
    loss_terms: tuple[str, ...]
    doc: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"family {self.name!r}: kind {self.kind!r} not in {KINDS}")

    @property
    def package(self) -> Path:
        return Path(__file__).parent / self.name
