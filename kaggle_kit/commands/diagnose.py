"""Where each class is lost: by the members, or by the post-processing, and at which height of the volume.

    kk diagnose ENSEMBLE.yaml --data-root ROOT --split oof [--pred-root preds] [--plot recall.png]
    kk diagnose ENSEMBLE.yaml --data-root ROOT --split test --truth ROOT/test_truth.csv

For every case-day with maps of every member: the members' fused map before any step (thresholds 0.5, 0.25, 0.1)
and the ENSEMBLE.yaml's final mask, against the truth (``--split oof``: ROOT/train.csv, or --truth; ``test``:
--truth, a file in train.csv form, e.g. the synthetic data's test_truth.csv). Prints recall and precision per
class, the truth slices the fused map and the final mask find, recall per tenth of the volume's height, and the
lowest (case-day, class) recalls; ``--plot`` draws recall by height. The LAST stdout line is one JSON object:
{"per_class": {class: {...}}, "worst": [...], "case_days": n}. See kaggle_kit.metric.breakdown for what each
number means. Bad input (a missing truth file, a case-day without labels) exits 2 with a message naming it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from kaggle_kit.cli import run
from kaggle_kit.commands._common import Parser, emit
from kaggle_kit.data.raw import DataError, check_data_root, discover_split, labels_wide, load_labels
from kaggle_kit.data.volumes import load_mask_volume
from kaggle_kit.io.probmaps import list_case_days, read_probmap
from kaggle_kit.metric.breakdown import LossBreakdown, format_breakdown
from kaggle_kit.post import kernels as K
from kaggle_kit.post.ensemble import SPLITS, fuse_case_day, load_ensemble_config
from kaggle_kit.utils import atomic_save_figure, progress


def plot_heights(res: dict, path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(res), figsize=(4.2 * len(res), 3.4), squeeze=False)
    for ax, (name, r) in zip(axes[0], res.items()):
        h = r["height"]
        x = [(i + 0.5) / len(h["truth_voxels"]) for i in range(len(h["truth_voxels"]))]
        tot = max(1, max(h["truth_voxels"]))
        ax.bar(x, [v / tot for v in h["truth_voxels"]], width=0.9 / len(x), color="0.85", label="truth voxels (rel.)")
        for key, style in (("raw_recall", "o-"), ("final_recall", "s--")):
            pts = [(a, v) for a, v in zip(x, h[key]) if v is not None]
            if pts:
                ax.plot(*zip(*pts), style, label=key.replace("_", " "))
        ax.set(title=name, xlabel="height in the volume (slice / depth)", ylim=(0, 1.02), xlim=(0, 1))
    axes[0][0].set_ylabel("recall")
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return atomic_save_figure(fig, path)


def main(argv=None) -> int:
    ap = Parser(__doc__)
    ap.add_argument("config", help="ensemble YAML (tools/tune_oof.py's output, or one member at 0.5)")
    ap.add_argument("--data-root", required=True, help="competition folder (train/, test/, CSVs)")
    ap.add_argument("--split", choices=sorted(SPLITS), default="oof")
    ap.add_argument("--truth", default=None, help="labels in train.csv form (default for oof: ROOT/train.csv)")
    ap.flag("--pred-root", "--preds", default="preds", help="probability-map store (<pred-root>/<exp>/<split>/)")
    ap.add_argument("--worst", type=int, default=8, help="(case-day, class) rows with the lowest final recall")
    ap.add_argument("--plot", default=None, help="write recall by height (PNG) here")
    ap.summary_json()
    a = ap.parse_args(argv)
    check_data_root(a.data_root)
    data_split, pred_split = SPLITS[a.split]
    truth_file = Path(a.truth) if a.truth else (Path(a.data_root) / "train.csv" if a.split == "oof" else None)
    if truth_file is None:
        raise DataError("--split test needs --truth: a label file in train.csv form (e.g. the synthetic data's "
                        "test_truth.csv); Kaggle's test split has none")
    if not truth_file.is_file():
        raise DataError(f"{truth_file}: no such label file")
    wide = labels_wide(load_labels(truth_file))
    cfg = load_ensemble_config(a.config)
    members = [m for m in cfg.members]
    have = set(list_case_days(a.pred_root, members[0].exp, pred_split))
    for m in members[1:]:
        have &= set(list_case_days(a.pred_root, m.exp, pred_split))
    slices = discover_split(a.data_root, data_split)
    groups = [(cd, g) for cd, g in slices.groupby("case_day", sort=False) if cd in have]
    if not groups:
        raise DataError(f"{a.pred_root}: no {pred_split} case-day has maps of every member of {a.config} "
                        f"({[m.exp for m in members]})")
    bd = LossBreakdown(cfg.classes)
    c = len(cfg.classes)
    for cd, g in progress(groups, desc=f"diagnose {a.split}", unit="case-day"):
        g = g.sort_values("z")
        d, h, w = len(g), int(g["height"].iloc[0]), int(g["width"].iloc[0])
        numbers = g["slice"].tolist()
        maps = {m.name: read_probmap(a.pred_root, m.exp, pred_split, cd, (d, c, h, w) if m.kind == "pixel" else (d, c),
                                     numbers) for m in members}
        final, _ = fuse_case_day(cfg, maps, cd, (d, h, w))
        pix = [maps[m.name] for m in cfg.of_kind("pixel")]
        fused = K.fuse_numpy(np.stack(pix), cfg.weights("pixel"))
        bd.add(cd, load_mask_volume(g, wide, truth_file), fused, final)
    res = bd.result()
    worst = sorted(bd.case_days, key=lambda r: (r["final_recall"], r["case_day"], r["class"]))[:max(0, a.worst)]
    print(f"{len(groups)} {a.split} case-days, {a.config}")
    print(format_breakdown(res, bd.thresholds, worst))
    if a.plot:
        print(f"wrote {plot_heights(res, a.plot)}", file=sys.stderr)
    emit(a, {"per_class": res, "worst": worst, "case_days": len(groups)})
    return 0



if __name__ == "__main__":
    run(main)
