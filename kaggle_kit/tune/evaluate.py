"""The exact evaluation engine of OOF tuning: cropped OOF data, per-case-day statistics, memoised candidates.

Every candidate runs the steps of :data:`kaggle_kit.post.steps.STEPS` in order, each through the same
step function as :func:`kaggle_kit.post.postprocess.postprocess` (:meth:`Step.apply_key`: the same kernels
with the same arguments, on one class's crop), and is scored by
:func:`kaggle_kit.metric.scorer.class_stats`, the per-class statistics the
:class:`~kaggle_kit.metric.scorer.Scorer` sums, normalised by the full volume's shape. Sums run in the
Scorer's order, so a setting's score here equals, bit for bit, the score of ``tools/ensemble.py --split
oof`` (``verify_setting`` runs that path; the tests compare the two for random settings under every metric
variant).

Why it is fast, all of it exact:

- a (case-day, class) is kept as a crop: the box of the voxels where some member reaches the lowest
  threshold searched, or the truth is set, plus one slice on each side along z (z smoothing looks at
  neighbours), and within the box only its active voxels (some member reaches that floor: a few per cent
  of the box) with the members' values, the truth bit-packed (:mod:`kaggle_kit.post.kernels.sparse`:
  the fused values and thresholded masks are the dense kernels', bit for bit). Nothing outside can become positive (every step of STEPS declares it, ``Step.crop_safe``;
  when one does not, every crop is the whole volume), the rows outside are empty in both masks, and the
  Hausdorff distance is translation-invariant (its normaliser uses the full shape); a plane's peak fused value
  (presence per volume) is its crop's on every plane that had a positive voxel, the only planes it is read on;
- the statistics of a candidate are kept per case-day (Dice sum, Dice rows, Hausdorff sum, Hausdorff
  terms), so its score on any subset of case-days (a fold, all folds but one) is a sum: nested runs share
  every evaluation;
- within a pass, candidates that share a pipeline prefix share its result (one fusion per weight set for a
  threshold sweep, one thresholded mask for a gating sweep, ...: a class key has one element per step, see
  :func:`class_key`), and a final mask equal to one already
  scored for that (case-day, class) re-uses its statistics instead of recomputing the Hausdorff distance;
- a removal-only step (``Step.removes_only``) that leaves every plane's count unchanged left the mask
  unchanged, so the key is, on that (case-day, class), the key with the step off: its statistics are
  re-used when known (this pass or an earlier one) and the rest of the pipeline, the scan and the Hausdorff
  distance are skipped. In a sweep most values change nothing on most case-days;
- case-days run in forked processes (:class:`_Workers`; threads where the platform does not fork), each a
  fixed share of the case-days for the whole run.
"""
from __future__ import annotations

import math
import multiprocessing
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import connection as mp_connection

import numpy as np

from kaggle_kit.data.raw import CLASSES
from kaggle_kit.metric.kernels import scan
from kaggle_kit.metric.scorer import MetricConfig, Scorer, class_stats
from kaggle_kit.post import kernels as K
from kaggle_kit.post.kernels import sparse as S
from kaggle_kit.post.postprocess import fuse_classifier
from kaggle_kit.post.steps import CLASSIFIER, STEPS, Context
from kaggle_kit.tune.space import class_values
from kaggle_kit.utils import progress

__all__ = ["LEVELS", "Evaluator", "OOFData", "capped_outputs", "class_key", "load_oof", "probability_ceilings",
           "setting_keys", "total_score", "verify_setting", "whole_volumes"]

_FUSION, _STEPS = STEPS[0], STEPS[1:]
# A class key (see class_key) is (weights, threshold, key of STEPS[1], ..., key of STEPS[-1]); the result of
# the fused float map depends on its first element, the thresholded mask on the first two, the mask after
# STEPS[i] on the first i + 2. These prefix lengths are the levels the evaluation caches.
LEVELS = tuple(range(1, len(STEPS) + 2))


def _norm(w) -> tuple[float, ...]:
    """Raw weights -> the float32 normalised weights the ensemble uses (as exact Python floats)."""
    return tuple(float(x) for x in K.normalise_weights(np.asarray(w, np.float64)[:, None])[:, 0])


