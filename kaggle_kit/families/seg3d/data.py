"""Case-day volumes for the 3D family: resampling to a training geometry and back, patch sampling, 3D augment.

Every case-day (raw uint16 (D, H, W), any of the four geometries) is normalised per volume and resampled
with ``F.interpolate`` to its training geometry (:class:`Geometry3D`): either one fixed size
(``mode="size"``; a null entry keeps the raw extent of that axis, e.g. ``[null, 224, 224]`` keeps the slice
count) or a target in-plane pixel spacing (``mode="spacing"``; slice count kept, aspect ratio kept: the
nnU-Net way). Images and probabilities are trilinear; masks go per class through trilinear + threshold 0.5
(smoother than nearest, and nearly exact on the way back). :func:`to_raw` maps predictions back to exactly
(D, H, W), so the store gets (D, C, H, W) maps in raw geometry and slice order like every other pixel family.

Why ``spacing`` for the GPU config: a fixed 224 x 224 squashes the 360 x 310 geometry by 0.62 along W and
the thin small bowel loses Dice on the way back (round trip on full-size synthetic volumes: 0.962; 0.98 to
0.99 for the other geometries; at 1.5 mm/px every geometry round-trips at >= 0.99).

Augmentations are pure functions of ``(image, mask, rng)`` (numpy + torch, seeded by the dataset's
generator); recipes are chosen by name (:data:`RECIPES`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kaggle_kit.data.cache import Cache
from kaggle_kit.data.dataset25d import normalise, process_key, volume_scale
from kaggle_kit.data.bitmask import bits_to_channels, channels_to_bits  # noqa: F401  (re-exported)
from kaggle_kit.data.raw import CLASSES

__all__ = [
    "RECIPES",
    "Geometry3D",
    "VolumeDataset3D",
    "augment3d",
    "bits_to_channels",
    "case_day_spacing",
    "channels_to_bits",
    "crop_patch",
    "image_to_training",
    "load_volume",
    "mask_to_training",
    "pad_to",
    "resample",
    "to_raw",
]

N_CLASSES = len(CLASSES)

# Named augmentation recipes (parameters of augment3d). Flip axes are spatial (0 = D, 1 = H, 2 = W).
# light/baseline do not flip: the anatomy is lateralised (stomach on one side, the liver, whose intensity
# overlaps it, on the other) and a 3D net can use that; strong flips every axis (pair it with flip TTA).
RECIPES: dict[str, dict | None] = {
    "none": None,
    "light": {"flip_axes": (), "affine_p": 0.3, "rotate": 10.0, "scale": 0.1, "translate": 0.05,
                  "intensity_p": 0.5, "intensity_scale": 0.1, "intensity_shift": 0.1, "dropout_p": 0.0},
    "baseline": {"flip_axes": (), "affine_p": 0.5, "rotate": 15.0, "scale": 0.15, "translate": 0.06,
                     "intensity_p": 0.5, "intensity_scale": 0.15, "intensity_shift": 0.1,
                     "dropout_p": 0.3, "dropout_holes": 4, "dropout_size": (0.05, 0.15)},
    "strong": {"flip_axes": (0, 1, 2), "affine_p": 0.7, "rotate": 20.0, "scale": 0.2, "translate": 0.08,
                   "intensity_p": 0.7, "intensity_scale": 0.2, "intensity_shift": 0.15,
                   "dropout_p": 0.5, "dropout_holes": 6, "dropout_size": (0.05, 0.2)},
}


@dataclass(frozen=True)
class Geometry3D:
    """Raw (D, H, W) -> training (Dt, Ht, Wt). ``mode``: ``size`` (``volume`` = [d, h, w], null = keep that
    axis) or ``spacing`` (in-plane to ``spacing`` mm/px from the slice's own spacing; depth kept)."""

    mode: str = "size"
    volume: tuple = (None, 224, 224)
    spacing: float = 1.5

    def __post_init__(self):
        if self.mode not in ("size", "spacing"):
            raise KeyError(f"unknown resample mode {self.mode!r}; options: ['size', 'spacing']")
        if len(self.volume) != 3:
            raise ValueError(f"volume must be [d, h, w] (null keeps an axis), got {self.volume!r}")
        object.__setattr__(self, "volume", tuple(None if v is None else int(v) for v in self.volume))

    @classmethod
    def from_cfg(cls, data_cfg: dict) -> Geometry3D:
        return cls(mode=data_cfg["resample"], volume=tuple(data_cfg["volume"]), spacing=float(data_cfg["spacing"]))

    def shape(self, raw_shape, spacing_yx=(1.0, 1.0)) -> tuple[int, int, int]:
        D, H, W = (int(s) for s in raw_shape)
        if self.mode == "size":
            return tuple(r if v is None else v for r, v in zip((D, H, W), self.volume))
        sy, sx = (float(s) for s in spacing_yx)
        return D, max(1, round(H * sy / self.spacing)), max(1, round(W * sx / self.spacing))

    @property
    def fixed(self) -> bool:
        """True when every case-day gets the same training shape (whole volumes can be batched)."""
        return self.mode == "size" and None not in self.volume


def case_day_spacing(cache: Cache, split: str) -> dict[str, tuple[float, float]]:
    """case_day -> (spacing_y, spacing_x) mm/px from the cache index."""
    idx = cache.index(split)
    if not len(idx):
        return {}
    first = idx.groupby("case_day", sort=False)[["spacing_y", "spacing_x"]].first()
    return {cd: (float(r.spacing_y), float(r.spacing_x)) for cd, r in first.iterrows()}


def resample(x, size):
    """Trilinear resize of a float tensor (N, C, D, H, W) (or (C, D, H, W)) to spatial ``size`` (d, h, w).

    align_corners=False: voxel centres map onto voxel centres of the other grid, so a resize and its inverse
    are aligned for any pair of sizes (also odd ones such as 310 x 360 -> 224 x 224 -> back).
    """
    import torch.nn.functional as F

    size = tuple(int(s) for s in size)
    squeeze = x.ndim == 4
    if squeeze:
        x = x[None]
    if tuple(x.shape[2:]) != size:
        x = F.interpolate(x, size=size, mode="trilinear", align_corners=False)
    return x[0] if squeeze else x


def image_to_training(img: np.ndarray, size, norm: str = "volume") -> np.ndarray:
    """uint16 (D, H, W) raw volume -> float32 (1, Dt, Ht, Wt) normalised, in training geometry."""
    import torch

    x = normalise(np.asarray(img), norm, volume_scale(img) if norm == "volume" else None)
    with torch.inference_mode():
        return resample(torch.from_numpy(x)[None, None], size)[0].numpy()


def mask_to_training(bits: np.ndarray, size) -> np.ndarray:
    """uint8 (D, H, W) bit flags -> uint8 (C, Dt, Ht, Wt) 0/1 (per class: trilinear, then >= 0.5)."""
    import torch

    ch = torch.from_numpy(bits_to_channels(bits, N_CLASSES)).float()
    with torch.inference_mode():
        return (resample(ch, size) >= 0.5).to(torch.uint8).numpy()


def to_raw(prob, shape) -> np.ndarray:
    """Probabilities (C, Dt, Ht, Wt) (tensor or array) in training geometry -> float32 (D, C, H, W) raw.

    ``shape`` = raw (D, H, W). Trilinear, clipped to [0, 1]; exactly ``shape`` whatever the geometry.
    """
    import torch

    t = prob if isinstance(prob, torch.Tensor) else torch.from_numpy(np.asarray(prob))
    with torch.inference_mode():
        out = resample(t.float(), shape).clamp(0.0, 1.0)  # out of place: t may share memory with the caller
    return np.ascontiguousarray(out.permute(1, 0, 2, 3).cpu().numpy())


def load_volume(cache: Cache, split: str, case_day: str, geometry: Geometry3D, spacing_yx=(1.0, 1.0),
                norm: str = "volume", with_labels: bool = True):
    """(image float32 (1, Dt, Ht, Wt), mask uint8 (C, Dt, Ht, Wt) or None, raw shape (D, H, W))."""
    img = cache.image(split, case_day)
    size = geometry.shape(img.shape, spacing_yx)
    x = image_to_training(img, size, norm)
    m = mask_to_training(np.asarray(cache.mask(split, case_day)), size) if with_labels else None
    return x, m, tuple(img.shape)


def _fg_points(mask: np.ndarray, rng, max_points: int = 4096) -> list[np.ndarray]:
    """Per class, up to ``max_points`` foreground voxel coordinates (K, 3) of a (C, D, H, W) mask."""
    pts = []
    for c in range(mask.shape[0]):
        p = np.argwhere(mask[c])
        if len(p) > max_points:
            p = p[rng.choice(len(p), max_points, replace=False)]
        pts.append(p.astype(np.int32))
    return pts


def pad_to(x: np.ndarray, shape) -> np.ndarray:
    """Zero-pad (C, d, h, w) at the end of each spatial axis up to ``shape`` (no-op where already large)."""
    pad = [(0, 0)] + [(0, max(0, int(t) - n)) for n, t in zip(x.shape[1:], shape)]
    return np.pad(x, pad) if any(p[1] for p in pad) else x


def crop_patch(shape, patch, rng, centre=None) -> tuple[slice, slice, slice]:
    """Slices of a ``patch`` (d, h, w) inside a volume of ``shape`` (>= patch: pad first with :func:`pad_to`):
    around ``centre`` (3,) with a jitter of +-patch/4 when given (clipped to fit), else uniformly placed."""
    out = []
    for ax, (n, p) in enumerate(zip(shape, patch)):
        if p > n:
            raise ValueError(f"patch {tuple(patch)} larger than volume {tuple(shape)} on axis {ax}")
        if centre is None:
            s = int(rng.integers(0, n - p + 1))
        else:
            s = int(np.clip(int(centre[ax]) - p // 2 + int(rng.integers(-(p // 4), p // 4 + 1)), 0, n - p))
        out.append(slice(s, s + p))
    return tuple(out)


def _affine_theta(rng, shape, rotate: float, scale: float, translate: float):
    """3x4 matrix for F.affine_grid: in-plane (H, W) rotation + isotropic scale + translation, in voxel units
    (so rotations stay rigid on non-square patches)."""
    a = np.deg2rad(rng.uniform(-rotate, rotate))
    s = 1.0 + rng.uniform(-scale, scale)
    d, h, w = shape
    # affine_grid's normalised coordinates are (x=W, y=H, z=D); rotate in pixel units: N^-1 R N
    norm = np.diag([w / 2.0, h / 2.0, d / 2.0])
    rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]]) / s
    m = np.linalg.inv(norm) @ rot @ norm
    t = rng.uniform(-2 * translate, 2 * translate, 3)
    t[2] *= 0.5  # less shift along z: slices are thick
    return np.concatenate([m, t[:, None]], 1).astype(np.float32)


