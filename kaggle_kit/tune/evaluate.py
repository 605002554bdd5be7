"""The exact evaluation engine of OOF tuning: cropped OOF data, per-case-day statistics, memoised candidates.

Every candidate runs the kernels of :func:`kaggle_kit.post.postprocess.postprocess`, step by step in its
order and with its arguments, and is scored with the :class:`~kaggle_kit.metric.scorer.Scorer`'s formulas
(Dice rows from the metric's ``scan``, the Hausdorff term from ``directed_from_scan`` /
``slices_from_scan``, normalised by the full volume's shape). Sums run in the Scorer's order, so a setting's
score here equals, bit for bit, the score of ``tools/ensemble.py --split oof`` (``verify_setting`` runs that
path; the tests compare the two for random settings under every metric variant).

Why it is fast, all of it exact:

- a (case-day, class) is kept as a crop: the box of the voxels where some member reaches the lowest
  threshold searched, or the truth is set, plus one slice on each side along z (z smoothing looks at
  neighbours). Nothing outside can become positive, the rows outside are empty in both masks, and the
  Hausdorff distance is translation-invariant (its normaliser uses the full shape);
- the statistics of a candidate are kept per case-day (Dice sum, Dice rows, Hausdorff sum, Hausdorff
  terms), so its score on any subset of case-days (a fold, all folds but one) is a sum: nested runs share
  every evaluation;
- within a pass, candidates that share a pipeline prefix share its result (one fusion per weight set for a
  threshold sweep, one thresholded mask for a gating sweep, ...), and a final mask equal to one already
  scored for that (case-day, class) re-uses its statistics instead of recomputing the Hausdorff distance;
- case-days run on a thread pool (the numba kernels release the GIL).
"""
from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from kaggle_kit.data.raw import CLASSES
from kaggle_kit.utils import progress
from kaggle_kit.post import kernels as K
from kaggle_kit.metric.kernels import INF, directed_from_scan, scan, slices_from_scan
from kaggle_kit.metric.scorer import MetricConfig, Scorer, _unit_cube_weights
from kaggle_kit.post.postprocess import fuse_classifier
from kaggle_kit.tune.space import ClassParams, GlobalParams

__all__ = ["Evaluator", "OOFData", "class_key", "load_oof", "score_crop", "setting_keys", "total_score",
           "verify_setting"]


# canonical key of one class's pipeline: (w, thr, (w_cls, cls_window), gate_prob, gate_min, first_k, last_k,
# tail, conn, min_area, min_vol, z_smoothing); a pipeline stage's result depends on a prefix of it
_LEVELS = (1, 2, 5, 8, 10, 11, 12)  # fuse, threshold, gate, truncate, small 2D, small 3D, z smoothing


def _norm(w) -> tuple[float, ...]:
    """Raw weights -> the float32 normalised weights the ensemble uses (as exact Python floats)."""
    return tuple(float(x) for x in K.normalise_weights(np.asarray(w, np.float64)[:, None])[:, 0])


def class_key(cp: ClassParams, gp: GlobalParams) -> tuple:
    """Canonical key of a class's pipeline: settings with identical results get the same key."""
    gate_prob = cp.gate_prob or None  # 0: the classifier is never below it
    tail = (gp.tail_margin, cp.tail_prob) if gp.tail_margin is not None and cp.tail_prob else None
    uses_cls = (gate_prob is not None or tail is not None) and cp.w_cls
    w_cls = (_norm(cp.w_cls), int(cp.cls_window)) if uses_cls else ()
    min_area = cp.min_area if cp.min_area and cp.min_area > 1 else None
    min_vol = cp.min_vol if cp.min_vol and cp.min_vol > 1 else None
    conn = gp.connectivity if (min_area or min_vol) else 8
    return (_norm(cp.w_pix), float(cp.thr), w_cls, gate_prob, cp.gate_min or None, cp.first_k or None,
            cp.last_k or None, tail, conn, min_area, min_vol, bool(gp.z_smoothing))


# ------------------------------------------------------------------------------------------- data
@dataclass
class _Crop:
    """One (case-day, class): the box that can ever be positive, with the members' maps and the truth."""

    z0: int
    y0: int
    x0: int
    pix: np.ndarray  # uint8 (M, dz, 1, dy, dx)
    truth: np.ndarray  # uint8 (dz, dy, dx), 0/1


@dataclass
class _CaseDay:
    name: str
    fold: int
    shape: tuple[int, int, int]
    crops: list  # per class: _Crop or None (nothing can be predicted and the truth is empty)
    cls: np.ndarray | None  # uint8 (Mc, D, C)


