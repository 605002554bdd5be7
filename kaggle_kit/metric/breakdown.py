"""Where each class's truth is lost: by the members (their fused map, before any post-processing step) or by the
post-processing (the final mask), and at which height of the volume.

Fed one case-day at a time (:meth:`LossBreakdown.add`) with the truth bit flags, the fused pixel map on the 0..255
scale (what the ensemble thresholds) and the final bit flags. A voxel counts as predicted by the fused map at
threshold t when its value is above t x 255 (the ensemble's threshold step compares the same way). Numbers per
class:

- ``truth_voxels``; ``raw_recall`` {t: recall of the fused map at t}; ``raw_precision`` at 0.5;
- ``final_recall`` / ``final_precision`` (the mask after every step);
- ``truth_slices``, ``slices_found_raw`` (truth slices where the fused map at 0.5 marks some voxel of the class,
  anywhere on the slice) and ``slices_kept_final`` (the same for the final mask: a gate or a truncation that
  empties a slice shows here);
- ``height``: recall of the fused map at 0.5 and of the final mask per tenth of the volume's height (slice index /
  depth, 0 = the first slice), with the truth voxels of each tenth.

Low raw recall at every threshold: the members miss the organ (more training, other inputs). Raw recall high,
final low: a post-processing step deletes it (look at the gate, the truncation, the area filters).
"""
from __future__ import annotations

import numpy as np

from kaggle_kit.data.raw import CLASSES

__all__ = ["LossBreakdown", "format_breakdown"]


class LossBreakdown:
    """Streaming accumulator; see the module docstring. ``thresholds``: fractions in (0, 1), 0.5 among them."""

    def __init__(self, classes=CLASSES, thresholds=(0.5, 0.25, 0.1), bins: int = 10):
        self.classes = tuple(classes)
        self.thresholds = tuple(float(t) for t in thresholds)
        if 0.5 not in self.thresholds:
            raise ValueError(f"thresholds must include 0.5, got {self.thresholds}")
        self.bins = int(bins)
        c, t, b = len(self.classes), len(self.thresholds), self.bins
        self._truth = np.zeros(c, np.int64)
        self._raw_tp = np.zeros((c, t), np.int64)
        self._raw_pos = np.zeros(c, np.int64)  # fused map > 0.5
        self._fin_tp = np.zeros(c, np.int64)
        self._fin_pos = np.zeros(c, np.int64)
        self._slices = np.zeros((c, 3), np.int64)  # truth slices, found raw, kept final
        self._h_truth = np.zeros((c, b), np.int64)
        self._h_raw = np.zeros((c, b), np.int64)
        self._h_fin = np.zeros((c, b), np.int64)
        self.case_days: list[dict] = []

    def add(self, case_day: str, truth: np.ndarray, fused: np.ndarray, final: np.ndarray) -> None:
        """truth, final: uint8 (D, H, W) bit flags; fused: (D, C, H, W) on the 0..255 scale."""
        d = truth.shape[0]
        if fused.shape != (d, len(self.classes)) + truth.shape[1:] or final.shape != truth.shape:
            raise ValueError(f"{case_day}: shapes truth {truth.shape}, fused {fused.shape}, final {final.shape}")
        band = np.minimum((np.arange(d) * self.bins) // max(d, 1), self.bins - 1)
        i50 = self.thresholds.index(0.5)
        for c in range(len(self.classes)):
            t = ((truth >> c) & 1).astype(bool)
            f = ((final >> c) & 1).astype(bool)
            raw = [fused[:, c] > thr * 255.0 for thr in self.thresholds]
            n_t = int(t.sum())
            self._truth[c] += n_t
            for k, r in enumerate(raw):
                self._raw_tp[c, k] += int((r & t).sum())
            self._raw_pos[c] += int(raw[i50].sum())
            self._fin_tp[c] += int((f & t).sum())
            self._fin_pos[c] += int(f.sum())
            on = t.any((1, 2))
            self._slices[c] += (int(on.sum()), int((on & raw[i50].any((1, 2))).sum()), int((on & f.any((1, 2))).sum()))
            per_z = t.sum((1, 2))
            np.add.at(self._h_truth[c], band, per_z)
            np.add.at(self._h_raw[c], band, (raw[i50] & t).sum((1, 2)))
            np.add.at(self._h_fin[c], band, (f & t).sum((1, 2)))
            if n_t:
                self.case_days.append({"case_day": str(case_day), "class": self.classes[c], "truth_voxels": n_t,
                                       "raw_recall": int((raw[i50] & t).sum()) / n_t,
                                       "final_recall": int((f & t).sum()) / n_t})

    def result(self) -> dict:
        def div(a, b):
            return float(a) / float(b) if b else None

        out = {}
        for c, name in enumerate(self.classes):
            out[name] = {
                "truth_voxels": int(self._truth[c]),
                "raw_recall": {t: div(self._raw_tp[c, k], self._truth[c]) for k, t in enumerate(self.thresholds)},
                "raw_precision": div(self._raw_tp[c, self.thresholds.index(0.5)], self._raw_pos[c]),
                "final_recall": div(self._fin_tp[c], self._truth[c]),
                "final_precision": div(self._fin_tp[c], self._fin_pos[c]),
                "truth_slices": int(self._slices[c, 0]),
                "slices_found_raw": int(self._slices[c, 1]),
                "slices_kept_final": int(self._slices[c, 2]),
                "height": {"truth_voxels": self._h_truth[c].tolist(),
                           "raw_recall": [div(a, b) for a, b in zip(self._h_raw[c], self._h_truth[c])],
                           "final_recall": [div(a, b) for a, b in zip(self._h_fin[c], self._h_truth[c])]},
            }
        return out


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def format_breakdown(res: dict, thresholds, worst: list[dict] | None = None) -> str:
    """Text tables of :meth:`LossBreakdown.result` (and the worst (case-day, class) rows, if given)."""
    thr = [float(t) for t in thresholds]
    head = (f"{'class':<12}{'truth vox':>10}" + "".join(f"{'raw@' + format(t, 'g'):>9}" for t in thr)
            + f"{'raw prec':>9}{'final':>8}{'fin prec':>9}{'slices: truth':>15}{'raw':>6}{'final':>7}")
    lines = ["recall of the members' fused map (raw, before any step) and of the final mask", head]
    for name, r in res.items():
        lines.append(f"{name:<12}{r['truth_voxels']:>10}" + "".join(f"{_f(r['raw_recall'][t]):>9}" for t in thr)
                     + f"{_f(r['raw_precision']):>9}{_f(r['final_recall']):>8}{_f(r['final_precision']):>9}"
                     + f"{r['truth_slices']:>15}{r['slices_found_raw']:>6}{r['slices_kept_final']:>7}")
    lines += ["", "recall by height (tenths of the volume, first slice = 0), raw @0.5 / final"]
    for name, r in res.items():
        h = r["height"]
        cells = [f"{_f(a)}/{_f(b)}" if n else "-" for a, b, n in zip(h["raw_recall"], h["final_recall"],
                                                                     h["truth_voxels"])]
        lines.append(f"{name:<12}" + " ".join(cells))
    if worst:
        lines += ["", "lowest final recall (case-day, class)"]
        lines += [f"  {w['case_day']:<22}{w['class']:<12} truth {w['truth_voxels']:>7}  raw {w['raw_recall']:.3f}  "
                  f"final {w['final_recall']:.3f}" for w in worst]
    return "\n".join(lines)