def class_key(cp, gp) -> tuple:
    """Canonical key of a class's pipeline (``cp``: its ClassParams, ``gp``: the GlobalParams): normalised
    pixel weights, threshold, then one element per step of STEPS[1:] (:meth:`Step.key`: None when the step
    is a no-op for the class, else the numbers it reads, with the classifier's normalised weights and z
    window when it reads the classifier). Settings with identical results mostly get the same key; settings
    with different results never do."""
    v = class_values(cp, gp)
    cls_key = (_norm(cp.classifier_weights), int(cp.z_window)) if cp.classifier_weights else ()
    return (_norm(cp.weights), float(cp.threshold)) + tuple(s.key(v, cls_key) for s in _STEPS)


# ------------------------------------------------------------------------------------------- data
@dataclass
class _Crop:
    """One (case-day, class): the box that can ever be positive, kept compact (:mod:`kaggle_kit.post.kernels.
    sparse`): the flat indices of its active voxels (some member reaches the floor), the members' values
    there, and the truth bit-packed."""

    z0: int
    y0: int
    x0: int
    shape: tuple[int, int, int]  # (dz, dy, dx) of the box
    idx: np.ndarray  # int32/int64 (n,): active voxels, flat in the box, sorted
    vals: np.ndarray  # uint8 (M, n): the members' values at them
    truth_bits: np.ndarray  # uint8: np.packbits of the box's truth (0/1), flat

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.idx.nbytes + self.vals.nbytes + self.truth_bits.nbytes

    def truth(self) -> np.ndarray:
        """uint8 (dz, dy, dx), 0/1."""
        return np.unpackbits(self.truth_bits, count=self.size).reshape(self.shape)

    def pix(self) -> np.ndarray:
        """uint8 (M, dz, 1, dy, dx): the members' maps on the box, 0 off the active voxels (tests, reports)."""
        out = np.zeros((self.vals.shape[0], self.size), np.uint8)
        out[:, self.idx] = self.vals
        return out.reshape((-1, self.shape[0], 1) + self.shape[1:])


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
        return sum(cr.nbytes for cd in self.case_days for cr in cd.crops if cr is not None)

    @classmethod
    def from_arrays(cls, items, pixel, classifier=(), floor_thr: float = 0.5, classes=CLASSES) -> OOFData:
        """``items``: iterable of (case_day, fold, truth uint8 (D, H, W) bit flags, pixel uint8
        (M, D, C, H, W), classifier uint8 (Mc, D, C) or None) -> OOFData (maps cropped, not kept)."""
        lo = _floor(floor_thr)
        cds = [_case_day(name, fold, truth, pix, clf, lo, len(classes)) for name, fold, truth, pix, clf in items]
        return cls(list(pixel), list(classifier), cds, float(np.float64(floor_thr) * 255.0), tuple(classes))


def whole_volumes() -> bool:
    """Whether the crops must be whole volumes: some step may set voxels outside its input's box."""
    return not all(s.crop_safe for s in _STEPS)


def _floor(floor_thr: float) -> int:
    """The smallest uint8 member value that can reach ``floor_thr``: a fused value is at most the largest
    member value times (1 + 1e-6) (float32 weights summing to 1), so below this nothing ever passes."""
    return math.floor(float(np.float64(floor_thr) * 255.0) - 0.01) + 1


def _case_day(name, fold, truth, pix, clf, lo: int, n_classes: int) -> _CaseDay:
    return _CaseDay(name, int(fold), tuple(truth.shape), _crops(pix, truth, lo, n_classes),
                    None if clf is None or not len(clf) else np.ascontiguousarray(clf))


def _crops(pix: np.ndarray, truth: np.ndarray, lo: int, n_classes: int) -> list:
    d = truth.shape[0]
    truth = np.ascontiguousarray(truth, np.uint8)
    out = []
    whole = whole_volumes()
    for c in range(n_classes):
        if whole:  # every voxel kept: a step may set voxels anywhere, and read the peak of any plane
            box, floor = (0, d) + (0, truth.shape[1], 0, truth.shape[2]), 0
        else:
            box, floor = S.active_box(pix, c, lo, truth), lo
            if box is None:
                out.append(None)
                continue
            z0, z1, y0, y1, x0, x1 = box
            box = (max(z0 - 1, 0), min(z1 + 1, d), y0, y1, x0, x1)  # one slice of context for z smoothing
        z0, z1, y0, y1, x0, x1 = box
        idx, vals = S.active_voxels(pix, c, floor, box)
        t = (truth[z0:z1, y0:y1, x0:x1] >> c) & 1
        out.append(_Crop(z0, y0, x0, t.shape, idx, vals, np.packbits(t.reshape(-1))))
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


