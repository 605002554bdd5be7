"""Invented and deleted organs before and after the per-volume ``presence`` step, on finished ``kk run`` folders.

    python benchmarks/bench_presence.py WORK [WORK ...] [--out presence.json] [--workers 2] [--keep DIR]

Per work folder (``WORK/pipeline/{data,tune,submission}.json``, ``WORK/preds``, the run's cache and data root):

- after: the tuned ensemble YAML the run wrote (``WORK/pipeline/tune.json``'s ``tuned_yaml``, the one the
  notebook bundles), whatever presence numbers the tuner chose (off too: it keeps a number only where it gains);
- before: ``kk tune`` re-run (:func:`kaggle_kit.commands.tune_oof.main`, in this process) on the same OOF maps
  with the run's own search YAML, except ``presence: {prob: [null], cls_prob: [null]}`` (the step's only
  candidate is its neutral value: the step is off, every other number is searched as in the run).

Each setting is applied with the ensemble's own code (:func:`kaggle_kit.post.ensemble.run_ensemble`, what
``kk ensemble`` runs) to the OOF maps (scored against DATA/train.csv, as the run's OOF re-runs are) and to the
stored test maps (against DATA/test_truth.csv, as the run's ``test_from_maps`` is). The CSVs are read back
and scored by :func:`kaggle_kit.metric.score_csv.score_files` under the default metric (``3d``); its
validated RLE tables give, per (case-day, class) pair, whether the truth and the submission hold any pixel:

- invented: the truth has no pixel of the class in the whole case-day, the submission has some;
- deleted: the truth has some, the submission none in the whole case-day;

with the number of absent and present pairs (the rates' denominators). One table on stdout puts before and
after side by side per folder and split; ``--out`` writes everything as JSON (also the pairs themselves, per
class counts, both settings' presence numbers). The "after" numbers are checked against what the run
recorded (``tuned_oof`` when the tuned YAML's metric is the default; ``test_from_maps``): a difference is
printed as a warning (it would mean this script does not apply the setting as the run did).

Progress goes to stderr; the tuner's own output too. Files (the before YAML, its report, the four CSVs per
folder) go to a temporary folder, or to ``--keep DIR/<folder name>/``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kaggle_kit.data.raw import CLASSES, discover_split
from kaggle_kit.metric.score_csv import RleTable, score_files
from kaggle_kit.post.ensemble import load_ensemble_config, run_ensemble
from kaggle_kit.utils import atomic_write_json, atomic_write_text

METRIC = "default"
SETTINGS = ("before", "after")
SPLITS = ("oof", "test")
#: the search YAML's presence section with the step off (its neutral value the only candidate)
PRESENCE_OFF = {"prob": [None], "cls_prob": [None]}


def log(msg: str) -> None:
    print(f"[bench_presence] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- counting
def case_day_classes(table: RleTable, case_days, classes=CLASSES) -> np.ndarray:
    """bool (N, C): whether ``table`` (validated against the split's images, so its RLEs are parsed) has some
    pixel of class c anywhere in case-day n. A parsed run has length >= 1, so a row with runs is a pixel."""
    col = {c: i for i, c in enumerate(classes)}
    cls = table.rows["class"].to_numpy()
    out = np.zeros((len(case_days), len(classes)), bool)
    for n, cd in enumerate(case_days):
        for pos in table.positions(cd):
            if int(pos) in table.runs:
                out[n, col[cls[pos]]] = True
    return out


def organ_counts(truth: np.ndarray, pred: np.ndarray, case_days, classes=CLASSES) -> dict:
    """(case-day, class) pairs from two bool (N, C) presence tables: absent / present in the truth, invented
    (absent, predicted) and deleted (present, not predicted), their rates, per class, and the pairs."""
    truth, pred = np.asarray(truth, bool), np.asarray(pred, bool)
    inv, dele = ~truth & pred, truth & ~pred

    def rate(a, b):
        return a / b if b else None

    absent, present = int((~truth).sum()), int(truth.sum())
    return {
        "case_days": len(case_days), "absent": absent, "present": present,
        "invented": int(inv.sum()), "deleted": int(dele.sum()),
        "invented_rate": rate(int(inv.sum()), absent), "deleted_rate": rate(int(dele.sum()), present),
        "per_class": {c: {"absent": int((~truth[:, k]).sum()), "present": int(truth[:, k].sum()),
                          "invented": int(inv[:, k].sum()), "deleted": int(dele[:, k].sum())}
                      for k, c in enumerate(classes)},
        "invented_pairs": [[case_days[n], classes[k]] for n, k in zip(*np.nonzero(inv))],
        "deleted_pairs": [[case_days[n], classes[k]] for n, k in zip(*np.nonzero(dele))],
    }


def evaluate_csv(truth_csv, pred_csv, data_root, split: str, only_pred_case_days: bool = False) -> dict:
    """Score ``pred_csv`` under the default metric and count its invented / deleted organs against
    ``truth_csv`` over the scored case-days (:func:`organ_counts` + ``score``)."""
    scorer, tables = score_files(truth_csv, pred_csv, data_root, split, METRIC, only_pred_case_days,
                                 progress_bar=False)
    case_days = list(dict.fromkeys(tables["slices"]["case_day"]))
    counts = organ_counts(case_day_classes(tables["truth"], case_days), case_day_classes(tables["pred"], case_days),
                          case_days)
    return {**counts, "score": float(scorer.result()["score"])}


# ------------------------------------------------------------------------------------------- a run
def _recorded(work: Path, name: str) -> dict:
    p = work / "pipeline" / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def _path(recorded, fallback: Path, what: str, work: Path) -> Path:
    """The path the run recorded, or (a moved folder) its usual place under WORK."""
    for p in ([Path(recorded)] if recorded else []) + [fallback]:
        if p.exists():
            return p
    raise SystemExit(f"{work}: no {what} (recorded {recorded!r}, nor {fallback}); is it a finished kk run folder?")


def read_run(work) -> dict:
    """What a finished ``kk run`` folder holds that this benchmark needs (paths resolved)."""
    work = Path(work).resolve()
    data, tune, sub = _recorded(work, "data"), _recorded(work, "tune"), _recorded(work, "submission")
    if not tune:
        raise SystemExit(f"{work}: no pipeline/tune.json; the run did not reach the tune stage (or WORK is wrong)")
    run = {"work": work,
           "data": _path(data.get("data_root"), work / "data", "data root", work),
           "cache": _path(data.get("cache"), work / "cache", "cache", work),
           "preds": _path(None, work / "preds", "probability-map store", work),
           "tuned_yaml": _path(tune.get("tuned_yaml"), work / "ensembles" / "tuned.yaml", "tuned YAML", work),
           "search_yaml": _path(tune.get("search_yaml"), work / "ensembles" / "search.yaml", "search YAML", work),
           "recorded": {"tuned_oof": tune.get("tuned_oof"), "test_from_maps": sub.get("test_from_maps"),
                        "tuning_metric": data.get("tuning_metric")}}
    return run


def search_without_presence(search_yaml, out) -> Path:
    """The run's search YAML with the presence step off (every other key as the run had it)."""
    import yaml

    s = yaml.safe_load(Path(search_yaml).read_text())
    s["presence"] = dict(PRESENCE_OFF)
    atomic_write_text(out, yaml.safe_dump(s, sort_keys=False))
    return Path(out)


def retune(search_yaml, run: dict, out_yaml: Path, workers: int) -> dict:
    """``kk tune`` on the run's OOF maps and cache with ``search_yaml``; its stdout goes to stderr. Returns its
    summary (the JSON it writes with --summary-json)."""
    from kaggle_kit.commands.tune_oof import main as tune_main

    summ = out_yaml.with_name(out_yaml.stem + "_summary.json")
    argv = [str(search_yaml), "--cache", str(run["cache"]), "--pred-root", str(run["preds"]), "--out", str(out_yaml),
            "--workers", str(workers), "--summary-json", str(summ)]
    with contextlib.redirect_stdout(sys.stderr):
        rc = tune_main(argv)
    if rc != 0:
        raise SystemExit(f"kk tune {' '.join(argv)} failed (exit {rc}); its message is above")
    return json.loads(summ.read_text())


def presence_numbers(yaml_path) -> dict:
    """{"prob": {class: value}, "cls_prob": {class: value}} of an ensemble YAML (0.0: that test off)."""
    p = load_ensemble_config(yaml_path).params
    return {"prob": dict(zip(CLASSES, map(float, p.presence_prob))),
            "cls_prob": dict(zip(CLASSES, map(float, p.presence_cls_prob)))}


def apply_setting(run: dict, yaml_path, split: str, out_csv: Path) -> dict | None:
    """``yaml_path`` through ``run_ensemble`` on ``split``, the CSV scored and counted (:func:`evaluate_csv`);
    None for test when the data has no test images or no test_truth.csv."""
    data = run["data"]
    if split == "test":
        if not (data / "test_truth.csv").is_file() or discover_split(data, "test").empty:
            return None
    cfg = load_ensemble_config(yaml_path)
    run_ensemble(cfg, data, split, out_csv, run["preds"], run["cache"] if split == "oof" else None)
    if split == "oof":
        return evaluate_csv(data / "train.csv", out_csv, data, "train", only_pred_case_days=True)
    return evaluate_csv(data / "test_truth.csv", out_csv, data, "test")


def bench_folder(work, files: Path, workers: int = 2) -> dict:
    """Both settings on both splits of one work folder (see the module docstring)."""
    run = read_run(work)
    files.mkdir(parents=True, exist_ok=True)
    log(f"{run['work']}: re-tuning with the presence step off (kk tune, {workers} worker(s))")
    t = time.perf_counter()
    search = search_without_presence(run["search_yaml"], files / "search_no_presence.yaml")
    before_yaml = files / "before.yaml"
    before_summary = retune(search, run, before_yaml, workers)
    log(f"re-tuned in {time.perf_counter() - t:.0f} s")
    yamls = {"before": before_yaml, "after": run["tuned_yaml"]}
    res = {"work": str(run["work"]), "data_root": str(run["data"]),
           "settings": {k: {"yaml": str(v), "presence": presence_numbers(v)} for k, v in yamls.items()},
           "before_tuner": {k: before_summary.get(k) for k in ("in_sample", "held_out_mean", "fallback_plain")},
           "recorded": run["recorded"]}
    for split in SPLITS:
        res[split] = {}
        for s in SETTINGS:
            t = time.perf_counter()
            res[split][s] = apply_setting(run, yamls[s], split, files / f"{s}_{split}.csv")
            if res[split][s] is not None:
                log(f"{split} {s}: ensembled and scored in {time.perf_counter() - t:.1f} s")
    res["checks"] = check_against_run(res, run)
    for w in res["checks"]["warnings"]:
        log(f"WARNING: {w}")
    return res


def check_against_run(res: dict, run: dict) -> dict:
    """The "after" scores against what the run recorded for the same YAML (exact match expected)."""
    from kaggle_kit.metric.scorer import MetricConfig

    out, warnings = {}, []
    rec = run["recorded"]
    oof = res["oof"]["after"]
    if rec.get("tuned_oof") is not None and load_ensemble_config(run["tuned_yaml"]).metric == MetricConfig():
        out["oof_matches_tuned_oof"] = math.isclose(oof["score"], rec["tuned_oof"], rel_tol=0, abs_tol=1e-9)
        if not out["oof_matches_tuned_oof"]:
            warnings.append(f"OOF after {oof['score']!r} differs from the run's tuned_oof {rec['tuned_oof']!r}")
    test = res["test"]["after"]
    if test is not None and rec.get("test_from_maps") is not None:
        out["test_matches_test_from_maps"] = math.isclose(test["score"], rec["test_from_maps"], rel_tol=0,
                                                          abs_tol=1e-9)
        if not out["test_matches_test_from_maps"]:
            warnings.append(f"test after {test['score']!r} differs from the run's test_from_maps "
                            f"{rec['test_from_maps']!r}")
    out["warnings"] = warnings
    return out


# ------------------------------------------------------------------------------------------- output
def _frac(n, d) -> str:
    return f"{n}/{d} ({100 * n / d:.0f}%)" if d else f"{n}/0"


def _presence_label(p: dict) -> str:
    def one(vals):
        if not any(vals.values()):
            return "off"
        return " ".join(f"{c}={v:g}" if v else f"{c}=off" for c, v in vals.items())

    return f"prob {one(p['prob'])}; cls_prob {one(p['cls_prob'])}"


def format_table(results: list[dict]) -> str:
    """Before and after side by side: one row per folder and split."""
    head = (f"{'folder':<18}{'split':<6}{'case-days':>10}{'absent':>8}{'present':>8}  "
            f"{'invented before':>16}{'after':>12}  {'deleted before':>16}{'after':>12}  "
            f"{'score before':>13}{'after':>9}")
    lines = ["(case-day, class) pairs: invented = truth empty in the whole case-day, submission not; deleted = "
             f"the reverse. score: {METRIC} metric (3d). before: kk tune re-run with the presence step off; after: "
             "the run's tuned YAML", head, "-" * len(head)]
    for r in results:
        name = Path(r["work"]).name[:17]
        for split in SPLITS:
            b, a = r[split]["before"], r[split]["after"]
            if a is None:
                lines.append(f"{name:<18}{split:<6}  (no test images or no test_truth.csv)")
                continue
            lines.append(f"{name:<18}{split:<6}{a['case_days']:>10}{a['absent']:>8}{a['present']:>8}  "
                         f"{_frac(b['invented'], b['absent']):>16}{_frac(a['invented'], a['absent']):>12}  "
                         f"{_frac(b['deleted'], b['present']):>16}{_frac(a['deleted'], a['present']):>12}  "
                         f"{b['score']:>13.4f}{a['score']:>9.4f}")
    lines.append("")
    for r in results:
        name = Path(r["work"]).name
        for s in SETTINGS:
            lines.append(f"{name} {s}: presence {_presence_label(r['settings'][s]['presence'])}"
                         + (f" (fallback_plain: {r['before_tuner']['fallback_plain']})" if s == "before" else ""))
        for split in SPLITS:
            for s in SETTINGS:
                x = r[split][s]
                if x and (x["invented_pairs"] or x["deleted_pairs"]):
                    lines.append(f"  {split} {s}: invented {[' '.join(p) for p in x['invented_pairs']]}, "
                                 f"deleted {[' '.join(p) for p in x['deleted_pairs']]}")
        checks = {k: v for k, v in r["checks"].items() if k != "warnings"}
        lines.append(f"  checks against the run's record: {checks or 'none recorded'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", nargs="+", help="finished kk run work folder(s)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--workers", type=int, default=2, help="kk tune --workers of the re-run (default 2, as kk run)")
    ap.add_argument("--keep", default=None, help="keep the files (before YAML, CSVs) under DIR/<folder name>/")
    a = ap.parse_args(argv)
    os.environ.setdefault("KAGGLE_KIT_NO_PROGRESS", "1")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_presence_") as tmp:
        root = Path(a.keep) if a.keep else Path(tmp)
        for i, w in enumerate(a.work):
            results.append(bench_folder(w, root / f"{i}_{Path(w).resolve().name}", a.workers))
    print(format_table(results))
    if a.out:
        atomic_write_json(a.out, {"metric": METRIC, "folders": results})
        print(f"JSON: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
