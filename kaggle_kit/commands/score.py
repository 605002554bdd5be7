"""Score a submission (or OOF) CSV against a truth file in train.csv form; geometry from the image files.

    kk score --truth TRUTH.csv --pred SUB.csv --data-root ROOT [--split test]
        [--metric 3d] [--plots DIR] [--worst 10] [--only-pred-case-days] [--summary-json PATH]
    kk score --warmup

Prints a table per class and the worst case-days, and as its LAST line one JSON object: score, dice,
hausdorff (mean normalised distance), metric, counts, per_class {class: dice, hausdorff, score, iou,
precision, recall, ...} and worst_case_days. Metric names: 3d (default), 3d_directed, 2d, 3d_unit_cube,
each optionally +empty_dice_one (see kaggle_kit.metric.scorer). A bad input file (missing or duplicated
rows, ids without an image, an RLE that does not fit its slice, a truth file that is a submission: a
``predicted`` column and no ``segmentation``) exits 2 with a message naming the file and rows.

``--metric mlebench`` grades as MLE-bench does (kaggle_kit.metric.mlebench): rows paired by POSITION with
the truth rows, each decoded with its truth row's size (from image_height/image_width columns of
MLE-bench's answers file, else from the images under --data-root), runs past the image end cut, classes
ORed per case-day, column-major decoding; an RLE the grader rejects exits 2 naming the line.

``--warmup`` scores nothing: it compiles every metric kernel once on tiny inputs, with the argument types
the real runs pass, into numba's on-disk cache (next to the package, or ``NUMBA_CACHE_DIR``), so the first
real run loads them instead of compiling them (seconds). ``make install`` runs it; after an edit of the
kernels' source the cache is stale and the next run (or ``--warmup``) compiles again.
"""
from __future__ import annotations

import json
import sys
import time

from kaggle_kit.cli import run
from kaggle_kit.commands._common import Parser
from kaggle_kit.data.raw import DataError
from kaggle_kit.metric.scorer import METRIC_NAMES, MetricConfig
from kaggle_kit.utils import atomic_write_json
from kaggle_kit.metric.score_csv import (
    report_json,
    report_mlebench,
    report_tables,
    score_files,
    score_files_mlebench,
    warm_kernels,
    write_plots,
)


def main(argv=None) -> int:
    ap = Parser(__doc__)
    ap.add_argument("--truth", help="truth CSV: id,class,segmentation (train.csv form) (required unless --warmup)")
    ap.add_argument("--pred", help="prediction CSV: id,class,predicted (or segmentation) (required unless --warmup)")
    ap.add_argument("--data-root", default=None,
                    help="competition folder (geometry from its images); required unless --metric mlebench "
                         "with a truth file holding image_height/image_width")
    ap.add_argument("--split", default="train", help="image folder under the data root (train or test)")
    ap.add_argument("--metric", default="3d", help=f"metric variant; parts: {', '.join(METRIC_NAMES)}")
    ap.add_argument("--plots", default=None, help="write per-class bars and worst case-day overlays here")
    ap.add_argument("--worst", type=int, default=10, help="case-days listed in the table")
    ap.add_argument("--only-pred-case-days", action="store_true",
                    help="score only the case-days present in --pred (e.g. one fold's OOF against train.csv)")
    ap.add_argument("--warmup", action="store_true",
                    help="score nothing: compile every metric kernel into numba's on-disk cache (make install "
                         "runs it)")
    ap.summary_json()
    a = ap.parse_args(argv)
    if a.warmup:
        t0 = time.perf_counter()
        held = warm_kernels()
        line = json.dumps({"warmed": {k: len(v) for k, v in held.items()},
                           "seconds": round(time.perf_counter() - t0, 3)})
        print(line)
        _write_summary(a, line)
        return 0
    missing = [f for f, v in (("--truth", a.truth), ("--pred", a.pred)) if v is None]
    if missing:
        ap.error(f"the following arguments are required: {', '.join(missing)}")
    try:
        cfg = MetricConfig.from_name(a.metric)
    except KeyError as e:
        ap.error(str(e.args[0]))
    if cfg.hd_variant == "mlebench":
        try:
            text = report_mlebench(score_files_mlebench(a.truth, a.pred, a.data_root, a.split,
                                                        a.only_pred_case_days), a.worst)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(text)
        _write_summary(a, text.rstrip().rsplit("\n", 1)[-1])  # report_mlebench ends with its JSON line
        return 0
    if a.data_root is None:
        ap.error("--data-root is required (the geometry comes from the images)")
    try:
        scorer, tables = score_files(a.truth, a.pred, a.data_root, a.split, cfg, a.only_pred_case_days)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report_tables(scorer, a.worst))
    if a.plots:
        for p in write_plots(scorer, tables, a.plots):
            print(f"wrote {p}", file=sys.stderr)
    line = report_json(scorer)
    print(line)
    _write_summary(a, line)
    return 0


def _write_summary(a, line: str) -> None:
    if a.summary_json:
        atomic_write_json(a.summary_json, json.loads(line))



if __name__ == "__main__":
    run(main)
