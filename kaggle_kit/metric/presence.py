"""Evaluation report of slice classifiers: per-class ROC-AUC, average precision, precision/recall/F1 at the
operating threshold and at the best-F1 threshold, and a precision-recall curve plot per class.

Works on any classifier map in the store, so both gating sources are evaluated the same way: this family's
``cls`` experiments and the 2.5D family's aux presence head (``<exp>_aux``).

    python -m kaggle_kit.metric.presence --cache CACHE --pred-root preds --exp EXP [--threshold 0.5]

writes ``<pred_root>/<exp>/oof/report/{report.json, pr_curves.png}`` and prints a summary table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from kaggle_kit.data.raw import CLASSES
from kaggle_kit.utils import atomic_save_figure, atomic_write_json

__all__ = [
    "class_report",
    "slice_presence",
    "classification_report",
    "format_report",
    "oof_truth_and_probs",
    "plot_pr_curves",
    "pr_curve",
    "roc_auc",
    "smooth_z",
    "report_exp",
    "smooth_per_case_day",
    "z_window_auc",
    "write_report",
]


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC-AUC by the rank-sum (Mann-Whitney) formula with tie correction; NaN if one class is absent."""
    y = np.asarray(y).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(s)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def smooth_z(p: np.ndarray, windows) -> np.ndarray:
    """Per-slice scores (D, C) -> their centred moving mean along z, ``windows[c]`` slices wide (odd; 1 leaves
    the class as it is), the end slices repeated past the volume's ends. Presence is smooth in z, a
    classifier's single-slice errors are not. Returns a new float32 array."""
    p = np.asarray(p, np.float32)
    out = p.copy()
    for c, w in enumerate(windows):
        w = int(w)
        if w < 1 or w % 2 == 0:
            raise ValueError(f"z window must be an odd integer >= 1, got {w}")
        if w == 1 or not len(p):
            continue
        col = np.pad(p[:, c].astype(np.float64), w // 2, mode="edge")
        out[:, c] = np.lib.stride_tricks.sliding_window_view(col, w).mean(axis=1)
    return out


def slice_presence(mask: np.ndarray, n_classes: int = len(CLASSES)) -> np.ndarray:
    """uint8 (D, C) per-slice presence from a bit-flag mask (D, H, W): bit c set anywhere in the slice.

    The truth for the classifier, taken from the mask itself with a bitwise OR over pixels. (The cache index's
    ``has_*`` flags come from the per-slice MAX of the flags, which drops a class whenever a higher bit
    co-occurs on the slice, e.g. large bowel next to small bowel: max(1, 2) = 2; see the report to the lead.)
    """
    m = np.asarray(mask)
    bits = np.bitwise_or.reduce(m.reshape(len(m), -1), axis=1) if m.size else np.zeros(len(m), np.uint8)
    return ((bits[:, None] >> np.arange(n_classes, dtype=np.uint8)) & 1).astype(np.uint8)


def pr_curve(y: np.ndarray, s: np.ndarray) -> dict:
    """Precision-recall curve of scores ``s`` for labels ``y`` (one point per distinct score, descending).

    Returns dict(thresholds, precision, recall) as float arrays and ``ap``, the average precision
    (sum over points of recall increase x precision, as sklearn's ``average_precision_score``); ``ap`` is NaN
    without positives.
    """
    y = np.asarray(y).astype(bool).reshape(-1)
    s = np.asarray(s, np.float64).reshape(-1)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.zeros(0, int)  # end of each tie group
    tp = np.cumsum(y)[last].astype(np.float64)
    fp = (last + 1) - tp
    n_pos = float(y.sum())
    precision = tp / np.maximum(tp + fp, 1.0)
    recall = tp / n_pos if n_pos else np.full_like(tp, np.nan)
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision)) if n_pos else float("nan")
    return {"thresholds": s[last], "precision": precision, "recall": recall, "ap": ap}


