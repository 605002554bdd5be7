"""Parsing of the competition folder: slice file names, split discovery, train.csv.

Layout: ``<split>/caseN/caseN_dayM/scans/slice_SSSS_W_H_PW_PH.png`` (16-bit grayscale). In the name the
FIRST number after the slice index is the WIDTH: ``slice_0001_360_310_1.50_1.50.png`` is (310, 360).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.utils import UserError

__all__ = [
    "CLASSES", "SliceName", "parse_slice_filename", "parse_id", "make_id", "discover_split",
    "load_labels", "labels_wide", "read_slice_png", "DataError", "check_data_root",
]

# train.csv order of classes per slice; bit i of a cached mask is CLASSES[i].
CLASSES: tuple[str, ...] = ("large_bowel", "small_bowel", "stomach")

_SLICE_RE = re.compile(r"^slice_(\d+)_(\d+)_(\d+)_(\d+(?:\.\d+)?)_(\d+(?:\.\d+)?)\.png$")
_ID_RE = re.compile(r"^case(\d+)_day(\d+)_slice_(\d+)$")
_CASE_RE = re.compile(r"^case(\d+)$")
_DAY_RE = re.compile(r"^case(\d+)_day(\d+)$")


class DataError(UserError, ValueError):
    """Bad competition data; the message names the file, row or id."""


@dataclass(frozen=True)
class SliceName:
    slice: int
    width: int
    height: int
    spacing_x: float
    spacing_y: float


def parse_slice_filename(name: str | Path) -> SliceName:
    """Parse ``slice_0001_360_310_1.50_1.50.png`` -> SliceName(1, width=360, height=310, 1.5, 1.5)."""
    base = Path(name).name
    m = _SLICE_RE.match(base)
    if not m:
        raise DataError(
            f"{name}: file name does not parse; expected slice_SSSS_W_H_PW_PH.png "
            "(e.g. slice_0001_266_266_1.50_1.50.png)"
        )
    s, w, h, px, py = m.groups()
    if int(w) < 1 or int(h) < 1:
        raise DataError(f"{name}: width and height must be positive")
    return SliceName(int(s), int(w), int(h), float(px), float(py))


def make_id(case: int, day: int, slice_: int) -> str:
    return f"case{case}_day{day}_slice_{slice_:04d}"


def parse_id(id_: str) -> tuple[int, int, int]:
    """``case123_day20_slice_0065`` -> (123, 20, 65)."""
    m = _ID_RE.match(str(id_))
    if not m:
        raise DataError(f"id {id_!r} does not parse; expected caseN_dayM_slice_SSSS")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


_ROOT_MARKERS = ("train", "test", "train.csv", "test.csv", "sample_submission.csv")


def check_data_root(root: str | Path) -> Path:
    """``root`` as a Path; DataError when it is not a competition folder (missing, a file, or none of
    train/, test/, train.csv, test.csv, sample_submission.csv in it): a typo must not read as "no test data"."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: data root not found; pass the competition folder (with train/, test/, train.csv)")
    if not root.is_dir():
        raise DataError(f"{root}: data root is a file, not a folder; pass the competition folder")
    if not any((root / m).exists() for m in _ROOT_MARKERS):
        raise DataError(f"{root}: not a competition folder (none of {', '.join(_ROOT_MARKERS)} in it); "
                        "pass the folder that holds them")
    return root