@dataclass
class OOFData:
    """The OOF maps of the candidate members, cropped per (case-day, class), in the cache's case-day order."""

    pixel: list[str]
    classifier: list[str]
    case_days: list[_CaseDay]
    floor255: float  # lowest threshold (0..255 scale) any candidate uses
    classes: tuple[str, ...] = CLASSES
    source: dict = field(default_factory=dict)  # cache / preds root, for the exact re-run

    @property
    def folds(self) -> np.ndarray:
        return np.array([cd.fold for cd in self.case_days])

    def nbytes(self) -> int:
        return sum(cr.pix.nbytes + cr.truth.nbytes for cd in self.case_days for cr in cd.crops if cr is not None)

    @classmethod
    def from_arrays(cls, items, pixel, classifier=(), floor_thr: float = 0.5, classes=CLASSES) -> OOFData:
        """``items``: iterable of (case_day, fold, truth uint8 (D, H, W) bit flags, pixel uint8
        (M, D, C, H, W), classifier uint8 (Mc, D, C) or None) -> OOFData (maps cropped, not kept)."""
        lo = _floor(floor_thr)
        cds = [_case_day(name, fold, truth, pix, clf, lo, len(classes)) for name, fold, truth, pix, clf in items]
        return cls(list(pixel), list(classifier), cds, float(np.float64(floor_thr) * 255.0), tuple(classes))


def _floor(floor_thr: float) -> int:
    """The smallest uint8 member value that can reach ``floor_thr``: a fused value is at most the largest
    member value times (1 + 1e-6) (float32 weights summing to 1), so below this nothing ever passes."""
    return math.floor(float(np.float64(floor_thr) * 255.0) - 0.01) + 1


def _case_day(name, fold, truth, pix, clf, lo: int, n_classes: int) -> _CaseDay:
    return _CaseDay(name, int(fold), tuple(truth.shape), _crops(pix, truth, lo, n_classes),
                    None if clf is None or not len(clf) else np.ascontiguousarray(clf))


def _crops(pix: np.ndarray, truth: np.ndarray, lo: int, n_classes: int) -> list:
    d = truth.shape[0]
    out = []
    for c in range(n_classes):
        on = (pix[:, :, c] >= lo).any(0) | ((truth >> c) & 1).astype(bool)
        zs = np.flatnonzero(on.any((1, 2)))
        if not zs.size:
            out.append(None)
            continue
        ys, xs = np.flatnonzero(on.any((0, 2))), np.flatnonzero(on.any((0, 1)))
        z0, z1 = max(int(zs[0]) - 1, 0), min(int(zs[-1]) + 2, d)  # one slice of context for z smoothing
        y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
        crop_pix = np.ascontiguousarray(pix[:, z0:z1, c:c + 1, y0:y1, x0:x1])
        crop_truth = np.ascontiguousarray((truth[z0:z1, y0:y1, x0:x1] >> c) & 1, dtype=np.uint8)
        out.append(_Crop(z0, y0, x0, crop_pix, crop_truth))
    return out


def load_oof(cache, preds_root, pixel: list[str], classifier: list[str], floor_thr: float,
             case_days=None, workers: int = 2) -> OOFData:
    """Read the OOF maps of the members from the store and the truth from the cache, cropping as it goes
    (``workers`` threads; memory: the crops plus one case-day's maps per thread)."""
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.io.probmaps import ProbMapError, read_manifest, read_probmap

    cache_obj = Cache(cache)
    index = cache_obj.index("train")
    fold_of = cache_obj.fold_of_case()
    for exp, kind in [(e, "pixel") for e in pixel] + [(e, "classifier") for e in classifier]:
        man = read_manifest(preds_root, exp, "oof")
        if man["kind"] != kind:
            raise ProbMapError(f"member {exp!r}: the search says kind {kind!r}, its OOF maps are {man['kind']!r}")
        if tuple(man["classes"]) != CLASSES:
            raise ProbMapError(f"member {exp!r}: maps have classes {man['classes']}; expected {list(CLASSES)}")
    names = cache_obj.case_days("train") if case_days is None else list(case_days)
    groups = {cd: g for cd, g in index.groupby("case_day", sort=False)}
    c, lo = len(CLASSES), _floor(floor_thr)

    def one(cd: str) -> _CaseDay:  # decoding (zlib) and cropping release the GIL for the most part
        g = groups[cd].sort_values("z")
        d, h, w = len(g), int(g["height"].iloc[0]), int(g["width"].iloc[0])
        numbers = g["slice"].tolist()
        pix = np.empty((len(pixel), d, c, h, w), np.uint8)
        for i, exp in enumerate(pixel):
            read_probmap(preds_root, exp, "oof", cd, (d, c, h, w), numbers, out=pix[i])
        clf = np.stack([read_probmap(preds_root, e, "oof", cd, (d, c), numbers) for e in classifier]) \
            if classifier else None
        case = int(g["case"].iloc[0])
        if case not in fold_of:
            raise ProbMapError(f"{cd}: case {case} has no fold in {cache_obj.root / 'folds.csv'}")
        return _case_day(cd, fold_of[case], np.asarray(cache_obj.mask("train", cd)), pix, clf, lo, c)

    with ThreadPoolExecutor(max(1, int(workers))) as ex:
        cds = list(progress(ex.map(one, names), total=len(names), desc="load OOF maps", unit="case-day"))
    return OOFData(list(pixel), list(classifier), cds, float(np.float64(floor_thr) * 255.0), CLASSES,
                   {"cache": str(cache), "preds": str(preds_root)})