def _at(y: np.ndarray, s: np.ndarray, thr: float) -> dict:
    pred = s >= thr
    tp = float((pred & y).sum())
    p = tp / max(float(pred.sum()), 1.0)
    r = tp / max(float(y.sum()), 1.0)
    return {"threshold": float(thr), "precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-12)}


def class_report(y: np.ndarray, s: np.ndarray, threshold: float = 0.5) -> dict:
    """One class: n, positives, ROC-AUC, AP, metrics at ``threshold`` (``s >= threshold`` is positive) and
    at the threshold maximising F1."""
    y = np.asarray(y).astype(bool).reshape(-1)
    s = np.asarray(s, np.float64).reshape(-1)
    curve = pr_curve(y, s)
    out = {"n": int(y.size), "positives": int(y.sum()), "auc": roc_auc(y, s), "ap": curve["ap"],
           "at_threshold": _at(y, s, threshold)}
    if y.any() and len(curve["thresholds"]):
        p, r = curve["precision"], curve["recall"]
        f1 = 2 * p * r / np.maximum(p + r, 1e-12)
        out["best_f1"] = _at(y, s, float(curve["thresholds"][int(np.argmax(f1))]))
    return out


def classification_report(truth: np.ndarray, probs: np.ndarray, threshold: float = 0.5, classes=CLASSES) -> dict:
    """``truth`` (N, C) 0/1, ``probs`` (N, C) in [0, 1] -> per-class reports + macro AUC/AP."""
    truth, probs = np.asarray(truth), np.asarray(probs, np.float64)
    if truth.shape != probs.shape or truth.ndim != 2 or truth.shape[1] != len(classes):
        raise ValueError(f"truth and probs must both be (N, {len(classes)}); got {truth.shape} and {probs.shape}")
    per = {c: class_report(truth[:, i], probs[:, i], threshold) for i, c in enumerate(classes)}
    aucs = [v["auc"] for v in per.values() if np.isfinite(v["auc"])]
    aps = [v["ap"] for v in per.values() if np.isfinite(v["ap"])]
    return {"threshold": float(threshold), "n": len(truth), "classes": per,
            "macro_auc": float(np.mean(aucs)) if aucs else float("nan"),
            "macro_ap": float(np.mean(aps)) if aps else float("nan")}


def plot_pr_curves(truth: np.ndarray, probs: np.ndarray, path, threshold: float = 0.5, classes=CLASSES,
                   title: str = "", others: dict | None = None) -> Path:
    """One precision-recall panel per class (operating threshold marked); PNG written atomically.
    ``others``: {label: (N, C) probs} drawn dashed in the same panels (e.g. after a z mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(classes), figsize=(4.2 * len(classes), 4), squeeze=False)
    for i, (c, ax) in enumerate(zip(classes, axes[0])):
        y, s = truth[:, i].astype(bool), probs[:, i]
        rep = class_report(y, s, threshold)
        if y.any():
            cur = pr_curve(y, s)
            ax.step(np.r_[0.0, cur["recall"]], np.r_[1.0, cur["precision"]], where="pre")
            a = rep["at_threshold"]
            ax.plot([a["recall"]], [a["precision"]], "o", color="C3", label=f"thr {threshold:g}")
            for j, (label, q) in enumerate((others or {}).items()):
                cur = pr_curve(y, q[:, i])
                ax.step(np.r_[0.0, cur["recall"]], np.r_[1.0, cur["precision"]], where="pre", ls="--", lw=1,
                        color=f"C{j + 1}", label=f"{label} (AUC {class_report(y, q[:, i])['auc']:.4f})")
            ax.legend(loc="lower left", fontsize=8)
        ax.set(xlim=(0, 1.01), ylim=(0, 1.01), xlabel="recall", ylabel="precision",
               title=f"{c}\nAUC {rep['auc']:.4f}  AP {rep['ap']:.4f}  (n+ {rep['positives']}/{rep['n']})")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return atomic_save_figure(fig, path)


def format_report(rep: dict, name: str = "") -> str:
    """Plain-text table of a :func:`classification_report`."""
    thr = rep["threshold"]
    lines = [f"{name} slices={rep['n']} macro AUC={rep['macro_auc']:.4f} macro AP={rep['macro_ap']:.4f}",
             (f"{'class':<12} {'n+':>6} {'AUC':>7} {'AP':>7} {'P@' + format(thr, 'g'):>8} "
              f"{'R@' + format(thr, 'g'):>8} {'bestF1':>7} {'thr*':>6}")]
    for c, v in rep["classes"].items():
        a, b = v["at_threshold"], v.get("best_f1", {})
        lines.append(f"{c:<12} {v['positives']:>6} {v['auc']:>7.4f} {v['ap']:>7.4f} {a['precision']:>8.4f} "
                     f"{a['recall']:>8.4f} {b.get('f1', float('nan')):>7.4f} {b.get('threshold', float('nan')):>6.3f}")
    return "\n".join(lines)


def write_report(truth: np.ndarray, probs: np.ndarray, out_dir, threshold: float = 0.5, name: str = "",
                 extra: dict | None = None, others: dict | None = None) -> dict:
    """Write ``report.json`` and ``pr_curves.png`` into ``out_dir`` (``others``: extra dashed curves, see
    :func:`plot_pr_curves`); returns the report dict."""
    rep = classification_report(truth, probs, threshold)
    rep.update(extra or {})
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "report.json", _finite(rep))
    plot_pr_curves(truth, probs, out_dir / "pr_curves.png", threshold, title=name, others=others)
    return rep


def _finite(obj):
    """NaN -> None, recursively (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def oof_truth_and_probs(cache, pred_root, exp: str, case_days=None):
    """Stack the OOF classifier maps of ``exp`` with the per-slice presence from the masks (:func:`slice_presence`).

    Returns (truth (N, C) uint8, probs (N, C) float in [0, 1], case_days used, in_range (N,) bool: the slice
    lies between the first and last annotated slice of an annotated case-day), slices in case-day / z order.
    ``case_days`` defaults to every case-day with a map.
    """
    from kaggle_kit.io.probmaps import ProbMapStore

    store = ProbMapStore(pred_root)
    idx = cache.index("train")
    cds = store.case_days(exp, "oof") if case_days is None else list(case_days)
    if not cds:
        raise FileNotFoundError(f"{Path(pred_root) / exp / 'oof'}: no OOF classifier maps")
    groups = dict(tuple(idx.groupby("case_day")))
    ts, ps, rs = [], [], []
    for cd in cds:
        g = groups[cd].sort_values("z")
        m = store.read(exp, "oof", cd, expect_shape=(len(g), len(CLASSES)), expect_slices=g["slice"].to_numpy())
        ts.append(slice_presence(cache.mask("train", cd)))
        ps.append(m.astype(np.float32) / 255.0)
        s = g["slice"].to_numpy()
        rs.append((g["last_anno"].to_numpy() > 0) & (s >= g["first_anno"].to_numpy()) & (s <= g["last_anno"].to_numpy()))
    return np.concatenate(ts), np.concatenate(ps), cds, np.concatenate(rs)


def smooth_per_case_day(probs: np.ndarray, depths, window: int) -> np.ndarray:
    """(N, C) rows of consecutive case-days (``depths`` slices each, in row order) -> each case-day's centred
    z mean over ``window`` slices, as the ensemble's ``gating.z_window`` applies it
    (:func:`smooth_z`)."""
    bounds = np.r_[0, np.cumsum(depths)].astype(int)
    if bounds[-1] != len(probs):
        raise ValueError(f"case-day depths sum to {bounds[-1]}, but there are {len(probs)} rows")
    return np.concatenate([smooth_z(probs[a:b], (window,) * probs.shape[1])
                           for a, b in zip(bounds[:-1], bounds[1:])])


def z_window_auc(truth: np.ndarray, probs: np.ndarray, depths, windows=(3, 5, 7), classes=CLASSES) -> dict:
    """Per-class ROC-AUC after :func:`smooth_per_case_day` for each window: {window: {class: auc}}. The
    tuner picks the ensemble's window on OOF; this shows what the classifier alone gains."""
    out = {}
    for w in windows:
        sm = smooth_per_case_day(probs, depths, w)
        out[str(w)] = {c: float(class_report(truth[:, i], sm[:, i])["auc"]) for i, c in enumerate(classes)}
    return out


def report_exp(cache_dir, pred_root, exp: str, threshold: float = 0.5, out_dir=None, quiet: bool = False) -> dict:
    """Report of a classifier experiment's OOF maps (``cls`` or a ``<seg exp>_aux`` head)."""
    from kaggle_kit.data.cache import Cache

    cache = Cache(cache_dir)
    truth, probs, cds, in_range = oof_truth_and_probs(cache, pred_root, exp)
    out_dir = Path(out_dir) if out_dir else Path(pred_root) / exp / "oof" / "report"
    # Diagnostic: outside the annotated range organs may be visible but unlabelled (truncated annotation), so
    # the same metrics restricted to slices inside it show how much of the error is label noise there.
    inside = classification_report(truth[in_range], probs[in_range], threshold) if in_range.any() else None
    depths = cache.index("train").groupby("case_day").size()[cds].to_numpy()
    z_auc = z_window_auc(truth, probs, depths)
    rep = write_report(truth, probs, out_dir, threshold, name=f"{exp} OOF",
                       extra={"exp": exp, "case_days": len(cds), "in_annotated_range": inside,
                              "z_window_auc": z_auc},
                       others={"5-slice z mean": smooth_per_case_day(probs, depths, 5)})
    if not quiet:
        print(format_report(rep, f"{exp} OOF ({len(cds)} case-days)"))
        if inside is not None:
            print(format_report(inside, f"{exp} OOF, slices inside the annotated range only"))
        for w, aucs in z_auc.items():
            print(f"AUC after a {w}-slice z mean (the ensemble's gating.z_window): "
                  + ", ".join(f"{c} {v:.4f}" for c, v in aucs.items()))
        print(f"report: {out_dir}")
    return rep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--pred-root", required=True)
    ap.add_argument("--exp", required=True, help="classifier experiment in the store (e.g. cls_tiny, unet_aux)")
    ap.add_argument("--threshold", type=float, default=0.5, help="operating threshold (prob >= thr is positive)")
    ap.add_argument("--out", default=None, help="output folder (default <pred_root>/<exp>/oof/report)")
    a = ap.parse_args(argv)
    rep = report_exp(a.cache, a.pred_root, a.exp, a.threshold, a.out)
    print(json.dumps({"macro_auc": rep["macro_auc"], **{f"auc_{c}": v["auc"] for c, v in rep["classes"].items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
