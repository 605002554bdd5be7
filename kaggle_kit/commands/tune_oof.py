"""Choose the ensemble and every post-processing number from out-of-fold (OOF) maps, with the exact metric.

    kk tune SEARCH.yaml --data-root ROOT --cache CACHE [--pred-root preds] --out TUNED.yaml
            [--report DIR] [--workers 2] [--no-verify] [--check-ensemble] [--summary-json PATH]

SEARCH.yaml: candidate members and the candidate values of every number (configs/ensemble/search_default.yaml).
Nested evaluation: one coordinate ascent per held-out fold (tuned on the other folds, scored on it) and one
on all folds, whose result is written to TUNED.yaml in the form tools/ensemble.py reads. The report
(markdown, PNG plots, tuning.json) goes to DIR (default: TUNED's folder / <TUNED stem>_report/).

The tuned YAML is re-run through the ensemble's own code on the OOF maps and that score is the reported
``in_sample`` (``--no-verify`` skips it). ``--check-ensemble`` also runs tools/ensemble.py's ``run_ensemble``
(needs --data-root) and fails if its score differs. The LAST stdout line is a JSON object (``--summary-json``: the same, in a file), with every key below present (null where it does
not apply: the fold means without nested folds, ``target_metric`` unless the metric is mlebench): in_sample,
held_out_mean, held_out_std, held_out_pooled, best_single_member {exp: score}, plain_average_05,
members_kept, ..., held_out_by_metric {default, mlebench} (each fold's tuned setting re-run exactly on its
held-out fold under both metrics, whichever was tuned for). ``metric: mlebench`` in SEARCH.yaml: the search
optimises a per-class surrogate (Dice exact, Hausdorff ``3d_unit_cube``; ``metric`` in the JSON), the final
choice among the step settings is made by the exact mlebench score (``target_metric``, ``in_sample_target``);
see kaggle_kit.tune.metric_reruns. Exit code 2 and a message naming the problem on bad input.

Capped outputs: before tuning, each pixel member's highest OOF probability per (fold, class) is read (folds whose
truth holds the class). One that never exceeds a candidate threshold (a dead head)
is printed as a warning naming member, fold and class, listed as ``capped_outputs`` in the JSON, and marked in
the report's "Probability ceilings" table.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from kaggle_kit.cli import run
from kaggle_kit.commands._common import Parser, emit
from kaggle_kit.data.raw import DataError
from kaggle_kit.io.probmaps import ProbMapError, read_manifest
from kaggle_kit.tune.evaluate import capped_outputs, probability_ceilings
from kaggle_kit.tune.search import SearchError, load_oof, load_search_space, tune_oof
from kaggle_kit.tune.report import write_report, write_tuned_yaml


#: the tuner summary's keys in the JSON line (every one present; null where it does not apply)
SUMMARY_KEYS = ("in_sample", "held_out_mean", "held_out_std", "held_out_pooled", "best_single_member",
                "plain_average_05", "plain_average_05_folds_mean", "single_members", "single_members_folds_mean",
                "members_kept", "members_dropped", "skew", "n_case_days", "n_folds", "metric",
                "held_out_by_metric", "target_metric", "in_sample_target", "fallback_plain")


def _available(preds: Path) -> dict:
    """{exp: kind} of every experiment with OOF maps under the store root."""
    out = {}
    for man in sorted(Path(preds).glob("*/oof/manifest.json")):
        exp = man.parent.parent.name
        out[exp] = read_manifest(preds, exp, "oof")["kind"]
    return out


def main(argv=None) -> int:
    ap = Parser(__doc__)
    ap.add_argument("search", help="search-space YAML")
    ap.add_argument("--data-root", default=None, help="competition folder (needed by --check-ensemble)")
    ap.add_argument("--cache", required=True, help="cache with the train masks and folds.csv")
    ap.flag("--pred-root", "--preds", default="preds", help="probability-map store (<pred-root>/<exp>/oof/)")
    ap.add_argument("--out", required=True, help="tuned ensemble YAML to write")
    ap.add_argument("--report", default=None, help="report folder (default: <out stem>_report next to --out)")
    ap.add_argument("--workers", type=int, default=2, help="processes (threads where the OS does not fork) over case-days")
    ap.add_argument("--no-verify", action="store_true", help="skip the exact re-run of the tuned YAML")
    ap.add_argument("--check-ensemble", action="store_true",
                    help="also run tools/ensemble.py's run_ensemble on the OOF split and compare its score")
    ap.summary_json()
    a = ap.parse_args(argv)
    out = Path(a.out)
    report = Path(a.report) if a.report else out.with_name(f"{out.stem}_report")

    def log(msg):  # stdout ends with the JSON line
        print(msg, file=sys.stderr, flush=True)

    try:
        if a.check_ensemble and not a.data_root:
            raise SearchError("--check-ensemble needs --data-root")
        space = load_search_space(a.search, _available(Path(a.pred_root)))
        t0 = time.perf_counter()
        data = load_oof(a.cache, a.pred_root, space.pixel, space.classifier, space.floor_thr)
        load_s = time.perf_counter() - t0
        ceilings = probability_ceilings(data)
        capped = capped_outputs(ceilings, dict(zip(space.classes, space.options["threshold"])))
        for r in capped:
            top = "below the lowest candidate" if r["ceiling"] is None else f"{r['ceiling']:.3f}"
            log(f"warning: {r['member']}, fold {r['fold']}, {r['class']}: its OOF probability never exceeds {top} "
                f"(the fold's truth has {r['truth_voxels']} voxels of it); thresholds {r['above']} delete the class on "
                "that whole fold: a capped output (retrain that fold, e.g. with another train.seed)")
        res = tune_oof(space, data, workers=a.workers, verify=not a.no_verify, log=log)
        write_tuned_yaml(out, res["ensemble"], res["summary"], a.search, str(report))
        extra = {"load_s": load_s, "crop_mb": data.nbytes() / 1e6, "ceilings": ceilings, "capped": capped}
        if a.check_ensemble:
            from kaggle_kit.post.ensemble import load_ensemble_config, run_ensemble

            summ = run_ensemble(load_ensemble_config(out), a.data_root, "oof", report / "oof_submission.csv",
                                a.pred_root, a.cache)
            extra["ensemble_oof_score"] = summ["metric"]["score"]
            ref = res["summary"].get("in_sample_target", res["summary"]["in_sample"])  # the YAML's own metric
            if abs(summ["metric"]["score"] - ref) > 1e-12:
                raise SearchError(f"train/serve skew: tools/ensemble.py scores {summ['metric']['score']!r}, the "
                                  f"tuner {ref!r}")
        md = write_report(res, report, str(out), a.search, extra)
    except (SearchError, ProbMapError, DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    s = res["summary"]
    print(f"{'':34}{'all case-days':>14}{'held-out folds':>16}")
    print(f"{'tuned ensemble':34}{s['in_sample']:>14.4f}"
          + (f"{s['held_out_mean']:>10.4f} ± {s['held_out_std']:.4f}" if s["held_out_mean"] is not None else ""))
    print(f"{'plain average @0.5':34}{s['plain_average_05']:>14.4f}"
          + (f"{s['plain_average_05_folds_mean']:>10.4f}" if "plain_average_05_folds_mean" in s else ""))
    fm = s.get("single_members_folds_mean", {})
    for e, v in s["single_members"].items():
        print(f"{e + ' alone @0.5':34}{v:>14.4f}" + (f"{fm[e]:>10.4f}" if e in fm else ""))
    if s.get("held_out_by_metric"):
        print("held-out folds, exact, by metric: " + ", ".join(f"{m} {v:.4f}" for m, v in
                                                            s["held_out_by_metric"].items() if v is not None)
              + (f" (tuned for {s['target_metric']} through the surrogate {s['metric']})" if "target_metric" in s
                 else ""))
    print(f"tuned YAML: {out}  report: {md}")
    emit(a, {**{k: s.get(k) for k in SUMMARY_KEYS}, "capped_outputs": capped, "tuned_yaml": str(out),
             "report": str(md), "seconds": round(res["timing"]["total_s"] + load_s, 1)})
    return 0



if __name__ == "__main__":
    run(main)
