"""A competition split read straight from its PNGs, one case-day in memory at a time (the notebook's reader:
no cache is written on Kaggle)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from kaggle_kit.data.raw import discover_split
from kaggle_kit.data.volumes import load_image_volume

__all__ = ["PngVolumes"]


class PngVolumes:
    """A Cache look-alike over a competition split read from PNGs, one case-day in memory at a time."""

    def __init__(self, data_root, split: str, slices: pd.DataFrame | None = None):
        self.split = split
        self.slices = discover_split(data_root, split) if slices is None else slices
        self._index = self.slices.drop(columns=["path"]).assign(
            depth=self.slices.groupby("case_day")["z"].transform("size"))
        self._cd, self._img = None, None

    def index(self, split: str) -> pd.DataFrame:
        return self._index

    def case_days(self, split: str | None = None) -> list[str]:
        return list(dict.fromkeys(self.slices["case_day"]))

    def image(self, split: str, case_day: str, mmap: bool = True) -> np.ndarray:
        if case_day != self._cd:
            self._img = load_image_volume(self.slices[self.slices["case_day"] == case_day])
            self._cd = case_day
        return self._img

    def fingerprint(self) -> str:
        return ""
