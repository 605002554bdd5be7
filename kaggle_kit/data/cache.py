"""The cache: per case-day memory-mappable volumes, a slice index and the folds file.

Layout under CACHE::

    <split>/<case_day>/img.npy    uint16 (D, H, W), slice order
    <split>/<case_day>/mask.npy   uint8 (D, H, W) bit flags (labelled splits only)
    <split>/<case_day>/meta.json  written last: its presence + fingerprint mark the case-day complete
    <split>_index.csv             one row per slice (see INDEX_COLUMNS)
    folds.csv                     case,fold (written once; every family reads it)
    fingerprint.json              data fingerprint per case-day of every prepared split (goes into
                                  prediction manifests); a run on some splits keeps the others' entries

A case-day's fingerprint covers its PNGs' names, sizes and modification times (``content_hash=True``: their
bytes too) and its label rows, so a changed image or label re-caches it on the next run.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.utils import (atomic_save_npy, did_you_mean, atomic_write_json, atomic_write_text, progress, remove_stale_temps,
                              short_hash)
from kaggle_kit.data.folds import FAULTY, make_folds
from kaggle_kit.data.raw import CLASSES, DataError, check_data_root, discover_split, labels_wide, load_labels
from kaggle_kit.data.volumes import load_image_volume, load_mask_volume

__all__ = ["Cache", "prepare_cache", "check_folds", "INDEX_COLUMNS"]

INDEX_COLUMNS = [
    "id", "case", "day", "case_day", "slice", "z", "depth", "height", "width", "spacing_x", "spacing_y",
    "labelled", *[f"has_{c}" for c in CLASSES], "first_anno", "last_anno", "faulty",
]


KNOWN_SPLITS = ("train", "test")


def _file_hash(path: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _case_day_fingerprint(slices: pd.DataFrame, wide: pd.DataFrame | None, content_hash: bool = False) -> str:
    """Names, sizes and mtimes (ns) of the case-day's PNGs (+ their bytes' hash) and its label rows."""
    files = []
    for p in slices["path"]:
        st = Path(p).stat()
        files.append((Path(p).name, st.st_size, st.st_mtime_ns) + ((_file_hash(p),) if content_hash else ()))
    labels = None if wide is None else wide.reindex(slices["id"]).fillna("").to_numpy().tolist()
    return short_hash(files, labels)


def _check_splits(data_root: Path, splits) -> None:
    """A split is train, test or a folder that exists under the data root; a typo fails with a suggestion."""
    for split in splits:
        if split in KNOWN_SPLITS or (data_root / split).is_dir():
            continue
        options = sorted(set(KNOWN_SPLITS) | {p.name for p in data_root.iterdir() if p.is_dir()})
        hint = did_you_mean(split, options)
        raise DataError(f"{data_root}: no split folder {split!r}; {hint}")


def check_folds(cache: str | Path, folds, what: str = "fold") -> list:
    """``folds`` (ints and/or "all") checked against the cache's folds.csv; DataError naming the file and the
    valid range otherwise. Returns the list unchanged."""
    p = Path(cache) / "folds.csv"
    if not p.is_file():
        raise DataError(f"{p}: no folds file; build the cache with tools/prepare.py first")
    have = sorted(int(f) for f in pd.read_csv(p)["fold"].unique())
    for f in folds:
        if f == "all":
            continue
        if isinstance(f, str) and f.strip().isdigit():
            f = int(f)
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or int(f) not in have:
            raise DataError(f"{what} {f!r} does not exist: {p} has folds {have[0]}..{have[-1]}; pass one of "
                            f"{have} (or 'all'), or rebuild the cache with tools/prepare.py --folds N --refold")
    return list(folds)


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
                  n_folds: int | None = None, seed: int = 42, faulty=FAULTY, refold: bool = False,
                  content_hash: bool = False) -> dict:
    """Build (or complete) the cache for ``splits`` of a competition folder; returns a summary dict.

    ``labels`` maps split -> label CSV (default: ``train.csv`` for ``train``; no labels for others).
    Case-days whose meta.json carries the current fingerprint are skipped, so re-running resumes; temp
    files a killed run left in the cache are removed. ``n_folds``: folds of a new folds.csv (default 5);
    an existing folds.csv with another number is an error unless ``refold``. ``content_hash``: the
    fingerprint also hashes every PNG's bytes (reads the whole data set on each run).
    """
    data_root, cache = check_data_root(data_root), Path(cache)
    _check_splits(data_root, splits)
    if cache.exists() and not cache.is_dir():
        raise DataError(f"{cache}: cache path is a file; pass a folder")
    remove_stale_temps(cache, recursive=True)
    folds_path = cache / "folds.csv"
    if folds_path.is_file() and not refold and n_folds is not None and "train" in splits:
        have = pd.read_csv(folds_path)["fold"].nunique()
        if have != n_folds:
            raise DataError(f"{folds_path}: the cache has {have} folds, {n_folds} were asked for; pass --folds "
                            f"{have}, or --refold to rebuild the folds (models trained on the old folds are then "
                            "not comparable)")
    n_folds = 5 if n_folds is None else n_folds
    labels = {"train": data_root / "train.csv"} if labels is None else {k: Path(v) for k, v in labels.items()}
    summary = {}
    fp_path = cache / "fingerprint.json"
    old_fps = json.loads(fp_path.read_text()).get("case_days", {}) if fp_path.is_file() else {}
    fingerprints = {k: v for k, v in old_fps.items() if k.split("/", 1)[0] not in splits}
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
            fp = _case_day_fingerprint(cd, wide, content_hash)
            meta_path = out / "meta.json"
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
            if meta and meta.get("fingerprint") == fp:
                mask = np.load(out / "mask.npy", mmap_mode="r") if wide is not None else None
                skipped += 1
            else:
                meta_path.unlink(missing_ok=True)  # invalidate before touching the arrays
                img = load_image_volume(cd)
                mask = load_mask_volume(cd, wide, labels.get(split)) if wide is not None else None
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
            cases = sorted(index["case"].unique())
            if folds_path.is_file() and not refold:
                old = pd.read_csv(folds_path)
                if sorted(old["case"]) != cases:
                    raise DataError(f"{folds_path}: its cases differ from the data's ({data_root}); this cache was "
                                    "built from other data: use another --cache, or pass --refold to rebuild")
            else:
                atomic_write_text(folds_path, make_folds(index, n_folds, seed).to_csv(index=False))
    atomic_write_json(fp_path, {"case_days": fingerprints, "data": short_hash(sorted(fingerprints.items()))})
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
