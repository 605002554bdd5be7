"""A competition split read straight from its PNGs, one case-day in memory at a time (the notebook's reader:
no cache is written on Kaggle).

Two ways to read a split:

- strict (``PngVolumes(root, split)``): the slice table of :func:`~kaggle_kit.data.raw.discover_split`; any
  gap, duplicate, odd name or unreadable PNG raises ``DataError`` naming the file (the public run, the tools);
- tolerant (:func:`scan_split` + ``PngVolumes(..., tolerant=True)``): the hidden run's reader. A case-day
  keeps one row per slice number from its lowest to its highest, and a slice that cannot be used becomes a
  *hole* (``path`` None, ``hole`` the reason): missing from the numbering, duplicated, with a name that does
  not parse, of another size than the rest of its case-day, or (found on reading) an unreadable PNG. A hole
  reads as a copy of its nearest usable slice (the lower one on a tie): a neighbour's stack that reaches
  into it sees the nearest real slice, as the clamped stacks do past a volume's end, and the case-day's
  intensity scale (its 99.5th percentile) barely moves. The hole's own rows are the caller's to empty.
  Every problem is listed with the case-day and slice it costs.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.data.raw import DataError, check_data_root, discover_split, make_id, parse_slice_filename, read_slice_png
from kaggle_kit.data.volumes import load_image_volume

__all__ = ["PngVolumes", "scan_split"]

_CASE = re.compile(r"^case(\d+)$")
_DAY = re.compile(r"^case(\d+)_day(\d+)$")
_COLS = ["id", "case", "day", "case_day", "slice", "z", "height", "width", "spacing_x", "spacing_y", "path", "hole"]


def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def scan_split(root, split: str) -> tuple[pd.DataFrame, list[dict]]:
    """The tolerant slice table of ``root/split`` and its problems.

    Returns (slices, problems): ``slices`` has the columns of ``discover_split`` plus ``hole`` (None for a
    usable slice, else why it is not; ``path`` None then), one row per slice number of each case-day from
    its lowest to its highest (``z`` = slice - lowest), sorted by (case, day, slice); ``problems``: dicts
    ``{"unit": "slice" | "case_day" | "folder", "name", "reason"}``. A case-day with no usable slice, or a
    folder whose name does not parse, is left out of the table (its rows have no image)."""
    split_dir = check_data_root(root) / split
    rows, problems = [], []
    if not split_dir.is_dir():
        return pd.DataFrame(columns=_COLS), problems
    for case_dir in sorted((p for p in split_dir.iterdir() if p.is_dir()), key=lambda p: _natural(p.name)):
        if not _CASE.match(case_dir.name):
            problems.append({"unit": "folder", "name": str(case_dir), "reason": "folder name is not caseN"})
            continue
        for day_dir in sorted((p for p in case_dir.iterdir() if p.is_dir()), key=lambda p: _natural(p.name)):
            md = _DAY.match(day_dir.name)
            if not md or md.group(1) != _CASE.match(case_dir.name).group(1):
                problems.append({"unit": "folder", "name": str(day_dir),
                                 "reason": f"folder name is not {case_dir.name}_dayM"})
                continue
            rows += _scan_case_day(day_dir, int(md.group(1)), int(md.group(2)), problems)
    df = pd.DataFrame(rows, columns=_COLS)
    return df.sort_values(["case", "day", "slice"], kind="stable").reset_index(drop=True), problems


def _scan_case_day(day_dir: Path, case: int, day: int, problems: list) -> list[tuple]:
    cd = f"case{case}_day{day}"
    scans = day_dir / "scans"
    parsed = []
    for f in sorted(scans.glob("*.png")) if scans.is_dir() else []:
        try:
            parsed.append((parse_slice_filename(f), f))
        except DataError as e:
            problems.append({"unit": "file", "name": str(f), "reason": str(e)})
    if not parsed:
        problems.append({"unit": "case_day", "name": cd, "reason": f"{day_dir}: no usable slice PNGs under scans/"})
        return []
    geom, _ = Counter((p.width, p.height) for p, _ in parsed).most_common(1)[0]
    count = Counter(p.slice for p, _ in parsed)
    lo, hi = min(count), max(count)
    by_slice, spacing = {}, {}
    for p, f in parsed:
        spacing.setdefault(p.slice, (p.spacing_x, p.spacing_y))
        if (p.width, p.height) != geom:
            by_slice.setdefault(p.slice, f"{f.name}: size {p.width}x{p.height}, the case-day's is {geom[0]}x{geom[1]}")
        elif count[p.slice] > 1:
            by_slice[p.slice] = f"slice number {p.slice} appears {count[p.slice]} times"
        else:
            by_slice[p.slice] = f
    out, first = [], spacing[lo]
    for s in range(lo, hi + 1):
        got = by_slice.get(s, "missing from the slice numbering")
        hole = None if isinstance(got, Path) else got
        if hole:
            problems.append({"unit": "slice", "name": make_id(case, day, s), "reason": hole})
        sx, sy = first if hole else spacing[s]
        out.append((make_id(case, day, s), case, day, cd, s, s - lo, geom[1], geom[0], sx, sy,
                    None if hole else str(got), hole))
    return out


class PngVolumes:
    """A Cache look-alike over a competition split read from PNGs, one case-day in memory at a time.

    ``tolerant``: ``slices`` is a :func:`scan_split` table; an unreadable PNG becomes a hole
    (:attr:`unreadable`: id -> reason) instead of raising, and a hole reads as its nearest usable slice
    (:meth:`holes` lists them; a case-day without a usable slice reads as zeros)."""

    def __init__(self, data_root, split: str, slices: pd.DataFrame | None = None, tolerant: bool = False):
        self.split, self.tolerant = split, tolerant
        if slices is None:
            slices = scan_split(data_root, split)[0] if tolerant else discover_split(data_root, split)
        self.slices = slices
        self._index = self.slices.drop(columns=["path", "hole"], errors="ignore").assign(
            depth=self.slices.groupby("case_day")["z"].transform("size"))
        self._cd, self._img = None, None
        self.unreadable: dict[str, str] = {}

    def index(self, split: str) -> pd.DataFrame:
        return self._index

    def case_days(self, split: str | None = None) -> list[str]:
        return list(dict.fromkeys(self.slices["case_day"]))

    def image(self, split: str, case_day: str, mmap: bool = True) -> np.ndarray:
        """uint16 (D, H, W) of one case-day in slice order (tolerant: holes filled, see the class)."""
        if case_day != self._cd:
            g = self.slices[self.slices["case_day"] == case_day]
            self._img = self._read_tolerant(g) if self.tolerant else load_image_volume(g)
            self._cd = case_day
        return self._img

    def _read_tolerant(self, g: pd.DataFrame) -> np.ndarray:
        g = g.sort_values("slice")
        h, w = int(g["height"].iloc[0]), int(g["width"].iloc[0])
        vol = np.zeros((len(g), h, w), np.uint16)
        for z, (id_, path) in enumerate(zip(g["id"], g["path"])):
            if not isinstance(path, str) or id_ in self.unreadable:
                continue
            try:
                vol[z] = read_slice_png(path, (h, w))
            except DataError as e:
                self.unreadable[id_] = str(e)
        bad = set(self.holes(g["case_day"].iloc[0]))
        good = np.array([z for z in range(len(g)) if z not in bad])
        for z in sorted(bad) if len(good) else []:
            vol[z] = vol[good[np.argmin(np.abs(good - z))]]  # argmin: the lower one on a tie
        return vol

    def holes(self, case_day: str) -> dict[int, str]:
        """z -> reason for every slice of ``case_day`` no model may see (read the image first)."""
        g = self.slices[self.slices["case_day"] == case_day].sort_values("slice")
        out = {}
        for z, (id_, hole) in enumerate(zip(g["id"], g["hole"] if "hole" in g else [None] * len(g))):
            hole = hole if isinstance(hole, str) else None  # None or NaN in the table: a usable slice
            if hole or id_ in self.unreadable:
                out[z] = hole or self.unreadable[id_]
        return out

    def fingerprint(self) -> str:
        return ""
