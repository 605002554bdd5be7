"""Synthetic competition data in the exact UW-Madison GI Tract layout.

Each case-day is a 3D-coherent abdominal-MRI-like volume: an elliptic body with a bias field and noise,
a stomach (deformed ellipsoid, upper left of the patient = image right), a large bowel (a thick tube:
ascending, transverse, descending, sigmoid), small-bowel loops (thin curly tubes in the lower centre),
and unlabelled organ-like clutter whose intensities overlap the organs' (liver, kidneys, spine, vessels).
Labels are the rendered organs, with annotation truncated at the volume ends on some case-days (organs
visible on slices that carry no label) and organs absent on others. Geometries and slice counts follow the
four real ones (W x H @ mm/px, slices): 266x266@1.50 (144), 360x310@1.50 (144), 276x276@1.63 (80),
234x234@1.50 (144); ``size_scale`` shrinks all three dimensions for fast tests.

Output: ``train/``, ``train.csv``, ``test/``, ``test.csv`` (id,class), ``sample_submission.csv``
(id,class,predicted, empty), and ``test_truth.csv`` (train.csv form; the hidden test labels).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.utils import atomic_write_text, progress
from kaggle_kit.data.raw import CLASSES, make_id
from kaggle_kit.data.rle import rle_encode

__all__ = ["GEOMETRIES", "make_synthetic", "render_case_day", "CaseDaySpec"]

# (width, height, spacing mm/px, slices, share of real case-days)
GEOMETRIES = (
    (266, 266, 1.50, 144, 180),
    (360, 310, 1.50, 144, 78),
    (276, 276, 1.63, 80, 15),
    (234, 234, 1.50, 144, 1),
)
Z_ASPECT = 2.0  # slice thickness / pixel size: distances along z count double when drawing tubes


@dataclass
class CaseDaySpec:
    case: int
    day: int
    geometry: int  # index into GEOMETRIES
    seed: int  # anatomy seed of the case (shared by its days)
    day_seed: int
    size_scale: float = 1.0

    @property
    def shape(self) -> tuple[int, int, int]:
        w, h, _, d, _ = GEOMETRIES[self.geometry]
        s = self.size_scale
        return max(8, round(d * s)), max(16, round(h * s)), max(16, round(w * s))

    @property
    def spacing(self) -> float:
        return GEOMETRIES[self.geometry][2] / self.size_scale


def _smooth_field(rng, shape, grid=(3, 4, 4)) -> np.ndarray:
    """Smooth random field ~N(0,1) of ``shape`` (float32), by linear upsampling of a coarse grid."""
    from scipy.ndimage import zoom

    coarse = rng.standard_normal(grid).astype(np.float32)
    out = zoom(coarse, [s / g for s, g in zip(shape, grid)], order=1, grid_mode=True, mode="nearest")
    out = out[: shape[0], : shape[1], : shape[2]]
    pad = [(0, s - o) for s, o in zip(shape, out.shape)]
    return np.pad(out, pad, mode="edge") if any(p[1] for p in pad) else out


def _draw_curve(vol: np.ndarray, pts: np.ndarray) -> None:
    """Mark voxels on a densely sampled polyline ``pts`` (N, 3) (z, y, x) in voxel units."""
    seg = np.diff(pts, axis=0)
    n = np.maximum(2, np.ceil(np.abs(seg).max(1) * 2).astype(int))
    dense = np.concatenate([p + np.linspace(0, 1, k, endpoint=False)[:, None] * s
                            for p, s, k in zip(pts[:-1], seg, n)] + [pts[-1:]])
    idx = np.round(dense).astype(int)
    ok = np.all((idx >= 0) & (idx < np.array(vol.shape)), axis=1)
    idx = idx[ok]
    vol[idx[:, 0], idx[:, 1], idx[:, 2]] = True


def _tube(shape, curves, radius: float, wobble: np.ndarray) -> np.ndarray:
    """Voxels within ``radius`` (+ a smooth wobble) of any curve; anisotropic in z."""
    from scipy.ndimage import distance_transform_edt

    center = np.zeros(shape, bool)
    for c in curves:
        _draw_curve(center, c)
    if not center.any():
        return center
    dist = distance_transform_edt(~center, sampling=(Z_ASPECT, 1.0, 1.0))
    return dist <= radius * (1.0 + 0.25 * wobble)


def _random_walk(rng, start, n_steps, step, box_lo, box_hi, dz_scale=0.25):
    """Persistent random walk in (z, y, x) reflecting at the box: a small-bowel loop centerline."""
    pts = [np.asarray(start, float)]
    ang = rng.uniform(0, 2 * np.pi)
    for _ in range(n_steps):
        ang += rng.normal(0, 0.45)
        d = np.array([rng.normal(0, dz_scale), np.sin(ang), np.cos(ang)]) * step
        p = pts[-1] + d
        for k in range(3):
            if p[k] < box_lo[k] or p[k] > box_hi[k]:
                p[k] = np.clip(p[k], box_lo[k], box_hi[k])
                ang += np.pi / 2
        pts.append(p)
    return np.array(pts)


def render_case_day(spec: CaseDaySpec) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Render one case-day. Returns (img uint16 (D, H, W), mask bit flags uint8 (D, H, W), anno range).

    The anno range (lo, hi) are 0-based slice positions outside which labels are dropped (truncation);
    the returned mask is the full truth, the caller applies the range.

    Long on purpose: the draws from the case and day generators happen in one fixed order, which IS the
    synthetic data set every recorded number was measured on; one straight-line recipe (body, organs,
    clutter, intensities, truncation) keeps that order visible and unchanged.
    """
    D, H, W = spec.shape
    case_rng = np.random.default_rng(spec.seed)
    rng = np.random.default_rng(spec.day_seed)
    z = np.arange(D, dtype=np.float32)[:, None, None]
    y = np.arange(H, dtype=np.float32)[None, :, None]
    x = np.arange(W, dtype=np.float32)[None, None, :]
    t = z / max(D - 1, 1)  # 0 bottom, 1 top

    # Body: ellipse in-plane, slightly narrower towards the top; patient anatomy from the case seed.
    cy = H * (0.5 + case_rng.uniform(-0.04, 0.04)) + rng.uniform(-0.01, 0.01) * H
    cx = W * (0.5 + case_rng.uniform(-0.03, 0.03)) + rng.uniform(-0.01, 0.01) * W
    ax = W * case_rng.uniform(0.36, 0.44) * (1.0 - 0.08 * t)
    ay = H * case_rng.uniform(0.30, 0.38) * (1.0 - 0.05 * t)
    scale = min(ax.min(), ay.min())  # organ sizes follow the body
    u = (x - cx) / ax  # body-relative coordinates, -1..1 inside
    v = (y - cy) / ay
    body_r = np.sqrt(u**2 + v**2)
    body = body_r < 1.0
    shift = rng.normal(0, 0.03, 3)  # day-to-day organ displacement

    def bx(val):  # body-relative -> pixel, at mid height
        return cx + val * float(ax.mean())

    def by(val):
        return cy + val * float(ay.mean())

    present = {c: True for c in CLASSES}
    for c, p_absent in zip(CLASSES, (0.06, 0.10, 0.15)):
        if rng.uniform() < p_absent:
            present[c] = False

    # Stomach: deformed ellipsoid, upper part of the volume, image right.
    st_z = D * (case_rng.uniform(0.62, 0.85) + shift[0])
    st_c = (by(-0.25 + shift[1]), bx(0.38 + shift[2]))
    st_r = np.array([D * case_rng.uniform(0.12, 0.2), scale * case_rng.uniform(0.22, 0.32),
                     scale * case_rng.uniform(0.18, 0.28)])
    st_rot = case_rng.uniform(-0.6, 0.6)
    yy, xx = y - st_c[0], x - st_c[1]
    yr = yy * np.cos(st_rot) - xx * np.sin(st_rot)
    xr = yy * np.sin(st_rot) + xx * np.cos(st_rot)
    st_q = ((z - st_z) / st_r[0]) ** 2 + (yr / st_r[1]) ** 2 + (xr / st_r[2]) ** 2
    wob = _smooth_field(rng, (D, H, W), (4, 5, 5))
    stomach = (st_q < 1.0 + 0.3 * wob) & body if present["stomach"] else np.zeros((D, H, W), bool)

    # Large bowel: ascending (image left), transverse (anterior, high), descending (image right), sigmoid.
    n = 60
    s = np.linspace(0, 1, n)
    zt = case_rng.uniform(0.55, 0.7) + shift[0]
    zb = case_rng.uniform(0.05, 0.2)
    wig = lambda amp: amp * np.sin(2 * np.pi * (case_rng.uniform(1, 3) * s + case_rng.uniform()))  # noqa: E731
    asc = np.stack([D * (zb + (zt - zb) * s), by(0.15 + wig(0.08)), bx(-0.6 + wig(0.05) + shift[2])], 1)
    trans = np.stack([D * (zt + wig(0.04)), by(-0.4 + 0.25 * np.sin(np.pi * s) + shift[1]),
                      bx(-0.6 + 1.25 * s + shift[2])], 1)
    desc = np.stack([D * (zt - (zt - zb + 0.05) * s), by(0.1 + wig(0.06)), bx(0.65 + wig(0.05) + shift[2])], 1)
    sig = np.stack([D * (zb - 0.05 + 0.08 * s), by(0.1 + 0.2 * s), bx(0.65 - 0.6 * s)], 1)
    lb_r = scale * case_rng.uniform(0.08, 0.12)
    lb_wob = _smooth_field(rng, (D, H, W), (6, 6, 6))
    large = _tube((D, H, W), [asc, trans, desc, sig], lb_r, lb_wob) & body if present["large_bowel"] \
        else np.zeros((D, H, W), bool)

    # Small bowel: loops in the lower centre.
    loops = []
    lo = np.array([D * 0.08, by(-0.15), bx(-0.4)])
    hi = np.array([D * (zt - 0.08), by(0.5), bx(0.35)])
    for _ in range(int(rng.integers(6, 12))):
        start = lo + rng.uniform(0, 1, 3) * (hi - lo)
        loops.append(_random_walk(rng, start, int(rng.integers(15, 35)), scale * 0.07, lo, hi))
    sb_r = scale * case_rng.uniform(0.045, 0.065)
    small = _tube((D, H, W), loops, sb_r, lb_wob) & body & ~large if present["small_bowel"] \
        else np.zeros((D, H, W), bool)

    # Clutter (unlabelled): liver (image left, high), kidneys (posterior), spine, bright vessels.
    liver_q = ((z - D * 0.8) / (D * 0.3)) ** 2 + ((y - by(-0.05)) / (scale * 0.55)) ** 2 \
        + ((x - bx(-0.45)) / (scale * 0.5)) ** 2
    liver = (liver_q < 1.0 + 0.3 * wob) & body
    kid = np.zeros((D, H, W), bool)
    for side in (-0.35, 0.35):
        q = ((z - D * 0.5) / (D * 0.14)) ** 2 + ((y - by(0.55)) / (scale * 0.16)) ** 2 \
            + ((x - bx(side)) / (scale * 0.1)) ** 2
        kid |= q < 1.0
    spine = ((y - by(0.75)) / (scale * 0.14)) ** 2 + ((x - cx) / (scale * 0.14)) ** 2 < 1.0
    spine = np.broadcast_to(spine, (D, H, W))
    vessels = _tube((D, H, W), [_random_walk(rng, lo + rng.uniform(0, 1, 3) * (hi - lo), 20, scale * 0.08, lo, hi)
                                for _ in range(3)], scale * 0.035, lb_wob) & body

    # Intensities: per-case jitter makes organ/clutter ranges overlap.
    j = lambda m, sd=0.06: m + case_rng.normal(0, sd)  # noqa: E731
    img = np.zeros((D, H, W), np.float32)
    img[body] = j(0.32)
    img += body * (0.05 * _smooth_field(rng, (D, H, W), (5, 6, 6)))  # soft-tissue texture
    img[liver] = j(0.45)
    img[kid] = j(0.62)
    img[spine & body] = j(0.2)
    img[vessels] = j(0.72)
    texture = _smooth_field(rng, (D, H, W), (20, 24, 24))
    img[large] = j(0.5) + 0.12 * texture[large]  # stool: mottled
    img[small] = j(0.7) + 0.05 * texture[small]
    img[stomach] = j(0.55) + 0.06 * texture[stomach]
    fat_ring = body & (body_r > 0.88)
    img[fat_ring] = j(0.75)  # bright subcutaneous fat
    bias = 1.0 + 0.25 * _smooth_field(rng, (D, H, W), (2, 3, 3))
    img = img * bias + rng.normal(0, rng.uniform(0.03, 0.07), img.shape).astype(np.float32)
    img = np.clip(img, 0, None)
    peak = case_rng.uniform(1500, 30000)
    img16 = np.clip(img / max(float(img.max()), 1e-6) * peak, 0, 65535).astype(np.uint16)

    mask = (large.astype(np.uint8) | (small.astype(np.uint8) << 1) | (stomach.astype(np.uint8) << 2))

    # Annotation range: truncated at the top on ~40 % of case-days, at the bottom on ~20 %.
    flags = mask.reshape(D, -1).max(1)
    pos = np.flatnonzero(flags)
    lo_a, hi_a = 0, D - 1
    if pos.size:
        lo_a, hi_a = int(pos[0]), int(pos[-1])
        if rng.uniform() < 0.4:
            hi_a = max(lo_a, hi_a - int(rng.integers(max(2, D // 30), max(3, D // 10) + 1)))
        if rng.uniform() < 0.2:
            lo_a = min(hi_a, lo_a + int(rng.integers(1, max(2, D // 25) + 1)))
    return img16, mask, (lo_a, hi_a)


def _write_case_day(root: Path, split: str, spec: CaseDaySpec, img: np.ndarray) -> None:
    import cv2

    d = root / split / f"case{spec.case}" / f"case{spec.case}_day{spec.day}" / "scans"
    d.mkdir(parents=True, exist_ok=True)
    D, H, W = img.shape
    for k in range(D):
        name = f"slice_{k + 1:04d}_{W}_{H}_{spec.spacing:.2f}_{spec.spacing:.2f}.png"
        if not cv2.imwrite(str(d / name), img[k]):
            raise OSError(f"could not write {d / name}")


def write_scoring_folder(root: Path, case_days, pred_name: str = "submission.csv") -> tuple[Path, Path]:
    """The minimal competition folder ``kk score`` reads, from masks: ``root/train.csv`` (the truth, train.csv
    form), ``root/train/caseN/caseN_dayM/scans/slice_*.png`` as empty files (only their names, which carry the
    geometry, are read) and ``root/<pred_name>`` (id,class,predicted). case_days: [(case, day, truth, pred)],
    each a (D, H, W) uint8 volume of class bit flags. Returns (truth_csv, pred_csv)."""
    root = Path(root)
    t_rows, p_rows = ["id,class,segmentation"], ["id,class,predicted"]
    for case, day, truth, pred in case_days:
        d, h, w = truth.shape
        scans = root / "train" / f"case{case}" / f"case{case}_day{day}" / "scans"
        scans.mkdir(parents=True, exist_ok=True)
        for z in range(d):
            (scans / f"slice_{z + 1:04d}_{w}_{h}_1.50_1.50.png").touch()
            id_ = make_id(case, day, z + 1)
            for c, cls in enumerate(CLASSES):
                t_rows.append(f"{id_},{cls},{rle_encode((truth[z] >> c) & 1)}")
                p_rows.append(f"{id_},{cls},{rle_encode((pred[z] >> c) & 1)}")
    truth_csv, pred_csv = root / "train.csv", root / pred_name
    atomic_write_text(truth_csv, "\n".join(t_rows) + "\n")
    atomic_write_text(pred_csv, "\n".join(p_rows) + "\n")
    return truth_csv, pred_csv


def _label_rows(spec: CaseDaySpec, mask: np.ndarray, anno: tuple[int, int]) -> list[tuple[str, str, str]]:
    rows = []
    lo, hi = anno
    for k in range(mask.shape[0]):
        id_ = make_id(spec.case, spec.day, k + 1)
        for bit, cls in enumerate(CLASSES):
            rle = rle_encode((mask[k] >> bit) & 1) if lo <= k <= hi else ""
            rows.append((id_, cls, rle))
    return rows


def _specs(rng, n_cases: int, used: set, geometry_offset: int, size_scale: float, max_days: int):
    specs = []
    weights = np.array([g[4] for g in GEOMETRIES], float)
    weights /= weights.sum()
    for i in range(n_cases):
        case = int(rng.integers(1, 160))
        while case in used:
            case = int(rng.integers(1, 160))
        used.add(case)
        # Cycle through all four geometries first so even a small set covers them, then sample.
        g = (i + geometry_offset) % len(GEOMETRIES) if i < len(GEOMETRIES) else int(rng.choice(len(GEOMETRIES), p=weights))
        n_days = int(rng.integers(1, max_days + 1))
        days = sorted(rng.choice(np.arange(0, 40), size=n_days, replace=False).tolist())
        seed = int(rng.integers(2**31))
        for day in days:
            specs.append(CaseDaySpec(case, int(day), g, seed, int(rng.integers(2**31)), size_scale))
    return specs


def make_synthetic(out, train_cases: int = 8, test_cases: int = 2, seed: int = 0, size_scale: float = 1.0,
                   max_days: int = 3, overwrite: bool = False) -> dict:
    """Write a synthetic competition folder to ``out``; returns a summary dict.

    ``test_cases=0`` writes an empty ``test/`` and header-only ``sample_submission.csv`` (the public
    notebook situation).
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True (--overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    used: set[int] = set()
    train = _specs(rng, train_cases, used, 0, size_scale, max_days)
    test = _specs(rng, test_cases, used, 1, size_scale, max_days)
    (out / "test").mkdir(exist_ok=True)
    summary = {}
    for split, specs in (("train", train), ("test", test)):
        rows = []
        for spec in progress(specs, desc=f"synthetic {split}", unit="case-day"):
            img, mask, anno = render_case_day(spec)
            _write_case_day(out, split, spec, img)
            rows += _label_rows(spec, mask, anno)
        df = pd.DataFrame(rows, columns=["id", "class", "segmentation"])
        if split == "train":
            atomic_write_text(out / "train.csv", df.to_csv(index=False))
        else:
            atomic_write_text(out / "test_truth.csv", df.to_csv(index=False))
            atomic_write_text(out / "test.csv", df[["id", "class"]].to_csv(index=False))
            sub = df[["id", "class"]].assign(predicted="")
            atomic_write_text(out / "sample_submission.csv", sub.to_csv(index=False))
        summary[split] = {"case_days": len(specs), "slices": len(df) // 3,
                          "geometries": sorted({f"{GEOMETRIES[s.geometry][0]}x{GEOMETRIES[s.geometry][1]}" for s in specs})}
    return summary
