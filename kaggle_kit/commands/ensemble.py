"""Ensemble stored probability maps into a submission (every number comes from the YAML).

    kk ensemble ENSEMBLE.yaml --data-root ROOT --split test --out submission.csv [--pred-root preds]
    kk ensemble ENSEMBLE.yaml --data-root ROOT --split oof --out oof_sub.csv [--cache CACHE]

``--split oof`` ensembles the out-of-fold maps of the train slices and scores the result against the
cache masks (``--cache``) or train.csv; the last stdout line is then the metric JSON (with "score").
``--summary-json PATH`` writes the run's summary with that metric JSON under ``"metric"`` (null for test).
No partial file is left at --out when anything fails (exit code 2 and a message naming the problem).
"""
from __future__ import annotations

import json
from pathlib import Path

from kaggle_kit.cli import run
from kaggle_kit.commands._common import Parser
from kaggle_kit.data.raw import check_data_root
from kaggle_kit.io.submission import SubmissionError
from kaggle_kit.post.ensemble import SPLITS, load_ensemble_config, run_ensemble
from kaggle_kit.utils import atomic_write_json


def main(argv=None) -> int:
    ap = Parser(__doc__)
    ap.add_argument("config", help="ensemble YAML (members, weights, thresholds, post-processing)")
    ap.add_argument("--data-root", required=True, help="competition folder (train/, test/, CSVs)")
    ap.add_argument("--split", choices=sorted(SPLITS), default="test")
    ap.add_argument("--out", required=True, help="submission CSV to write")
    ap.flag("--pred-root", "--preds", default="preds", help="probability-map store (<pred-root>/<exp>/<split>/)")
    ap.add_argument("--cache", default=None, help="cache with train masks for --split oof (else train.csv)")
    ap.summary_json()
    a = ap.parse_args(argv)
    check_data_root(a.data_root)  # a typo must not read as "no test images": checked before anything
    if Path(a.out).is_dir():  # fail before any work (write_submission checks it too)
        raise SubmissionError(f"--out {a.out}: is a folder; pass a file path, e.g. {Path(a.out) / 'submission.csv'}")
    cfg = load_ensemble_config(a.config)
    summary = run_ensemble(cfg, a.data_root, a.split, a.out, a.pred_root, a.cache)  # bad input: kaggle_kit.cli
    metric = summary.pop("metric", None)
    print(json.dumps(summary))
    if metric is not None:
        print(json.dumps(metric))
    if a.summary_json:
        atomic_write_json(a.summary_json, {**summary, "metric": metric})
    return 0



if __name__ == "__main__":
    run(main)