def augment3d(img: np.ndarray, mask: np.ndarray, rng, *, flip_axes=(), flip_p: float = 0.5, affine_p: float = 0.0,
              rotate: float = 0.0, scale: float = 0.0, translate: float = 0.0, intensity_p: float = 0.0,
              intensity_scale: float = 0.0, intensity_shift: float = 0.0, dropout_p: float = 0.0,
              dropout_holes: int = 4, dropout_size=(0.05, 0.15)):
    """Random 3D augmentation of one patch: image float32 (1, d, h, w), mask uint8 (C, d, h, w).

    Flips (each axis in ``flip_axes`` with ``flip_p``), affine (in-plane rotation, scale, translation;
    image bilinear, mask per class bilinear + 0.5 threshold), intensity scale/shift, coarse dropout (up to
    ``dropout_holes`` cuboids of ``dropout_size`` relative edge set to 0 in the image only).
    Deterministic given ``rng`` (np.random.Generator). Returns new arrays.
    """
    import torch
    import torch.nn.functional as F

    img, mask = np.asarray(img, np.float32), np.asarray(mask, np.uint8)
    for ax in flip_axes:
        if rng.random() < flip_p:
            img, mask = np.flip(img, 1 + ax), np.flip(mask, 1 + ax)
    if affine_p > 0 and rng.random() < affine_p:
        theta = torch.from_numpy(_affine_theta(rng, img.shape[1:], rotate, scale, translate))[None]
        x = torch.from_numpy(np.ascontiguousarray(img))[None]
        m = torch.from_numpy(np.ascontiguousarray(mask)).float()[None]
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        with torch.inference_mode():
            img = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0].numpy()
            mask = (F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
                    >= 0.5).to(torch.uint8).numpy()
    if intensity_p > 0 and rng.random() < intensity_p:
        img = img * np.float32(1.0 + rng.uniform(-intensity_scale, intensity_scale)) + np.float32(
            rng.uniform(-intensity_shift, intensity_shift))
    if dropout_p > 0 and rng.random() < dropout_p:
        img = np.array(img)
        dims = np.array(img.shape[1:])
        for _ in range(int(rng.integers(1, dropout_holes + 1))):
            ext = np.maximum(1, (rng.uniform(*dropout_size, 3) * dims).astype(int))
            lo = (rng.random(3) * (dims - ext + 1)).astype(int)
            img[:, lo[0]:lo[0] + ext[0], lo[1]:lo[1] + ext[1], lo[2]:lo[2] + ext[2]] = 0.0
    return np.ascontiguousarray(img, np.float32), np.ascontiguousarray(mask, np.uint8)