def discover_split(root: str | Path, split: str = "train") -> pd.DataFrame:
    """Slice table of ``root/split``: one row per PNG, sorted by (case, day, slice).

    Columns: id, case, day, case_day ("caseN_dayM"), slice, z (0-based position in the case-day),
    height, width, spacing_x, spacing_y, path. An empty or missing folder gives an empty table (the
    public notebook run has no test images), but ``root`` itself must be a competition folder
    (``check_data_root``). Raises DataError naming the offender for a file name that does not parse, a
    case-day with mixed geometry, a missing slice number or a duplicated one.
    """
    split_dir = check_data_root(root) / split
    cols = ["id", "case", "day", "case_day", "slice", "z", "height", "width", "spacing_x", "spacing_y", "path"]
    if not split_dir.is_dir():
        return pd.DataFrame(columns=cols)
    rows = []
    for case_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        mc = _CASE_RE.match(case_dir.name)
        if not mc:
            raise DataError(f"{case_dir}: folder name is not caseN")
        for day_dir in sorted(p for p in case_dir.iterdir() if p.is_dir()):
            md = _DAY_RE.match(day_dir.name)
            if not md or md.group(1) != mc.group(1):
                raise DataError(f"{day_dir}: folder name is not {case_dir.name}_dayM")
            case, day = int(md.group(1)), int(md.group(2))
            scans = day_dir / "scans"
            files = sorted(scans.glob("*.png")) if scans.is_dir() else []
            if not files:
                raise DataError(f"{day_dir}: no slice PNGs under scans/")
            parsed = [(parse_slice_filename(f), f) for f in files]
            parsed.sort(key=lambda t: t[0].slice)
            geoms = {(p.width, p.height) for p, _ in parsed}
            if len(geoms) > 1:
                raise DataError(f"{day_dir}: slices of different sizes {sorted(geoms)}")
            numbers = [p.slice for p, _ in parsed]
            dup = sorted({n for n in numbers if numbers.count(n) > 1})
            if dup:
                raise DataError(f"{day_dir}: slice number(s) {dup} appear more than once")
            expected = range(numbers[0], numbers[0] + len(numbers))
            if numbers != list(expected):
                missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
                raise DataError(f"{day_dir}: missing slice(s) {missing[:10]} (slices must be contiguous)")
            for z, (p, f) in enumerate(parsed):
                rows.append((make_id(case, day, p.slice), case, day, f"case{case}_day{day}", p.slice, z,
                             p.height, p.width, p.spacing_x, p.spacing_y, str(f)))
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values(["case", "day", "slice"], kind="stable").reset_index(drop=True)


def load_labels(path: str | Path) -> pd.DataFrame:
    """Read train.csv (``id,class,segmentation``); empty segmentation -> "". Validates ids and classes."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: label file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (0 bytes or no header); expected the header id,class,segmentation "
                        "and one row per (slice, class)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({' '.join(str(e).split())[:200]}); expected "
                        "id,class,segmentation") from None
    missing = {"id", "class", "segmentation"} - set(df.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}; expected id,class,segmentation")
    bad_cls = ~df["class"].isin(CLASSES)
    if bad_cls.any():
        i = int(np.flatnonzero(bad_cls)[0])
        raise DataError(f"{path}: row {i + 2} has unknown class {df['class'].iloc[i]!r}; expected {CLASSES}")
    for i, id_ in enumerate(df["id"]):
        if not _ID_RE.match(id_):
            raise DataError(f"{path}: row {i + 2} id {id_!r} does not parse (caseN_dayM_slice_SSSS)")
    dup = df.duplicated(["id", "class"])
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"{path}: row {i + 2} duplicates ({df['id'].iloc[i]}, {df['class'].iloc[i]})")
    df["segmentation"] = df["segmentation"].fillna("").str.strip()
    return df[["id", "class", "segmentation"]]


def labels_wide(labels: pd.DataFrame, value: str = "segmentation") -> pd.DataFrame:
    """One row per id, one column per class (missing (id, class) pairs -> "")."""
    wide = labels.pivot(index="id", columns="class", values=value)
    wide = wide.reindex(columns=list(CLASSES)).fillna("")
    wide.columns.name = None
    return wide


def read_slice_png(path: str | Path, expect_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read one 16-bit grayscale slice as uint16 (H, W); DataError naming the file otherwise."""
    import cv2  # local: opencv is heavy and only needed when pixels are read

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{path}: unreadable PNG")
    if img.ndim != 2:
        raise DataError(f"{path}: expected a single-channel grayscale PNG, got shape {img.shape}")
    if img.dtype != np.uint16:
        raise DataError(f"{path}: expected a 16-bit PNG, got {img.dtype} (the competition images are 16-bit)")
    if expect_hw is not None and img.shape != tuple(expect_hw):
        raise DataError(f"{path}: image shape {img.shape} does not match (H, W)={tuple(expect_hw)} from its name")
    return img