def probability_ceilings(data: OOFData) -> list[dict]:
    """Each pixel member's highest OOF probability per (fold, class) where the fold's truth holds the class:
    rows {member, fold, class, ceiling, truth_voxels}. ``ceiling`` is on the 0..1 scale, or None where the
    member never reaches the lowest threshold the search uses (``data.floor255``: below it the maps were not
    kept). A fold and class whose output stays below a threshold loses the class on every case-day of that
    fold at that threshold: a capped ("dead") output, e.g. a head whose weights on the last features all went
    negative."""
    lo = math.floor(data.floor255 - 0.01) + 1  # the smallest uint8 value the crops were cut at (_floor)
    acc: dict[tuple, list] = {}
    for cd in data.case_days:
        for c, crop in enumerate(cd.crops):
            if crop is None:  # nothing reaches the floor there and the truth is empty: no row to add to
                continue
            n_true = int(np.unpackbits(crop.truth_bits).sum())  # the pad bits are 0
            for m in range(len(data.pixel)):
                top = int(crop.vals[m].max()) if crop.vals.shape[1] else 0  # the box's max where it reaches lo
                a = acc.setdefault((m, cd.fold, c), [0, 0])
                a[0], a[1] = max(a[0], top), a[1] + n_true
    rows = []
    for (m, fold, c), (top, n_true) in sorted(acc.items()):
        if n_true == 0:  # a fold without the class: a low ceiling is right there
            continue
        rows.append({"member": data.pixel[m], "fold": fold, "class": data.classes[c], "truth_voxels": n_true,
                     "ceiling": round(top / 255.0, 4) if top >= lo else None})
    return rows


def capped_outputs(rows: list[dict], thresholds) -> list[dict]:
    """The rows of :func:`probability_ceilings` whose ceiling lies below the highest candidate threshold of
    their class (``thresholds``: class -> candidate list): every candidate above the ceiling deletes the class
    on the whole fold. Each returned row gets ``above``: those candidates."""
    out = []
    for r in rows:
        top = r["ceiling"] if r["ceiling"] is not None else 0.0
        above = sorted(t for t in thresholds[r["class"]] if t > top)
        if above:
            out.append({**r, "above": above})
    return out


# --------------------------------------------------------------------------------------- scoring
def _seq_sum(a) -> float:
    """Left-to-right sum (the order of the Scorer's accumulations, so that totals match it bit for bit)."""
    s = 0.0
    for v in np.asarray(a, np.float64).tolist():
        s += v
    return s


def total_score(sums: np.ndarray, cfg: MetricConfig) -> float:
    """Score from per-class sums (C, 4) = (dice_sum, dice_rows, hd_sum, hd_terms), as ``Scorer.result``."""
    ds, dn = _seq_sum(sums[:, 0]), round(_seq_sum(sums[:, 1]))
    hs, hn = _seq_sum(sums[:, 2]), round(_seq_sum(sums[:, 3]))
    return cfg.combine(ds / dn if dn else 1.0, hs / hn if hn else 0.0)


