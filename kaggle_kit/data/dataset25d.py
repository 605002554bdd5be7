"""2.5D slice datasets read from the cache (memory-mapped volumes).

A sample is a stack of ``k`` slices around (``centered``: offsets -k//2..k//2 times ``stride``; the 1st
place used k=3, stride 2: [i-2, i, i+2]) or after (``forward``: [i, i+s, ..., i+(k-1)s]; the public
baseline) the target slice, clamped to the volume or zero-filled at the ends; normalised (per volume by a
high percentile, or per slice by its max), cropped (optional box) and mapped to the training canvas
through a :class:`~kaggle_kit.data.geometry.SliceGeometry` whose inverse puts predictions back in raw
geometry.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from kaggle_kit.data.bitmask import bits_to_channels
from kaggle_kit.data.cache import Cache, check_folds
from kaggle_kit.data.folds import FAULTY, select_subset
from kaggle_kit.data.geometry import SliceGeometry
from kaggle_kit.data.raw import CLASSES

__all__ = ["StackSpec", "stack_indices", "normalise", "shift_organs", "body_box", "SliceDataset25D", "fold_case_days", "BOX_SCOPES",
           "union_boxes_per_case_day", "expand_box", "process_key"]


@dataclass(frozen=True)
class StackSpec:
    k: int = 3
    stride: int = 2
    mode: str = "centered"  # centered | forward
    ends: str = "clamp"  # clamp | zero

    def offsets(self) -> np.ndarray:
        if self.mode == "centered":
            return (np.arange(self.k) - self.k // 2) * self.stride
        if self.mode == "forward":
            return np.arange(self.k) * self.stride
        raise KeyError(f"unknown stack mode {self.mode!r}; options: ['centered', 'forward']")


def stack_indices(z: int, depth: int, spec: StackSpec) -> tuple[np.ndarray, np.ndarray]:
    """Slice positions of the stack of target ``z`` and a validity mask (False = zero-filled)."""
    idx = z + spec.offsets()
    valid = (idx >= 0) & (idx < depth)
    if spec.ends == "clamp":
        return np.clip(idx, 0, depth - 1), np.ones_like(valid)
    if spec.ends == "zero":
        return np.clip(idx, 0, depth - 1), valid
    raise KeyError(f"unknown stack ends {spec.ends!r}; options: ['clamp', 'zero']")


def shift_organs(x: np.ndarray, bits: np.ndarray, shift, top: float) -> np.ndarray:
    """float32 (H, W) normalised slice with class c's pixels (bit c of ``bits`` (H, W)) moved by ``shift[c]``,
    clipped to [0, top]; a copy."""
    out = x.astype(np.float32, copy=True)
    for c, d in enumerate(shift):
        if d:
            out[(bits >> c) & 1 > 0] += np.float32(d)
    return np.clip(out, 0.0, top)


def volume_scale(img: np.ndarray, pct: float = 99.5) -> float:
    """Intensity scale of a volume: its ``pct`` percentile over a strided sample of voxels (>= 1)."""
    sample = np.asarray(img[:, ::4, ::4], dtype=np.float32)
    return max(float(np.percentile(sample, pct)), 1.0)


#: the top of each normalisation's range (``volume`` clips there; ``slice`` divides by the max)
NORM_TOP = {"volume": 1.5, "slice": 1.0}


def normalise(stack: np.ndarray, norm: str, vscale: float | None = None) -> np.ndarray:
    """uint16 (k, H, W) -> float32 (k, H, W). ``volume``: / volume percentile, clipped to [0, 1.5];
    ``slice``: each slice / its own max (the public notebooks' way)."""
    x = stack.astype(np.float32)
    if norm == "volume":
        return np.clip(x / float(vscale), 0.0, NORM_TOP["volume"])
    if norm == "slice":
        m = x.reshape(len(x), -1).max(1)
        return x / np.maximum(m, 1.0)[:, None, None]
    raise KeyError(f"unknown normalisation {norm!r}; options: ['volume', 'slice']")


def expand_box(box, hw: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """Grow a box (y0, y1, x0, x1) by ``margin`` x (H, W) on each side (rounded up), clipped to the image."""
    y0, y1, x0, x1 = box
    H, W = hw
    my, mx = int(np.ceil(margin * H)), int(np.ceil(margin * W))
    return max(0, y0 - my), min(H, y1 + my), max(0, x0 - mx), min(W, x1 + mx)


def body_box(img: np.ndarray, margin: float = 0.05, frac: float = 0.1) -> tuple[int, int, int, int]:
    """Box (y0, y1, x0, x1) around the body of a whole volume: pixels above ``frac`` of the volume scale on
    the max projection, with a relative margin; the full image when nothing is found."""
    D, H, W = img.shape
    proj = np.asarray(img[:: max(1, D // 16)]).max(0).astype(np.float32)
    on = proj > frac * volume_scale(img)
    if not on.any():
        return 0, H, 0, W
    ys, xs = np.flatnonzero(on.any(1)), np.flatnonzero(on.any(0))
    my, mx = int(margin * H), int(margin * W)
    return max(0, ys[0] - my), min(H, ys[-1] + 1 + my), max(0, xs[0] - mx), min(W, xs[-1] + 1 + mx)


def process_key() -> tuple[int, int, int]:
    """(rank, DataLoader worker id + 1, that worker's torch seed) of this process; (rank, 0, 0) outside workers.
    The torch seed differs per epoch when workers are not persistent, and follows torch's seed."""
    rank = int(os.environ.get("RANK", 0) or 0)
    torch = sys.modules.get("torch")  # no DataLoader worker without torch imported
    info = torch.utils.data.get_worker_info() if torch is not None else None
    return (rank, 0, 0) if info is None else (rank, int(info.id) + 1, int(info.seed))


def fold_case_days(cache: Cache, fold: int | str, part: str) -> list[str]:
    """Case-days of the train split for ``part`` = "train" (folds != fold) or "val" (fold == fold).
    ``fold="all"``: every case-day in train, none in val. A fold that folds.csv lacks is a DataError (it
    would otherwise train on every case with no validation)."""
    check_folds(cache.root, [fold])
    idx = cache.index("train")
    f = cache.fold_of_case()
    folds = idx["case"].map(f)
    if fold == "all":
        sel = np.ones(len(idx), bool) if part == "train" else np.zeros(len(idx), bool)
    else:
        sel = (folds != int(fold)) if part == "train" else (folds == int(fold))
    return list(dict.fromkeys(idx.loc[np.asarray(sel, bool), "case_day"]))


@dataclass
class SliceDataset25D:
    """torch-style dataset of 2.5D samples (no torch import here: returns numpy; collate makes tensors).

    Each item: dict(inputs float32 (k, h, w), mask float32 (C, h, w), presence float32 (C,),
    weight float32 (), case_day str, z int). ``weight`` is 0 on ambiguous slices (just outside the
    annotated range, within ``ambiguous_margin``) so the segmentation loss can ignore them.
    """

    cache: Cache
    case_days: list[str]
    split: str = "train"
    stack: StackSpec = field(default_factory=StackSpec)
    size: tuple[int, int] = (224, 224)
    geometry_mode: str = "resize"
    norm: str = "volume"
    subset: str = "all"
    crop: str | None = None  # None | "body" | "boxes"
    boxes: pd.DataFrame | None = None  # per (case_day, z): y0,y1,x0,x1 (from the detector family)
    box_jitter: float = 0.0
    box_scope: str = "slice"  # slice | case_day (each case-day's rows replaced by their union box)
    box_pad: float = 0.0  # every box grown by box_pad x (H, W) on each side (before the train jitter)
    box_full_prob: float = 0.0  # train only: this share of samples sees the whole image instead of its box
    stride_train: tuple = ()  # train only: each sample's slice step drawn from these (empty: stack.stride)
    organ_shift: float = 0.0  # train only: each class's pixels shifted by U(-a, a) (normalised units), p 0.5 each
    augment: object = None
    ambiguous_margin: int = 0
    with_labels: bool = True
    faulty: tuple = FAULTY
    seed: int = 0

    def __post_init__(self):
        idx = self.cache.index(self.split)
        idx = idx[idx["case_day"].isin(self.case_days)]
        if self.with_labels and self.subset != "all":
            idx = select_subset(idx, self.subset, self.faulty)
        self.items = idx.reset_index(drop=True)
        # plain arrays per column: pandas row access costs more than the rest of a sample
        self._cd = self.items["case_day"].to_numpy()
        self._z = self.items["z"].to_numpy().astype(int)
        self._slice = self.items["slice"].to_numpy().astype(int)
        self._lo = self.items["first_anno"].to_numpy().astype(int) if "first_anno" in idx else np.zeros(len(idx), int)
        self._hi = self.items["last_anno"].to_numpy().astype(int) if "last_anno" in idx else np.zeros(len(idx), int)
        self._presence = np.stack([self.items.get(f"has_{c}", pd.Series(0, index=self.items.index)).to_numpy()
                                   for c in CLASSES], 1).astype(np.float32) if len(idx) else np.zeros((0, len(CLASSES)), np.float32)
        self._vols: dict[str, tuple] = {}
        self._vol_scale: dict[str, float] = {}
        self._body: dict[str, tuple] = {}
        self._rng = np.random.default_rng(self.seed)
        self._stream = None  # the (rank, worker) the random streams were last seeded for
        if self.crop == "boxes" and self.boxes is None:
            raise ValueError("crop='boxes' needs a boxes table (from the detector family)")
        if self.box_scope not in BOX_SCOPES:
            raise KeyError(f"unknown box_scope {self.box_scope!r}; options: {list(BOX_SCOPES)}")
        if self.crop == "boxes" and self.box_scope == "case_day":
            self.boxes = union_boxes_per_case_day(self.boxes)
        self.stride_train = tuple(int(s) for s in (self.stride_train or ()))
        if any(s < 1 for s in self.stride_train):
            raise ValueError(f"stride_train must hold positive slice steps, got {list(self.stride_train)}")

    def __len__(self) -> int:
        return len(self.items)

    def _scale(self, cd: str, img) -> float:
        if cd not in self._vol_scale:
            self._vol_scale[cd] = volume_scale(img)
        return self._vol_scale[cd]

    def geometry(self, cd: str, z: int, img, train: bool = False) -> SliceGeometry:
        box = None
        if self.crop == "body":
            if cd not in self._body:
                self._body[cd] = body_box(img)
            box = self._body[cd]
        elif self.crop == "boxes":
            r = self.boxes.loc[(cd, z)]
            box = (int(r["y0"]), int(r["y1"]), int(r["x0"]), int(r["x1"]))
            if self.box_pad > 0:
                box = expand_box(box, img.shape[1:], self.box_pad)
            if train and self.box_full_prob > 0 and self._rng.random() < self.box_full_prob:
                box = None  # the whole image: what the member gets where the detector finds nothing
            elif train and self.box_jitter > 0:
                box = _jitter(box, img.shape[1:], self.box_jitter, self._rng)
        elif self.crop is not None:
            raise KeyError(f"unknown crop {self.crop!r}; options: [None, 'body', 'boxes']")
        return SliceGeometry(tuple(img.shape[1:]), tuple(self.size), box, self.geometry_mode)

    def volumes(self, cd: str):
        """(img, mask or None) memory maps of a case-day, opened once per dataset."""
        if cd not in self._vols:
            img = self.cache.image(self.split, cd)
            mask = self.cache.mask(self.split, cd) if self.with_labels else None
            self._vols[cd] = (img, mask)
        return self._vols[cd]

    def inputs(self, cd: str, z: int, img, geom: SliceGeometry, hwk: bool = False,
               stack: StackSpec | None = None, shift=None, mask=None) -> np.ndarray:
        """float32 (k, h, w) (or (h, w, k) with ``hwk``) model input of slice ``z`` of ``img`` (D, H, W);
        ``stack`` replaces the dataset's stack spec (the train-time stride draw); ``shift`` (C,) with ``mask``
        (D, H, W bit flags): class c's pixels of every stacked slice move by shift[c] (then clipped like
        :func:`normalise`)."""
        ids, valid = stack_indices(z, img.shape[0], stack or self.stack)
        scale = self._scale(cd, img) if self.norm == "volume" else None
        out = np.zeros(tuple(self.size) + (len(ids),), np.float32)
        for j, (k, ok) in enumerate(zip(ids, valid)):
            if ok:  # one 2D slice at a time: no (k, H, W) transposes of raw-size arrays
                x = normalise(np.asarray(img[k])[None], self.norm, scale)[0]
                if shift is not None:
                    x = shift_organs(x, np.asarray(mask[k]), shift, NORM_TOP[self.norm])
                out[:, :, j] = geom.forward(x)
        return out if hwk else np.ascontiguousarray(out.transpose(2, 0, 1))

    def seed_streams(self) -> None:
        """Seed the train-time random streams (box jitter, slice step, organ shift, and the augmentation's own
        when it has ``reseed``) from ``(seed, rank, DataLoader worker)``, once per process. DataLoader workers
        start from copies of one dataset: without this they would draw the same sequences; and an unseeded
        augmentation made a run unrepeatable from ``train.seed``. Called by ``__getitem__``."""
        key = process_key()
        if key == self._stream:
            return
        ss = np.random.SeedSequence([int(self.seed), *key])
        self._rng = np.random.default_rng(ss)
        if hasattr(self.augment, "reseed"):
            self.augment.reseed(int(ss.generate_state(1)[0]))
        self._stream = key

    def __getitem__(self, i: int) -> dict:
        cd, z = self._cd[i], int(self._z[i])
        img, mask = self.volumes(cd)
        train = self.augment is not None
        if train:
            self.seed_streams()
        geom = self.geometry(cd, z, img, train=train)
        stack = None
        if train and self.stride_train:  # other slice spacings: a new scan's neighbours may sit nearer or farther
            stack = replace(self.stack, stride=self.stride_train[int(self._rng.integers(len(self.stride_train)))])
        shift = None
        if train and self.organ_shift > 0 and mask is not None:  # a new case's organs sit at other intensities
            on = self._rng.random(len(CLASSES)) < 0.5
            shift = np.where(on, self._rng.uniform(-self.organ_shift, self.organ_shift, len(CLASSES)), 0.0)
        img_hwk = self.inputs(cd, z, img, geom, hwk=True, stack=stack, shift=shift, mask=mask)
        C = len(CLASSES)
        if self.with_labels:
            bits = geom.forward(np.asarray(mask[z]), interp="nearest")  # bit flags: nearest is exact
            ch = bits_to_channels(bits, C, axis=-1)
        else:
            ch = np.zeros(tuple(self.size) + (C,), np.uint8)
        if self.augment is not None:
            img_hwk, ch = self.augment(img_hwk, ch)
        s, lo, hi = self._slice[i], self._lo[i], self._hi[i]
        amb = hi > 0 and self.ambiguous_margin > 0 and (
            (lo - self.ambiguous_margin <= s < lo) or (hi < s <= hi + self.ambiguous_margin))
        return {
            "inputs": np.ascontiguousarray(img_hwk.transpose(2, 0, 1), dtype=np.float32),
            "mask": np.ascontiguousarray(ch.transpose(2, 0, 1), dtype=np.float32),
            "presence": self._presence[i].copy(),
            "weight": np.float32(0.0 if amb else 1.0),
            "case_day": cd,
            "z": z,
        }


BOX_SCOPES = ("slice", "case_day")


def union_boxes_per_case_day(boxes: pd.DataFrame) -> pd.DataFrame:
    """A box table (index (case_day, z), int y0, y1, x0, x1) with every row replaced by its case-day's union box
    (min y0, max y1, min x0, max x1 over the case-day's rows); other columns kept."""
    cols = ["y0", "y1", "x0", "x1"]
    g = boxes[cols].groupby(level=0, sort=False)
    union = pd.concat([g["y0"].min(), g["y1"].max(), g["x0"].min(), g["x1"].max()], axis=1)
    out = boxes.copy()
    out[cols] = union.loc[out.index.get_level_values(0), cols].to_numpy()
    return out


def _jitter(box, hw, frac, rng):
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    d = rng.uniform(-frac, frac, 4) * np.array([h, h, w, w])
    y0, y1 = int(np.clip(y0 + d[0], 0, hw[0] - 1)), int(np.clip(y1 + d[1], 1, hw[0]))
    x0, x1 = int(np.clip(x0 + d[2], 0, hw[1] - 1)), int(np.clip(x1 + d[3], 1, hw[1]))
    if y1 <= y0 or x1 <= x0:
        return box
    return y0, y1, x0, x1