@dataclass
class VolumeDataset3D:
    """torch-style dataset of 3D samples (returns numpy; the collate makes tensors).

    Training (``patch`` given): ``samples_per_volume`` random patches per case-day and epoch, centred on a
    foreground voxel of a random present class with probability ``fg_prob`` (else placed uniformly), the
    volume zero-padded where smaller than the patch; augmented with the ``augment`` recipe.
    Validation (``patch=None``): one whole resampled volume per case-day (shapes differ unless
    ``geometry.fixed``: batch size 1).

    Item: dict(inputs float32 (1, d, h, w), mask float32 (C, d, h, w), presence float32 (C,),
    weight float32 (), case_day str, z int = first slice of the patch in training geometry).
    ``preload``: keep every resampled case-day in RAM (float16 image + uint8 mask; per DataLoader worker).
    """

    cache: Cache
    case_days: list[str]
    geometry: Geometry3D = field(default_factory=Geometry3D)
    patch: tuple[int, int, int] | None = None
    split: str = "train"
    samples_per_volume: int = 1
    fg_prob: float = 0.67
    augment: str = "none"
    norm: str = "volume"
    preload: bool = True
    with_labels: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.patch is not None:
            self.patch = tuple(int(p) for p in self.patch)
            if len(self.patch) != 3:
                raise ValueError(f"patch must be [d, h, w], got {self.patch!r}")
        if self.augment not in RECIPES:
            raise KeyError(f"unknown 3D augmentation recipe {self.augment!r}; options: {sorted(RECIPES)}")
        self._aug = RECIPES[self.augment] if self.patch is not None else None
        self._spacing = case_day_spacing(self.cache, self.split)
        self._store: dict = {}
        self._calls = 0

    def __len__(self) -> int:
        return len(self.case_days) * (self.samples_per_volume if self.patch is not None else 1)

    def volume(self, cd: str):
        """(image (1, Dt, Ht, Wt), mask (C, Dt, Ht, Wt) uint8 or None, foreground points per class or None)."""
        if cd in self._store:
            return self._store[cd]
        x, m, _ = load_volume(self.cache, self.split, cd, self.geometry, self._spacing.get(cd, (1.0, 1.0)),
                              self.norm, self.with_labels)
        pts = _fg_points(m, np.random.default_rng(self.seed)) if m is not None else None
        item = (x.astype(np.float16) if self.preload else x, m, pts)
        if self.preload:
            self._store[cd] = item
        return item

    def _sample_rng(self, i: int):
        # one stream per (seed, process, index, call number): deterministic for a given sampler order and torch
        # seed. The process key (rank, DataLoader worker, the worker's torch seed) keeps workers apart: each
        # starts from a copy of this dataset with the call count at 0, and non-persistent workers restart it
        # every epoch, so (seed, index, calls) alone repeated streams across workers and epochs.
        self._calls += 1
        return np.random.default_rng((int(self.seed), *process_key(), i, self._calls))

    def __getitem__(self, i: int) -> dict:
        spv = self.samples_per_volume if self.patch is not None else 1
        cd = self.case_days[i // spv]
        x, m, pts = self.volume(cd)
        x = x.astype(np.float32)
        if m is None:
            m = np.zeros((N_CLASSES,) + tuple(x.shape[1:]), np.uint8)
        z0 = 0
        if self.patch is not None:
            rng = self._sample_rng(i)
            centre = None
            present = [c for c in range(len(pts)) if len(pts[c])] if pts is not None else []
            if present and rng.random() < self.fg_prob:
                p = pts[present[int(rng.integers(len(present)))]]
                centre = p[int(rng.integers(len(p)))]
            x, m = pad_to(x, self.patch), pad_to(m, self.patch)
            sl = crop_patch(x.shape[1:], self.patch, rng, centre)
            z0 = sl[0].start
            x, m = x[(slice(None),) + sl], m[(slice(None),) + sl]
            if self._aug is not None:
                x, m = augment3d(x, m, rng, **self._aug)
        presence = m.reshape(len(m), -1).max(1).astype(np.float32)
        return {
            "inputs": np.ascontiguousarray(x, np.float32),
            "mask": np.ascontiguousarray(m, np.float32),
            "presence": presence,
            "weight": np.float32(1.0),
            "case_day": cd,
            "z": int(z0),
        }