# ------------------------------------------------------------------------------------- evaluation
class _Pass:
    """Evaluate a batch of class keys on every case-day: per (case-day, class), shared pipeline prefixes."""

    def __init__(self, data: OOFData, metric: MetricConfig, memo: dict | None = None):
        self.data, self.metric, self.memo = data, metric, {} if memo is None else memo
        self.local = threading.local()

    def case_day(self, cd: _CaseDay, by_class: dict, index: int = -1) -> dict:
        work = getattr(self.local, "work", None)
        if work is None:
            work = self.local.work = {}
        out = {}
        cls_cache: dict = {}
        for c, keys in by_class.items():
            stats = self._class(cd, c, keys, work, cls_cache, index)
            for k, s in zip(keys, stats):
                out[(c,) + k] = s
        return out

    def _cls(self, cd: _CaseDay, c: int, w_cls: tuple, cache: dict) -> np.ndarray:
        """The fused classifier prob of class c (D, 1), as ``postprocess`` gets it; w_cls = (normalised
        weights, z window), the classifier element of a step key."""
        key = (c, w_cls)
        if key not in cache:
            weights, window = w_cls
            cache[key] = fuse_classifier(cd.cls[:, :, c:c + 1], np.asarray(weights, np.float32)[:, None],
                                         (window,))
        return cache[key]

    def _known(self, c: int, key: tuple, done: dict, index: int):
        """Statistics already computed for ``key`` on this (case-day, class): in this pass or an earlier one."""
        st = done.get(key)
        if st is None and index >= 0:
            row = self.memo.get((c,) + key)
            st = None if row is None else row[index]
        return st

    def _class(self, cd: _CaseDay, c: int, keys: list, work: dict, cls_cache: dict, index: int = -1) -> list:
        crop = cd.crops[c]
        if crop is None:  # no candidate pixel and no truth: both-empty rows only
            empty = np.zeros((1, 1, 1), np.uint8)
            st = class_stats(scan(empty, empty, 1), empty, empty, 0, self.metric, work, cd.shape)
            return [st] * len(keys)
        ranks = [{} for _ in LEVELS]
        order = sorted(range(len(keys)), key=lambda i: tuple(
            ranks[j].setdefault(keys[i][:n], len(ranks[j])) for j, n in enumerate(LEVELS)))
        remaining: dict = {}
        for k in keys:
            for n in LEVELS:
                remaining[k[:n]] = remaining.get(k[:n], 0) + 1
        truth = crop.truth()
        cache: dict = {}
        peaks: dict = {}  # normalised weights -> the crop's plane maxima of the fused map (dz, 1)
        scored: list = []  # (counts, bits, stats) of final masks already scored
        stats = [None] * len(keys)
        done: dict = {}  # key -> statistics computed in this pass, also under its effective key
        for i in order:
            k = keys[i]
            ek = k  # k with every removal-only step that changed nothing here switched off
            st = done.get(k)
            if st is None:
                st, ek = self._run_key(cd, c, k, crop, truth, cache, remaining, peaks, cls_cache, done, index,
                                       scored, work)
            stats[i] = done[k] = done[ek] = st
            for n in LEVELS:
                remaining[k[:n]] -= 1
                if not remaining[k[:n]]:
                    cache.pop(k[:n], None)
        return stats

    def _run_key(self, cd, c, k, crop, truth, cache, remaining, peaks, cls_cache, done, index, scored, work):
        """The statistics of key ``k`` on one (case-day, class), from the deepest cached prefix; returns them and
        the effective key (k with the removal-only steps that removed nothing here switched off)."""
        ek = k
        level, state = -1, None
        for j in range(len(LEVELS) - 1, -1, -1):
            if k[:LEVELS[j]] in cache:
                level, state = j, cache[k[:LEVELS[j]]]
                break
        bits = counts = fused = snap = None  # snap: a cached copy equal to bits (None once bits change)
        if level == 0:
            fused = state
        elif level > 0:  # the last key to read a cached mask takes it (steps work in place)
            prefix = k[:LEVELS[level]]
            if remaining[prefix] == 1 and not any(v is state for q, v in cache.items() if q != prefix):
                bits, counts = state
            else:
                bits, counts = state[0].copy(), state[1].copy()
                snap = state
        weights = np.asarray(k[0], np.float32)[:, None]
        for j in range(level + 1, len(LEVELS)):
            if j == 0:
                if remaining[k[:1]] > 1:  # a sweep shares this fusion: keep the fused values
                    fused = S.fuse_sparse(crop.vals, weights)
                    cache[k[:1]] = fused
                continue
            if j == 1:
                thr = _FUSION._thr255({"threshold": (k[1],)})[0]
                bits, counts = (S.threshold_sparse(fused, crop.idx, thr, crop.shape) if fused is not None
                                else S.fuse_threshold_sparse(crop.vals, weights, crop.idx, thr, crop.shape))
                snap = None
            elif k[j] is not None:
                step, kv = _STEPS[j - 2], dict(k[j])
                cls_key = kv.get(CLASSIFIER)
                peak = None
                if step.peak is not None and step.peak(kv):  # the key holds the step's own numbers
                    if k[0] not in peaks:
                        f = fused if fused is not None else S.fuse_sparse(crop.vals, weights)
                        peaks[k[0]] = S.plane_max_sparse(f, crop.idx, crop.shape)
                    peak = peaks[k[0]]
                ctx = Context(cd.shape[0], crop.z0, None if cls_key is None else self._cls(cd, c, cls_key, cls_cache),
                              peak)
                before = counts.copy() if step.removes_only else None
                step.apply_key(bits, counts, k[j], ctx)
                if before is not None and np.array_equal(before, counts):  # nothing removed: the mask is unchanged
                    ek = ek[:j] + (None,) + ek[j + 1:]
                    st = self._known(c, ek, done, index)
                    if st is not None:  # the same mask as a key already scored: its statistics
                        return st, ek
                else:
                    snap = None
            if remaining[k[:LEVELS[j]]] > 1:  # a no-op step shares its input's copy
                if snap is None:
                    snap = (bits.copy(), counts.copy())
                cache[k[:LEVELS[j]]] = snap
        cb = counts.tobytes()
        for cnt, b, st in scored:
            if cnt == cb and np.array_equal(b, bits):
                return st, ek
        st = class_stats(scan(bits, truth, 1), bits, truth, 0, self.metric, work, cd.shape)
        scored.insert(0, (cb, bits, st))
        del scored[4:]
        return st, ek