# --------------------------------------------------------------------------------------- scoring
def _seq_sum(a) -> float:
    """Left-to-right sum (the order of the Scorer's accumulations, so that totals match it bit for bit)."""
    s = 0.0
    for v in np.asarray(a, np.float64).tolist():
        s += v
    return s


def score_crop(bits: np.ndarray, truth: np.ndarray, full_shape, cfg: MetricConfig, work: dict) -> tuple:
    """(dice_sum, dice_rows, hd_sum, hd_terms) of one class in one case-day, from the crop of its predicted
    (bit 0) and true masks, uint8 (dz, dy, dx); the formulas of :class:`Scorer` (``add`` / ``_class_hd``)
    with the full volume's ``full_shape`` (D, H, W) for the normalisers and the rows outside the crop (empty
    in both masks)."""
    d, h, w = full_shape
    sc = scan(bits, truth, 1)
    n_p, n_g, n_i = sc.counts[:, 0, 0], sc.counts[:, 0, 1], sc.counts[:, 0, 2]
    den = n_p + n_g
    rows = den > 0
    dice_sum = _seq_sum(np.where(rows, 2.0 * n_i / np.maximum(den, 1), 0.0))
    dice_n = int(rows.sum())
    if cfg.empty_dice_one:
        both_empty = d - dice_n
        dice_sum, dice_n = dice_sum + both_empty, dice_n + both_empty
    if cfg.hd_variant == "2d":
        keep = n_g > 0
        k = int(keep.sum())
        if not k:
            return dice_sum, dice_n, 0.0, 0
        sq = np.maximum(slices_from_scan(sc, bits, truth, 0, 1), slices_from_scan(sc, bits, truth, 1, 0))
        hd = np.sqrt(sq[keep].astype(np.float64)) / math.sqrt(h * h + w * w)
        hd[n_p[keep] == 0] = 1.0
        return dice_sum, dice_n, float(hd.sum()), k
    gp, gg, gi = int(n_p.sum()), int(n_g.sum()), int(n_i.sum())
    if gg == 0:
        return dice_sum, dice_n, 0.0, 0
    if gp == 0:
        return dice_sum, dice_n, 1.0, 1
    if cfg.hd_variant == "3d_unit_cube":
        weights, norm = _unit_cube_weights(full_shape)
    else:
        weights, norm = (1, 1, 1), math.sqrt(d * d + h * h + w * w)
    sq = 0
    if gi < gp:
        sq = directed_from_scan(sc, bits, truth, 0, 1, weights, work=work)
    if cfg.hd_variant != "3d_directed" and gi < gg:
        sq = max(sq, directed_from_scan(sc, bits, truth, 1, 0, weights, work=work))
    assert sq < INF
    return dice_sum, dice_n, math.sqrt(sq) / norm, 1


def total_score(sums: np.ndarray, cfg: MetricConfig) -> float:
    """Score from per-class sums (C, 4) = (dice_sum, dice_rows, hd_sum, hd_terms), as ``Scorer.result``."""
    ds, dn = _seq_sum(sums[:, 0]), round(_seq_sum(sums[:, 1]))
    hs, hn = _seq_sum(sums[:, 2]), round(_seq_sum(sums[:, 3]))
    return cfg.combine(ds / dn if dn else 1.0, hs / hn if hn else 0.0)


