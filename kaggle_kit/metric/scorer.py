"""The competition metric, exact and fast: Dice per (slice, class), Hausdorff per (case-day, class).

Default (DESIGN.md)::

    dice  = mean over (slice, class) rows of 2|P & G| / (|P| + |G|), rows with both empty skipped
    hd    = mean over (case-day, class) volumes with non-empty truth of the symmetric Hausdorff distance
            between foreground voxel coordinates (z = slice index, y, x; no pixel spacing) divided by
            sqrt(D**2 + H**2 + W**2); an empty prediction on a non-empty truth scores 1
    score = 0.4 * dice + 0.6 * (1 - hd)

Choices where the definition is silent (the same in every variant):

- a non-empty prediction on an empty truth volume adds no Hausdorff term (the truth is empty, so the volume
  is not among those averaged); its false pixels still cost Dice (each such slice row scores 0);
- with nothing to average, dice is 1.0 (no rows) and hd is 0.0 (no volumes): nothing was got wrong. The
  counts behind every mean are reported (``n_dice_rows``, ``n_hd_terms``) so such cases can be seen;
- ``iou``, ``precision`` and ``recall`` per class are pixel-level over everything added (micro-averaged:
  tp / (tp + fp + fn), tp / (tp + fp), tp / (tp + fn)); NaN where the denominator is 0.

Variants (``MetricConfig.from_name``; combine a Hausdorff variant with modifiers by ``+``, e.g.
``"2d+empty_dice_one"``):

- ``3d`` (default, also ``default``): as above.
- ``3d_directed``: only the directed term max_{p in P} min_{g in G} |p - g| (prediction -> truth).
- ``2d``: per 2D slice, the symmetric Hausdorff distance between P and G in that slice divided by
  sqrt(H**2 + W**2), as the 1st place's MONAI pipeline scored slices; averaged over all (slice, class) rows
  with non-empty truth (an empty predicted slice scores 1, a prediction on an empty truth slice adds no
  term), so ``hd`` is a mean over rows, like ``dice``, and a case-day's value is the mean over its rows.
- ``3d_unit_cube``: coordinates scaled to [0, 1] per axis (z / (D - 1), y / (H - 1), x / (W - 1); an axis
  of length 1 has a single coordinate), symmetric distance divided by sqrt(3).
- ``empty_dice_one`` (modifier): a (slice, class) row with both masks empty counts as Dice 1.
- ``mlebench``: MLE-bench's grader (:mod:`kaggle_kit.metric.mlebench`): the same Dice rows; one Hausdorff
  term per case-day on the three classes ORed, in the grader's column-major view of the slices, unit cube
  by (D, H, W) then / sqrt(3), identical 0, one empty 1, > 10x predicted voxels 1, both empty skipped;
  ``hd`` is the mean over case-days and per-class Hausdorff values are NaN (there are none).

The Hausdorff distance is exact, not sampled: squared distances are integers (the unit-cube variant uses
integer per-axis weights), computed only at the voxels of one set outside the other (see
``_metric_kernels``). One pass over each (pred, truth) pair gives the Dice counts, boxes and runs; scoring a
144x266x266 case-day with organ-like masks takes about 10 ms of CPU (``benchmarks/bench_metric.py``).
Limits: up to 4 classes (bit flags 0..3), and unit-cube volumes with (D-1)(H-1)(W-1) below about 3.8e7.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from kaggle_kit.data.raw import CLASSES
from kaggle_kit.metric.kernels import INF, Scan, directed_from_scan, scan, slices_from_scan
from kaggle_kit.metric.mlebench import case_day_hd, counts_and_any, hd_of_any

__all__ = [
    "HD_VARIANTS",
    "METRIC_NAMES",
    "MetricConfig",
    "Scorer",
    "class_stats",
    "hausdorff_normalised",
    "score_volumes",
]

HD_VARIANTS = ("3d", "3d_directed", "2d", "3d_unit_cube", "mlebench")
_ALIASES = {"default": "3d", "directed": "3d_directed", "unit_cube": "3d_unit_cube", "mle-bench": "mlebench",
            "mle_bench": "mlebench"}
_MODIFIERS = ("empty_dice_one",)
METRIC_NAMES = HD_VARIANTS + tuple(_ALIASES) + _MODIFIERS


@dataclass(frozen=True)
class MetricConfig:
    """Which metric: the Hausdorff variant, both-empty Dice rows, and the weights of the two terms.

    hd_variant: one of HD_VARIANTS. empty_dice_one: count a (slice, class) row with both masks empty as
    Dice 1 instead of skipping it. score = w_dice * dice + w_hd * (1 - hd).
    """

    hd_variant: str = "3d"
    empty_dice_one: bool = False
    w_dice: float = 0.4
    w_hd: float = 0.6

    def __post_init__(self):
        if self.hd_variant not in HD_VARIANTS:
            raise KeyError(f"unknown Hausdorff variant {self.hd_variant!r}; options: {list(HD_VARIANTS)}")

    @classmethod
    def from_name(cls, name: str) -> MetricConfig:
        """``"3d"``, ``"2d+empty_dice_one"``, ``"default"``, ``"empty_dice_one"`` ... -> MetricConfig.

        An unknown part raises KeyError listing the options.
        """
        cfg = cls()
        variant_seen = False
        for part in str(name).strip().split("+"):
            part = part.strip().lower()
            part = _ALIASES.get(part, part)
            if part in HD_VARIANTS:
                if variant_seen:
                    raise KeyError(f"metric name {name!r} names two Hausdorff variants; give one of {list(HD_VARIANTS)}")
                cfg = replace(cfg, hd_variant=part)
                variant_seen = True
            elif part == "empty_dice_one":
                cfg = replace(cfg, empty_dice_one=True)
            else:
                raise KeyError(f"unknown metric name part {part!r} in {name!r}; options: {list(METRIC_NAMES)} "
                               "(one Hausdorff variant, modifiers joined by '+')")
        if cfg.hd_variant == "mlebench" and cfg.empty_dice_one:
            raise KeyError(f"metric name {name!r}: mlebench is MLE-bench's grader as it is; it takes no modifier")
        return cfg

    @property
    def name(self) -> str:
        """Canonical name; ``MetricConfig.from_name(cfg.name)`` gives back the variant and Dice rule."""
        return self.hd_variant + ("+empty_dice_one" if self.empty_dice_one else "")

    def combine(self, dice: float, hd: float) -> float:
        return self.w_dice * dice + self.w_hd * (1.0 - hd)


def _as_config(cfg) -> MetricConfig:
    if isinstance(cfg, MetricConfig):
        return cfg
    return MetricConfig.from_name(cfg)


def _unit_cube_weights(shape) -> tuple[tuple[int, int, int], float]:
    """Integer squared per-axis weights making unit-cube distances exact, and the matching divisor.

    With s = (max(D-1, 1), max(H-1, 1), max(W-1, 1)), the squared distance of the scaled coordinates is
    (dz**2 (sy sx)**2 + dy**2 (sz sx)**2 + dx**2 (sz sy)**2) / (sz sy sx)**2.
    """
    sz, sy, sx = (max(int(n) - 1, 1) for n in shape)
    return ((sy * sx) ** 2, (sz * sx) ** 2, (sz * sy) ** 2), float(sz * sy * sx) * math.sqrt(3.0)


def _class_hd(sc: Scan, pred, truth, c: int, variant: str, work: dict, shape=None) -> tuple[float, int]:
    """Sum and number of normalised Hausdorff terms of class c in one case-day.

    sc: the scan of (pred, truth), uint8 (D, H, W) bit flags. 3D variants give (value, 1), or (0, 0) for an
    empty truth; ``2d`` gives the sum over the slices with non-empty truth and their number. ``shape``: the
    whole volume's (D, H, W) for the normalisers when pred/truth are a crop of it (see :func:`class_stats`).
    """
    if variant == "mlebench":  # one term per case-day on the classes ORed (Scorer.add), none per class
        return 0.0, 0
    d, h, w = truth.shape if shape is None else (int(x) for x in shape)
    n = sc.counts.shape[1]
    n_p, n_g, n_i = sc.counts[:, c, 0], sc.counts[:, c, 1], sc.counts[:, c, 2]
    if variant == "2d":
        rows = n_g > 0
        k = int(rows.sum())
        if k == 0:
            return 0.0, 0
        sq = np.maximum(slices_from_scan(sc, pred, truth, c, n + c), slices_from_scan(sc, pred, truth, n + c, c))
        hd = np.sqrt(sq[rows].astype(np.float64)) / math.sqrt(h * h + w * w)
        hd[n_p[rows] == 0] = 1.0
        return float(hd.sum()), k
    gp, gg, gi = int(n_p.sum()), int(n_g.sum()), int(n_i.sum())
    if gg == 0:
        return 0.0, 0
    if gp == 0:
        return 1.0, 1
    if variant == "3d_unit_cube":
        weights, norm = _unit_cube_weights((d, h, w))
    else:
        weights, norm = (1, 1, 1), math.sqrt(d * d + h * h + w * w)
    sq = 0
    if gi < gp:  # some predicted voxel lies outside the truth
        sq = directed_from_scan(sc, pred, truth, c, n + c, weights, work=work)
    if variant != "3d_directed" and gi < gg:
        sq = max(sq, directed_from_scan(sc, pred, truth, n + c, c, weights, work=work))
    assert sq < INF  # both sets are non-empty here
    return math.sqrt(sq) / norm, 1


def class_stats(sc: Scan, pred, truth, c: int, cfg: MetricConfig, work: dict,
                shape=None) -> tuple[float, int, float, int]:
    """The per-class statistics of one case-day: (dice_sum, dice_rows, hd_sum, hd_terms) of class c.

    The one place of the per-class formula: :class:`Scorer` sums these over classes and case-days, the OOF
    tuner (``kaggle_kit.tune.evaluate``) over case-days per class. sc: ``scan(pred, truth, n)`` of uint8
    (d, h, w) bit flags (class c is bit c of both). ``shape``: the whole volume's (D, H, W) when pred and
    truth are a crop of it holding every positive voxel of class c in both (the rows outside are empty in
    both: skipped, or Dice 1 with ``empty_dice_one``; the Hausdorff distance is translation-invariant and
    normalised by ``shape``). The Dice sum runs left to right over slices, so it is the same number for a
    crop and for its whole volume. ``mlebench`` has no per-class Hausdorff term (0.0, 0).
    """
    d = truth.shape[0] if shape is None else int(shape[0])
    n_p, n_g, n_i = sc.counts[:, c, 0], sc.counts[:, c, 1], sc.counts[:, c, 2]
    den = n_p + n_g
    rows = den > 0
    dice = np.where(rows, 2.0 * n_i / np.maximum(den, 1), 0.0)
    dice_sum = float(np.cumsum(dice)[-1]) if len(dice) else 0.0
    dice_n = int(rows.sum())
    if cfg.empty_dice_one:
        both_empty = d - dice_n
        dice_sum, dice_n = dice_sum + both_empty, dice_n + both_empty
    hd_sum, hd_n = _class_hd(sc, pred, truth, c, cfg.hd_variant, work, shape)
    return dice_sum, dice_n, hd_sum, hd_n


def _as_bits(vol: np.ndarray, name: str) -> np.ndarray:
    vol = np.asarray(vol)
    if vol.ndim != 3:
        raise ValueError(f"{name} must be a (D, H, W) volume, got shape {vol.shape}")
    if vol.dtype == np.bool_:
        return np.ascontiguousarray(vol).view(np.uint8)
    if vol.dtype != np.uint8:
        if not np.issubdtype(vol.dtype, np.integer):
            raise TypeError(f"{name} must be bool or uint8 bit flags, got {vol.dtype}")
        vol = vol.astype(np.uint8)
    return np.ascontiguousarray(vol)


def hausdorff_normalised(pred: np.ndarray, truth: np.ndarray, variant: str | MetricConfig = "3d") -> float:
    """Normalised Hausdorff distance of one class in one case-day, in [0, 1].

    pred, truth: bool (D, H, W) (uint8 0/1 accepted). variant: a name of HD_VARIANTS (or a MetricConfig).
    Returns NaN when the truth is empty (the volume is not scored), 1.0 when only the prediction is; for
    ``2d`` the mean over the slices with non-empty truth.
    """
    cfg = _as_config(variant)
    p = _as_bits(pred, "pred") != 0
    t = _as_bits(truth, "truth") != 0
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and truth {t.shape} differ in shape")
    p8, t8 = p.view(np.uint8), t.view(np.uint8)
    if cfg.hd_variant == "mlebench":
        return case_day_hd(p8, t8, 1)
    s, n = _class_hd(scan(p8, t8, 1), p8, t8, 0, cfg.hd_variant, {})
    return s / n if n else float("nan")


def _safe_div(a, b, empty=float("nan")) -> float:
    return float(a) / float(b) if b else empty


class Scorer:
    """Streaming scorer: add one case-day at a time, read the result whenever.

    ``add(case_day, pred, truth)`` with uint8 (D, H, W) bit flags (bit i = class i; bits >= n_classes are
    ignored; n_classes <= 4) accumulates per-slice Dice sums and counts, pixel tp/fp/fn per class and the
    Hausdorff terms per class. Memory is a few numbers per case-day (for ``case_day_table``) plus a reusable
    work buffer. Sums accumulate left to right (case-day by case-day, slice by slice): ``post.tune``
    reproduces them bit for bit, so keep that order.
    """

    def __init__(self, cfg: MetricConfig | str = MetricConfig(), n_classes: int = 3, classes=None):
        self.cfg = _as_config(cfg)
        self.n_classes = int(n_classes)
        if classes is None:
            classes = CLASSES if self.n_classes == len(CLASSES) else [f"class{i}" for i in range(self.n_classes)]
        if len(classes) != self.n_classes:
            raise ValueError(f"{len(classes)} class names for n_classes={self.n_classes}")
        self.classes = tuple(classes)
        self._work: dict = {}  # work buffers of the Hausdorff kernel, reused across case-days
        self.reset()

    def reset(self) -> None:
        c = self.n_classes
        self._records: list[dict] = []
        self._seen: set[str] = set()
        self._dice_sum = np.zeros(c)
        self._dice_n = np.zeros(c, np.int64)
        self._hd_sum = np.zeros(c)
        self._hd_n = np.zeros(c, np.int64)
        self._tp = np.zeros(c, np.int64)
        self._fp = np.zeros(c, np.int64)
        self._fn = np.zeros(c, np.int64)
        self._vol_hd = [0.0, 0]  # mlebench: sum and number of case-day Hausdorff terms

    def add(self, case_day: str, pred: np.ndarray, truth: np.ndarray) -> dict:
        """Score one case-day; returns its record: case_day, per-class ``dice`` and ``hd`` lists (NaN where
        there is nothing to score), their counts ``dice_n`` / ``hd_n``, and the case-day ``score``.

        pred, truth: uint8 (D, H, W) bit flags of the same shape. A case-day added twice is an error.
        """
        case_day = str(case_day)
        if case_day in self._seen:
            raise ValueError(f"case-day {case_day} was already added to this Scorer")
        pred = _as_bits(pred, "pred")
        truth = _as_bits(truth, "truth")
        if pred.shape != truth.shape:
            raise ValueError(f"{case_day}: pred shape {pred.shape} != truth shape {truth.shape}")
        cfg = self.cfg
        if cfg.hd_variant == "mlebench":  # Dice counts and the classes ORed in one pass (no runs needed)
            sc, any_vols = counts_and_any(pred, truth, self.n_classes)
        else:
            sc = scan(pred, truth, self.n_classes)
        counts = sc.counts
        n_p, n_g, n_i = counts[..., 0], counts[..., 1], counts[..., 2]  # (D, C)
        stats = [class_stats(sc, pred, truth, c, cfg, self._work) for c in range(self.n_classes)]
        dice_sum, hd_sum = (np.array([s[k] for s in stats], np.float64) for k in (0, 2))
        dice_n, hd_n = (np.array([s[k] for s in stats], np.int64) for k in (1, 3))
        self._dice_sum += dice_sum
        self._dice_n += dice_n
        self._hd_sum += hd_sum
        self._hd_n += hd_n
        vol_hd = None
        if cfg.hd_variant == "mlebench":
            vol_hd = hd_of_any(any_vols, self._work)
            if not math.isnan(vol_hd):
                self._vol_hd[0] += vol_hd
                self._vol_hd[1] += 1
        tp = n_i.sum(0)
        self._tp += tp
        self._fp += n_p.sum(0) - tp
        self._fn += n_g.sum(0) - tp
        dice = _safe_div(dice_sum.sum(), dice_n.sum(), 1.0)
        hd = _safe_div(hd_sum.sum(), hd_n.sum(), 0.0)
        if vol_hd is not None:
            hd = 0.0 if math.isnan(vol_hd) else vol_hd
        rec = {
            "case_day": case_day,
            "dice": [_safe_div(s, n) for s, n in zip(dice_sum, dice_n)],
            "hd": [_safe_div(s, n) for s, n in zip(hd_sum, hd_n)],
            "dice_n": dice_n.tolist(),
            "hd_n": hd_n.tolist(),
            "dice_all": dice,
            "hd_all": hd,
            "score": cfg.combine(dice, hd),
        }
        self._seen.add(case_day)
        self._records.append(rec)
        return rec

    def result(self) -> dict:
        """Totals: score, dice, hausdorff (mean normalised distance), counts, and per_class
        {class: {dice, hausdorff, score, iou, precision, recall, n_dice_rows, n_hd_terms}}."""
        cfg = self.cfg
        dice = _safe_div(self._dice_sum.sum(), self._dice_n.sum(), 1.0)
        hd = _safe_div(self._hd_sum.sum(), self._hd_n.sum(), 0.0)
        n_hd = int(self._hd_n.sum())
        if cfg.hd_variant == "mlebench":
            hd, n_hd = _safe_div(self._vol_hd[0], self._vol_hd[1], 0.0), self._vol_hd[1]
        per_class = {}
        for c, name in enumerate(self.classes):
            d_c = _safe_div(self._dice_sum[c], self._dice_n[c], 1.0)
            h_c = _safe_div(self._hd_sum[c], self._hd_n[c], 0.0)
            tp, fp, fn = int(self._tp[c]), int(self._fp[c]), int(self._fn[c])
            per_class[name] = {
                "dice": d_c, "hausdorff": h_c, "score": cfg.combine(d_c, h_c),
                "iou": _safe_div(tp, tp + fp + fn), "precision": _safe_div(tp, tp + fp),
                "recall": _safe_div(tp, tp + fn),
                "n_dice_rows": int(self._dice_n[c]), "n_hd_terms": int(self._hd_n[c]),
                "tp": tp, "fp": fp, "fn": fn,
            }
        if cfg.hd_variant == "mlebench":  # no per-class Hausdorff term: the classes are ORed per case-day
            for pc in per_class.values():
                pc["hausdorff"] = pc["score"] = float("nan")
        return {
            "score": cfg.combine(dice, hd), "dice": dice, "hausdorff": hd, "metric": cfg.name,
            "n_case_days": len(self._records), "n_dice_rows": int(self._dice_n.sum()),
            "n_hd_terms": n_hd, "per_class": per_class,
        }

    def case_day_table(self):
        """pandas.DataFrame, one row per case-day, worst (lowest score) first: case_day,
        dice_<class>, hd_<class> (NaN where nothing to score), dice, hausdorff, score."""
        import pandas as pd

        cols = ["case_day"] + [f"{k}_{c}" for c in self.classes for k in ("dice", "hd")] + ["dice", "hausdorff",
                                                                                          "score"]
        rows = []
        for r in self._records:
            row = [r["case_day"]]
            for c in range(self.n_classes):
                row += [r["dice"][c], r["hd"][c]]
            rows.append(row + [r["dice_all"], r["hd_all"], r["score"]])
        df = pd.DataFrame(rows, columns=cols)
        return df.sort_values(["score", "case_day"], kind="stable").reset_index(drop=True)


def score_volumes(items, cfg: MetricConfig | str = MetricConfig(), n_classes: int = 3) -> dict:
    """Score an iterable of (case_day, pred, truth) bit-flag volumes; returns ``Scorer.result()``."""
    scorer = Scorer(cfg, n_classes)
    for case_day, pred, truth in items:
        scorer.add(case_day, pred, truth)
    return scorer.result()
