"""The cache: per case-day memory-mappable volumes, a slice index and the folds file.

Layout under CACHE::

    <split>/<case_day>/img.npy    uint16 (D, H, W), slice order
    <split>/<case_day>/mask.npy   uint8 (D, H, W) bit flags (labelled splits only)
    <split>/<case_day>/meta.json  written last: its presence + fingerprint mark the case-day complete
    <split>_index.csv             one row per slice (see INDEX_COLUMNS)
    folds.csv                     case,fold (written once; every family reads it)
    fingerprint.json              data fingerprint per split (goes into prediction manifests)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.utils import atomic_save_npy, atomic_write_json, atomic_write_text, progress, short_hash
from kaggle_kit.data.folds import FAULTY, make_folds
from kaggle_kit.data.raw import CLASSES, DataError, discover_split, labels_wide, load_labels
from kaggle_kit.data.volumes import load_image_volume, load_mask_volume

__all__ = ["Cache", "prepare_cache", "INDEX_COLUMNS"]

INDEX_COLUMNS = [
    "id", "case", "day", "case_day", "slice", "z", "depth", "height", "width", "spacing_x", "spacing_y",
    "labelled", *[f"has_{c}" for c in CLASSES], "first_anno", "last_anno", "faulty",
]


def _case_day_fingerprint(slices: pd.DataFrame, wide: pd.DataFrame | None) -> str:
    files = [(Path(p).name, Path(p).stat().st_size) for p in slices["path"]]
    labels = None if wide is None else wide.reindex(slices["id"]).fillna("").to_numpy().tolist()
    return short_hash(files, labels)


def _index_rows(slices: pd.DataFrame, mask: np.ndarray | None, faulty) -> pd.DataFrame:
    df = slices.drop(columns=["path"]).copy()
    df["depth"] = len(slices)
    df["labelled"] = mask is not None
    if mask is None:
        for c in CLASSES:
            df[f"has_{c}"] = 0
        df["first_anno"] = df["last_anno"] = 0
    else:
        # OR over the bit flags (a max would lose bit 0 wherever bit 1 shares the slice)
        flags = np.bitwise_or.reduce(mask.reshape(len(mask), -1), axis=1) if mask.size else np.zeros(len(mask), np.uint8)
        for bit, c in enumerate(CLASSES):
            df[f"has_{c}"] = ((flags >> bit) & 1).astype(np.uint8)
        annotated = np.flatnonzero(flags)
        s = df["slice"].to_numpy()
        df["first_anno"] = int(s[annotated[0]]) if annotated.size else 0
        df["last_anno"] = int(s[annotated[-1]]) if annotated.size else 0
    df["faulty"] = df["case_day"].isin(list(faulty))
    return df[INDEX_COLUMNS]


def prepare_cache(data_root, cache, splits=("train", "test"), labels: dict | None = None,
                  n_folds: int = 5, seed: int = 42, faulty=FAULTY, refold: bool = False) -> dict:
    """Build (or complete) the cache for ``splits`` of a competition folder; returns a summary dict.

    ``labels`` maps split -> label CSV (default: ``train.csv`` for ``train``; no labels for others).
    Case-days whose meta.json carries the current fingerprint are skipped, so re-running resumes.
    """
    data_root, cache = Path(data_root), Path(cache)
    labels = {"train": data_root / "train.csv"} if labels is None else {k: Path(v) for k, v in labels.items()}
    summary = {}
    fingerprints = {}
    for split in splits:
        slices = discover_split(data_root, split)
        wide = None
        if split in labels and labels[split].is_file():
            lab = load_labels(labels[split])
            known = set(slices["id"])
            orphan = sorted(set(lab["id"]) - known)
            if orphan:
                raise DataError(f"{labels[split]}: {len(orphan)} id(s) have no image in {split}/, e.g. {orphan[:5]}")
            wide = labels_wide(lab)
        elif split == "train":
            raise DataError(f"{labels.get(split, data_root / 'train.csv')}: label file not found for split 'train'")
        written = skipped = 0
        parts = []
        groups = list(slices.groupby("case_day", sort=False))
        for case_day, cd in progress(groups, desc=f"cache {split}", unit="case-day"):
            out = cache / split / case_day
            fp = _case_day_fingerprint(cd, wide)
            meta_path = out / "meta.json"
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
            if meta and meta.get("fingerprint") == fp:
                mask = np.load(out / "mask.npy", mmap_mode="r") if wide is not None else None
                skipped += 1
            else:
                meta_path.unlink(missing_ok=True)  # invalidate before touching the arrays
                img = load_image_volume(cd)
                mask = load_mask_volume(cd, wide) if wide is not None else None
                atomic_save_npy(out / "img.npy", img)
                if mask is not None:
                    atomic_save_npy(out / "mask.npy", mask)
                atomic_write_json(meta_path, {"fingerprint": fp, "shape": list(img.shape), "labelled": mask is not None})
                written += 1
            parts.append(_index_rows(cd, None if mask is None else np.asarray(mask), faulty))
            fingerprints[f"{split}/{case_day}"] = fp
        index = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=INDEX_COLUMNS)
        with_csv = cache / f"{split}_index.csv"
        atomic_write_text(with_csv, index.to_csv(index=False))
        summary[split] = {"case_days": len(groups), "slices": len(index), "written": written, "skipped": skipped}
        if split == "train" and len(index):
            folds_path = cache / "folds.csv"
            cases = sorted(index["case"].unique())
            if folds_path.is_file() and not refold:
                old = pd.read_csv(folds_path)
                if sorted(old["case"]) != cases:
                    raise DataError(f"{folds_path}: its cases differ from the data's; pass refold=True (--refold) to rebuild")
            else:
                atomic_write_text(folds_path, make_folds(index, n_folds, seed).to_csv(index=False))
    atomic_write_json(cache / "fingerprint.json", {"case_days": fingerprints, "data": short_hash(sorted(fingerprints.items()))})
    return summary


class Cache:
    """Read access to a prepared cache (memory-mapped volumes, index, folds)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: cache not found; build it with tools/prepare.py")

    def index(self, split: str = "train") -> pd.DataFrame:
        p = self.root / f"{split}_index.csv"
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no index for split {split!r}; run tools/prepare.py")
        return pd.read_csv(p)

    def folds(self) -> pd.DataFrame:
        p = self.root / "folds.csv"
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no folds file; run tools/prepare.py")
        return pd.read_csv(p)

    def fold_of_case(self) -> dict[int, int]:
        f = self.folds()
        return dict(zip(f["case"].astype(int), f["fold"].astype(int)))

    def case_days(self, split: str = "train") -> list[str]:
        return list(dict.fromkeys(self.index(split)["case_day"]))

    def fingerprint(self) -> str:
        p = self.root / "fingerprint.json"
        return json.loads(p.read_text())["data"] if p.is_file() else ""

    def image(self, split: str, case_day: str, mmap: bool = True) -> np.ndarray:
        """uint16 (D, H, W)."""
        return np.load(self._complete(split, case_day) / "img.npy", mmap_mode="r" if mmap else None)

    def mask(self, split: str, case_day: str, mmap: bool = True) -> np.ndarray:
        """uint8 (D, H, W) bit flags."""
        p = self._complete(split, case_day) / "mask.npy"
        if not p.is_file():
            raise FileNotFoundError(f"{p}: split {split!r} has no labels in the cache")
        return np.load(p, mmap_mode="r" if mmap else None)

    def _complete(self, split: str, case_day: str) -> Path:
        d = self.root / split / case_day
        if not (d / "meta.json").is_file():
            raise FileNotFoundError(f"{d}: case-day missing or incomplete in the cache; run tools/prepare.py")
        return d