# ------------------------------------------------------------------------------------- evaluation
class _Pass:
    """Evaluate a batch of class keys on every case-day: per (case-day, class), shared pipeline prefixes."""

    def __init__(self, data: OOFData, metric: MetricConfig):
        self.data, self.metric = data, metric
        self.local = threading.local()

    def case_day(self, cd: _CaseDay, by_class: dict) -> dict:
        work = getattr(self.local, "work", None)
        if work is None:
            work = self.local.work = {}
        out = {}
        cls_cache: dict = {}
        for c, keys in by_class.items():
            stats = self._class(cd, c, keys, work, cls_cache)
            for k, s in zip(keys, stats):
                out[(c,) + k] = s
        return out

    def _cls(self, cd: _CaseDay, c: int, w_cls: tuple, cache: dict) -> np.ndarray:
        """The fused classifier prob of class c (D, 1), as ``postprocess`` gets it; w_cls = (weights, window)."""
        key = (c, w_cls)
        if key not in cache:
            weights, window = w_cls
            cache[key] = fuse_classifier(cd.cls[:, :, c:c + 1], np.asarray(weights, np.float32)[:, None],
                                         (window,))
        return cache[key]

    def _class(self, cd: _CaseDay, c: int, keys: list, work: dict, cls_cache: dict) -> list:
        crop = cd.crops[c]
        if crop is None:  # no candidate pixel and no truth: both-empty rows only
            dn = cd.shape[0] if self.metric.empty_dice_one else 0
            return [(float(dn), dn, 0.0, 0)] * len(keys)
        ranks = [{} for _ in _LEVELS]
        order = sorted(range(len(keys)), key=lambda i: tuple(
            ranks[j].setdefault(keys[i][:n], len(ranks[j])) for j, n in enumerate(_LEVELS)))
        remaining: dict = {}
        for k in keys:
            for n in _LEVELS:
                remaining[k[:n]] = remaining.get(k[:n], 0) + 1
        cache: dict = {}
        scored: list = []  # (counts, bits, stats) of final masks already scored
        stats = [None] * len(keys)
        for i in order:
            k = keys[i]
            level, state = -1, None
            for j in range(len(_LEVELS) - 1, -1, -1):
                if k[:_LEVELS[j]] in cache:
                    level, state = j, cache[k[:_LEVELS[j]]]
                    break
            bits = counts = fused = None
            if level == 0:
                fused = state
            elif level > 0:
                bits, counts = state[0].copy(), state[1].copy()
            for j in range(level + 1, len(_LEVELS)):
                if j == 0:
                    if remaining[k[:1]] > 1:  # a sweep shares this fusion: keep the float map
                        fused = K.fuse(crop.pix, np.asarray(k[0], np.float32)[:, None])
                        cache[k[:1]] = fused
                    continue
                if j == 1:
                    thr = np.array([k[1] * 255.0])
                    if fused is not None:
                        bits, counts = K.threshold(fused, thr)
                    else:
                        bits, counts = K.fuse_threshold(crop.pix, np.asarray(k[0], np.float32)[:, None], thr)
                else:
                    self._step(j, k, cd, c, crop, bits, counts, cls_cache)
                if remaining[k[:_LEVELS[j]]] > 1:
                    cache[k[:_LEVELS[j]]] = (bits.copy(), counts.copy())
            for n in _LEVELS:
                remaining[k[:n]] -= 1
                if not remaining[k[:n]]:
                    cache.pop(k[:n], None)
            for cnt, b, st in scored:
                if np.array_equal(cnt, counts) and np.array_equal(b, bits):
                    stats[i] = st
                    break
            else:
                stats[i] = score_crop(bits, crop.truth, cd.shape, self.metric, work)
                scored.insert(0, (counts, bits, stats[i]))
                del scored[4:]
        return stats

    def _step(self, j, k, cd, c, crop, bits, counts, cls_cache) -> None:
        """Pipeline step j (2: gate, 3: truncate, 4: small 2D, 5: small 3D, 6: z smoothing) in place, with
        the calls and arguments :func:`postprocess` makes for this class."""
        _, _, w_cls, gate_prob, gate_min, first_k, last_k, tail, conn, min_area, min_vol, zs = k
        dz = bits.shape[0]
        if j == 2 and (gate_prob is not None or gate_min is not None):
            cls = self._cls(cd, c, w_cls, cls_cache)[crop.z0:crop.z0 + dz] if gate_prob is not None else None
            K.gate(bits, counts, cls, None if gate_prob is None else np.array([gate_prob * 255.0]),
                   None if gate_min is None else np.array([gate_min], np.int64))
        elif j == 3 and (first_k or last_k or tail):
            cls = self._cls(cd, c, w_cls, cls_cache) if tail else None
            lo, hi = K.keep_range(cd.shape[0], (first_k or 0,), (last_k or 0,), cls,
                                  None if tail is None else np.array([tail[1] * 255.0]),
                                  None if tail is None else tail[0])
            K.truncate(bits, counts, lo - crop.z0, hi - crop.z0)
        elif j == 4 and min_area:
            K.remove_small_2d(bits, counts, np.array([min_area], np.int64), conn)
        elif j == 5 and min_vol:
            K.remove_small_3d(bits, counts, np.array([min_vol], np.int64), conn)
        elif j == 6 and zs:
            K.z_smooth(bits, counts)


