"""The main job end to end, on synthetic data or on any folder in the competition layout.

    kk run                                      # synthetic data, the tiny CPU preset -> demo_out/
    kk run --data-root ROOT --preset gpu        # -> demo_out-<ROOT name>-<hash of its path>/
    kk run --work run1 --data-root ROOT         # an explicit work folder
    kk run --preset my_preset.yaml              # a preset of your own (configs/presets/tiny.yaml's form)
    kk run --budget 20m                         # the whole job in 20 min on this device, keeping the preset's
                                                # min_pixel_members (or stopping before training: see --help)

Stages (each a tool a user would run by hand; the commands are printed; kaggle_kit.pipeline): generate
synthetic data (unless --data-root) -> prepare the cache -> for every member of the preset: train each fold,
predict OOF and test -> tune the ensemble on OOF (each member's OOF score alone comes from the tuner) ->
bundle, run the notebook on the test split, validate submission.csv -> score it against ROOT/test_truth.csv
when that file exists. Every stage's result is in WORK/pipeline/<stage>.json; the LAST stdout line is one JSON
object: {"oof": {exp: score}, "tuned_oof": score, "test": score|null, "submission": path, ...}.

A work folder belongs to one data set (WORK/data_source.json; see kaggle_kit.pipeline.work): a run on other
data, or on changed data with trained folds, refuses to reuse it. A fold counts as trained only when
``kk train`` wrote its ``done.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

from kaggle_kit.cli import run
from kaggle_kit.commands._common import Parser
from kaggle_kit.pipeline import RunOptions, preset_names, run_pipeline
from kaggle_kit.pipeline import setup as _setup
from kaggle_kit.pipeline.report import print_report
from kaggle_kit.pipeline.stages import crop_pads, describe_layout, store_exps
from kaggle_kit.pipeline.stages import write_search as _write_search
from kaggle_kit.pipeline.work import (
    Context,
    WorkFolderError,
    check_models_match_data,
    data_identity,
    default_work,
    unfinished_folds,
)

__all__ = ["main", "parse_args", "setup", "options", "default_work", "data_identity", "check_models_match_data",
           "unfinished_folds", "describe_layout", "WorkFolderError", "Context", "write_search", "store_exps", "crop_pads"]

_D = RunOptions()  # the defaults live in one place


def parse_args(argv=None):
    ap = Parser(__doc__)
    ap.add_argument("--work", default=_D.work, help="output folder for everything this run writes (default: "
                    "demo_out for synthetic data, demo_out-<name>-<hash> for a --data-root)")
    ap.add_argument("--data-root", default=_D.data_root, help="competition folder; default: generate synthetic data")
    ap.add_argument("--preset", default=_D.preset, help=f"a shipped preset ({', '.join(preset_names())}: "
                    "configs/presets/) or a preset YAML's path")
    ap.flag("--n-folds", "--folds", type=int, default=_D.n_folds, help="number of folds (default: the preset's)")
    ap.add_argument("--train-cases", type=int, default=_D.train_cases, help="synthetic data: train cases")
    ap.add_argument("--test-cases", type=int, default=_D.test_cases, help="synthetic data: test cases")
    ap.add_argument("--size-scale", type=float, default=_D.size_scale, help="synthetic data: image and depth scale")
    ap.add_argument("--seed", type=int, default=_D.seed, help="synthetic data: its seed (another seed, another "
                    "data set and work folder)")
    ap.add_argument("--bundle-wheels", action="store_true",
                    help="put dependency wheels in the bundle (pip download; the notebook here runs in this venv)")
    ap.add_argument("--families", nargs="*", default=_D.families,
                    help="subset of the preset's members (by family name; a member cropping with detector boxes "
                         "brings the preset's detector)")
    ap.add_argument("--metric", default=_D.metric,
                    help="metric the tuner optimises: default (Kaggle-style), mlebench (MLE-bench's grader) or any "
                         "MetricConfig name; the OOF score is reported under both default and mlebench whatever "
                         "this is. Default: mlebench on an MLE-bench folder, else default")
    ap.add_argument("--out", default=_D.out, help="also write the final submission.csv to this path")
    ap.add_argument("--budget", default=_D.budget, help="wall time of the whole job, e.g. 20m, 1.5h (a bare number "
                    "is minutes): each member is timed on this device, every fold's length is planned to fit and "
                    "re-planned after each fold (WORK/pipeline/plan.json); default: the configs' epochs")
    ap.add_argument("--min-pixel-members", type=int, default=_D.min_pixel_members,
                    help="with --budget: pixel members the plan must keep, held at their minimum length if need be; "
                         "a budget that cannot keep them stops before any training and names the smallest one that "
                         "does on this device (default: the preset's min_pixel_members; 0: no floor)")
    return ap.parse_args(argv)


def options(a) -> RunOptions:
    return RunOptions(**{k: getattr(a, k) for k in RunOptions.__dataclass_fields__})


def setup(argv=None) -> Context:
    """Arguments, the preset and the work folder (claimed for this data): the pipeline's context."""
    return _setup(options(parse_args(argv)))


def write_search(template: Path, out: Path, store, pred_root: Path, metric: str = "default") -> Path:
    """The search space with this run's members and metric (``store``: unused, kept for callers)."""
    return _write_search(template, out, pred_root, metric)


def main(argv=None) -> int:
    res = run_pipeline(setup(argv))
    print_report(res)
    print(json.dumps(res.summary()))
    return 0


def __getattr__(name: str):
    if name == "PRESETS":  # {preset: [config, ...]} from configs/presets/, for callers of the old table
        from kaggle_kit.pipeline import load_preset

        return {p: load_preset(p).configs for p in preset_names()}
    raise AttributeError(name)


if __name__ == "__main__":
    run(main)