def _worker_main(conn, data: OOFData, metric: MetricConfig, group: list) -> None:
    """A forked evaluation process: the case-days ``group`` of every pass, with its own memo of their rows."""
    memo: dict = {}
    p = _Pass(data, metric, memo)
    n = len(data.case_days)
    while True:
        try:
            by_class = conn.recv()
        except EOFError:  # the parent is gone
            return
        if by_class is None:
            return
        try:
            outs = []
            for i in group:
                out = p.case_day(data.case_days[i], by_class, i)
                conn.send(("row", i, out))
                outs.append((i, out))
            for i, out in outs:  # as the parent's memo: this pass's rows are read from the next pass on
                for k, st in out.items():
                    memo.setdefault(k, np.zeros((n, 4)))[i] = st
            conn.send(("done",))
        except BaseException:
            conn.send(("error", traceback.format_exc()))
            return


class _Workers:
    """Evaluation processes forked once the OOF data is in memory (it is shared, copy-on-write, not copied):
    each owns a fixed share of the case-days, balanced by crop size, for every pass. Processes rather than
    threads because the pipeline's Python between the kernels holds the GIL."""

    def __init__(self, data: OOFData, metric: MetricConfig, n: int):
        ctx = multiprocessing.get_context("fork")
        sizes = [1 + sum(cr.size for cr in cd.crops if cr is not None) for cd in data.case_days]
        groups: list = [[] for _ in range(n)]
        load = [0] * n
        for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
            j = load.index(min(load))
            groups[j].append(i)
            load[j] += sizes[i]
        self.conns, self.procs = [], []
        for g in groups:
            if not g:
                continue
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(theirs, data, metric, sorted(g)), daemon=True,
                               name="kk-tune-eval")
            proc.start()
            theirs.close()
            self.conns.append(ours)
            self.procs.append(proc)

    def run(self, by_class: dict, on_row) -> None:
        for c in self.conns:
            c.send(by_class)
        pending = set(self.conns)
        while pending:
            for c in mp_connection.wait(list(pending)):
                try:
                    msg = c.recv()
                except EOFError:
                    self.close()
                    raise RuntimeError("an evaluation process died (out of memory?)") from None
                if msg[0] == "row":
                    on_row(msg[1], msg[2])
                elif msg[0] == "done":
                    pending.discard(c)
                else:
                    self.close()
                    raise RuntimeError("evaluation process failed:\n" + msg[1])

    def close(self) -> None:
        for c in self.conns:
            try:
                c.send(None)
                c.close()
            except OSError:
                pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        self.conns, self.procs = [], []


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


class Evaluator:
    """Memoised per-case-day statistics of class keys: ``stats(key)`` float64 (N, 4) = per case-day
    (dice_sum, dice_rows, hd_sum, hd_terms).

    ``workers`` > 1: the case-days of a pass run in that many forked processes (where the platform forks;
    else threads), started at the first pass and kept until :meth:`close`. Each case-day's statistics are
    computed the same way in any of them, and the sums run in the parent: the numbers do not depend on it."""

    def __init__(self, data: OOFData, metric: MetricConfig, workers: int = 2, processes: bool = True):
        self.data, self.metric, self.workers = data, metric, max(1, int(workers))
        self.memo: dict = {}
        self.n_passes = 0
        self.seconds = 0.0
        self.processes = processes and self.workers > 1 and _can_fork() and len(data.case_days) > 1
        self._pool: _Workers | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

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
        bar = progress(total=n, desc=f"{desc} ({len(todo)} cand.)", unit="case-day", leave=False)

        def add(i, out):
            for k, st in out.items():
                res[k][i] = st
            bar.update()

        if self.processes:
            if self._pool is None:
                self._pool = _Workers(self.data, self.metric, self.workers)
            self._pool.run(by_class, add)
        else:
            p = _Pass(self.data, self.metric, self.memo)
            with ThreadPoolExecutor(self.workers) as ex:
                for i, out in ex.map(lambda i: (i, p.case_day(self.data.case_days[i], by_class, i)), range(n)):
                    add(i, out)
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