class Evaluator:
    """Memoised per-case-day statistics of class keys: ``stats(key)`` float64 (N, 4) = per case-day
    (dice_sum, dice_rows, hd_sum, hd_terms)."""

    def __init__(self, data: OOFData, metric: MetricConfig, workers: int = 2):
        self.data, self.metric, self.workers = data, metric, max(1, int(workers))
        self.memo: dict = {}
        self.n_passes = 0
        self.seconds = 0.0

    def evaluate(self, keys, desc: str = "evaluate") -> None:
        todo = [k for k in dict.fromkeys(keys) if k not in self.memo]
        if not todo:
            return
        t0 = time.perf_counter()
        by_class: dict = {}
        for k in todo:
            by_class.setdefault(k[0], []).append(k[1:])
        n = len(self.data.case_days)
        res = {k: np.zeros((n, 4)) for k in todo}
        p = _Pass(self.data, self.metric)

        def one(i):
            return i, p.case_day(self.data.case_days[i], by_class)

        bar = progress(total=n, desc=f"{desc} ({len(todo)} cand.)", unit="case-day", leave=False)
        with ThreadPoolExecutor(self.workers) as ex:
            for i, out in ex.map(one, range(n)):
                for k, s in out.items():
                    res[k][i] = s
                bar.update()
        bar.close()
        self.memo.update(res)
        self.n_passes += 1
        self.seconds += time.perf_counter() - t0

    def stats(self, key) -> np.ndarray:
        if key not in self.memo:
            self.evaluate([key])
        return self.memo[key]

    def sums(self, key, idx) -> np.ndarray:
        return self.stats(key)[idx].sum(0)

    def score(self, keys, idx, exact: bool = False) -> float:
        """Score of one key per class over the case-days ``idx`` (exact: sums in case-day order, as the
        Scorer accumulates)."""
        self.evaluate(keys)
        if exact:
            sums = np.array([[_seq_sum(self.memo[k][idx, j]) for j in range(4)] for k in keys])
        else:
            sums = np.array([self.sums(k, idx) for k in keys])
        return total_score(sums, self.metric)


def setting_keys(setting) -> list[tuple]:
    cps, gp = setting
    return [(c,) + class_key(cp, gp) for c, cp in enumerate(cps)]


def verify_setting(ens_obj: dict, cache, preds_root, case_days=None) -> dict:
    """Run a tuned ensemble mapping exactly as ``tools/ensemble.py --split oof`` does (``fuse_case_day`` ->
    ``Scorer`` over the cache masks, case-days in the cache's order); returns ``Scorer.result()``."""
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.io.probmaps import read_probmap
    from kaggle_kit.post.ensemble import fuse_case_day, parse_ensemble_config

    cfg = parse_ensemble_config(ens_obj, "<tuned>")
    cache_obj = Cache(cache)
    index = cache_obj.index("train")
    groups = {cd: g for cd, g in index.groupby("case_day", sort=False)}
    names = cache_obj.case_days("train") if case_days is None else list(case_days)
    scorer = Scorer(cfg.metric, n_classes=len(cfg.classes))
    c = len(cfg.classes)
    for cd in progress(names, desc="exact re-run", unit="case-day"):
        g = groups[cd].sort_values("z")
        d, h, w = len(g), int(g["height"].iloc[0]), int(g["width"].iloc[0])
        numbers = g["slice"].tolist()
        maps = {m.name: read_probmap(preds_root, m.exp, "oof", cd, (d, c, h, w) if m.kind == "pixel" else (d, c),
                                     numbers) for m in cfg.members}
        bits, _ = fuse_case_day(cfg, maps, cd, (d, h, w))
        scorer.add(cd, bits, np.asarray(cache_obj.mask("train", cd)))
    return scorer.result()
