"""The main job end to end, on synthetic data or on any folder in the competition layout (``kk run``).

    from kaggle_kit.pipeline import RunOptions, run_pipeline
    res = run_pipeline(RunOptions(preset="tiny"))      # -> PipelineResult; res.summary() is kk run's JSON line

Stages (each a function returning a dataclass, written to ``WORK/pipeline/<stage>.json``):
data (generate synthetic data unless a data root is given; ``kk prepare``) -> members (for every member of
the preset, in its order: ``kk train`` each unfinished fold, ``kk predict`` OOF and test) -> scores (gating
sources' AUC, detector box recall, baselines) -> tune (``kk tune``: the tuned ensemble, each member's and the
plain average's OOF scores, held out per fold; ``kk ensemble --split oof``) -> submission (``kk bundle``, the
notebook headless, ``kk validate``, ``kk ensemble`` on the test maps, ``kk score`` against
DATA/test_truth.csv when it exists) -> the tuned OOF CSV under both metrics. A stage reads what a tool
produced from the file the tool writes with ``--summary-json`` (``WORK/pipeline/tools/``), typed by
:mod:`kaggle_kit.pipeline.results`: a key a tool stopped writing is an error naming it.

Presets (``configs/presets/*.yaml``, :mod:`kaggle_kit.pipeline.presets`): the members, their order, the folds
and the search space. The work folder rule: :mod:`kaggle_kit.pipeline.work`.
"""
from __future__ import annotations

import time
from pathlib import Path

from kaggle_kit.pipeline.presets import Preset, PresetError, load_preset, preset_names
from kaggle_kit.pipeline.results import PipelineResult, StageError, SubmissionResult
from kaggle_kit.pipeline.work import Context, RunOptions, WorkFolderError, setup

__all__ = ["RunOptions", "Context", "Preset", "PresetError", "PipelineResult", "StageError", "WorkFolderError",
           "load_preset", "preset_names", "setup", "run_pipeline"]


def run_pipeline(opts: RunOptions | Context) -> PipelineResult:
    """Every stage in order; returns the typed result (also in ``WORK/pipeline/result.json``)."""
    from kaggle_kit.pipeline import stages as S
    from kaggle_kit.pipeline.results import save_result
    from kaggle_kit.utils import atomic_write_text

    ctx = opts if isinstance(opts, Context) else setup(opts)
    r = S.Runner(ctx)
    t0 = time.time()
    data = S.stage_data(ctx, r)
    blog = None
    if ctx.opts.budget:
        from kaggle_kit.pipeline.budget import stage_members_budgeted
        from kaggle_kit.plan import parse_budget

        members, blog = stage_members_budgeted(ctx, r, parse_budget(ctx.opts.budget), t0)
    else:
        members = S.stage_members(ctx, r)
    scores = S.stage_scores(ctx)
    tune, both = None, {}
    sub = SubmissionResult(None, None, None, None, None)
    if scores.pixel_members:  # a detector alone has nothing to ensemble
        tune = S.stage_tune(ctx, r)
        sub = S.stage_submission(ctx, r, Path(tune.tuned_yaml))
        both = S.stage_oof_metric_reruns(ctx, r, Path(tune.oof_csv))
    if ctx.opts.out and sub.submission:
        atomic_write_text(Path(ctx.opts.out), Path(sub.submission).read_text())
        print(f"[run_all] submission written to {ctx.opts.out}", flush=True)
    res = PipelineResult(data, members, scores, tune, sub, both, time.time() - t0, list(ctx.times))
    if blog is not None:
        from kaggle_kit.pipeline.budget import plan_vs_actual

        res.budget = plan_vs_actual(blog, list(ctx.times), res.seconds)
    save_result(ctx.work, "result", res)
    return res
