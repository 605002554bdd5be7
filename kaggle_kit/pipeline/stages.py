"""The stages of the main job. Each is a function ``stage_*(ctx, ...) -> a result dataclass`` (results.py) that
it also writes to ``WORK/pipeline/<stage>.json``.

Stages run the tools a user would run by hand (``python -m kaggle_kit SUB ...``, the command printed), each in
its own process (training's memory and threads stay there), and read what a tool produced from the summary
file it writes with ``--summary-json``, never from its stdout. In-process work (baselines, gating-source
AUCs, box recall) is done here directly.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from kaggle_kit.children import run_child
from kaggle_kit.pipeline.results import (
    BundleSummary,
    DataResult,
    EnsembleSummary,
    MemberResult,
    NotebookReport,
    PredictSummary,
    ScoresResult,
    ScoreSummary,
    StageError,
    SubmissionResult,
    TrainSummary,
    TuneResult,
    ToolFailed,
    TuneSummary,
    ValidateSummary,
    from_mapping,
    read_summary,
    save_result,
)
from kaggle_kit.pipeline.work import Context, check_models_match_data, unfinished_folds

__all__ = ["Runner", "stage_data", "stage_members", "stage_scores", "stage_tune", "stage_submission",
           "stage_oof_metric_reruns", "describe_layout", "write_search", "store_exps", "crop_pads"]


class Runner:
    """Runs one tool per call in a subprocess, times it, and reads its ``--summary-json`` file."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def run(self, name: str, sub: str, args: list, summary: type | None = None, tag: str | None = None):
        """``python -m kaggle_kit SUB ARGS [--summary-json FILE]``; returns ``summary`` read from FILE (or None).
        A non-zero exit is a StageError (the tool's stdout tail is printed first; its stderr passes through)."""
        ctx = self.ctx
        path = None
        cmd = [ctx.python, "-m", "kaggle_kit", sub, *args]
        if summary is not None:
            path = ctx.tool_dir / f"{tag or sub}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)  # a file from an earlier run is never read as this one's
            cmd += ["--summary-json", path]
        cmd = [str(c) for c in cmd]
        print(f"[run_all] {name}: {' '.join(cmd)}", flush=True)
        t0 = time.time()
        p = run_child(cmd, env=dict(os.environ))  # dies with this process: a killed job stops writing
        dt = time.time() - t0
        ctx.times.append((name, dt))
        if p.returncode != 0:
            print(p.stdout[-4000:])
            raise ToolFailed(f"[run_all] stage {name!r} failed (exit {p.returncode}): {' '.join(cmd)}")
        print(f"[run_all] {name} done in {dt:.0f} s", flush=True)
        return None if summary is None else read_summary(path, summary, f"kk {sub}")


def describe_layout(data: Path, metric: str | None) -> tuple[dict | None, str, str]:
    """(MLE-bench layout info or None, the metric to tune for, a log line). On an MLE-bench folder
    (placeholder sample submission, test.csv with id,class) the tuner defaults to MLE-bench's grader."""
    from kaggle_kit.data.mlebench_layout import detect_mlebench_layout

    info = detect_mlebench_layout(data)
    chosen = metric or ("mlebench" if info else "default")
    if info is None:
        return None, chosen, f"[run_all] competition layout (Kaggle); tuning metric: {chosen}"
    return info, chosen, (
        f"[run_all] MLE-bench layout detected in {data}: test.csv lists {info['n_rows']} (id, class) rows of "
        f"{info['n_case_days']} case-days; sample_submission.csv holds the placeholder {info['placeholder']!r} on "
        f"every row (ignored; the submission keeps its row order"
        f"{'' if info['same_rows'] else ', which differs from test.csv: MLE-bench pairs rows by position'}). "
        f"Graded by MLE-bench's variant of the metric; tuning metric: {chosen}; OOF reported under both")


def stage_data(ctx: Context, r: Runner) -> DataResult:
    """Generate the synthetic data (unless a data root was given or it exists) and prepare the cache."""
    o = ctx.opts
    if o.data_root is None and not (ctx.data / "train.csv").is_file():
        r.run("generate", "synth", [ctx.data, "--train-cases", o.train_cases, "--test-cases", o.test_cases,
                                    "--seed", o.seed, "--size-scale", o.size_scale, "--overwrite"])
    r.run("prepare", "prepare", ["--data-root", ctx.data, "--cache", ctx.cache, "--n-folds", ctx.n_folds])
    check_models_match_data(ctx)
    layout, ctx.metric, line = describe_layout(ctx.data, o.metric)
    print(line, flush=True)
    res = DataResult(str(ctx.data), str(ctx.cache), ctx.n_folds, o.data_root is None, layout, ctx.metric)
    save_result(ctx.work, "data", res)
    return res


def _members_wanted(ctx: Context) -> list:
    """The preset's members, or those of ``--families`` (plus the preset's detector when one of them crops to
    detector boxes: ``data.crop: boxes``)."""
    from kaggle_kit.config import load_config

    cfgs = [(m, load_config(m.path, list(m.overrides))) for m in ctx.preset.members]
    wanted = set(ctx.opts.families or [])
    if not wanted:
        return cfgs
    unknown = wanted - {c["family"] for _, c in cfgs}
    if unknown:
        raise StageError(f"--families {sorted(unknown)}: not in preset {ctx.preset.name!r} (its families: "
                         f"{sorted({c['family'] for _, c in cfgs})})")
    if any(c["family"] in wanted and (c.get("data") or {}).get("crop") == "boxes" for _, c in cfgs):
        wanted.add("det_yolo")
    return [(m, c) for m, c in cfgs if c["family"] in wanted]


def stage_members(ctx: Context, r: Runner) -> list[MemberResult]:
    """Train every unfinished fold of each member of the preset, then predict its OOF and test maps."""
    paths = ["--cache", ctx.cache, "--work-root", ctx.work_root, "--pred-root", ctx.pred_root]
    out = []
    for m, cfg in _members_wanted(ctx):
        fam = cfg["family"]
        # experiment names must be unique across families (preds/<exp> has no family level)
        exp = cfg.get("exp") or f"{fam}_{m.path.stem}"
        todo = unfinished_folds(ctx.work_root, fam, exp, ctx.n_folds)
        reused = sorted(set(range(ctx.n_folds)) - set(todo))
        if reused:
            print(f"[run_all] {fam}: folds {reused} trained already (done.json)")
        if todo:  # one process for all its folds: imports and start-up paid once
            t = r.run(f"train {fam} folds {','.join(map(str, todo))}", "train",
                      [m.path, "--fold", ",".join(map(str, todo)), *paths, f"exp={exp}", *m.overrides], TrainSummary,
                      f"train_{exp}")
            if t.folds != todo:
                raise StageError(f"kk train {m.path}: trained folds {t.folds}, asked for {todo}")
        r.run(f"predict {fam} oof+test", "predict", [m.path, "--split", "oof,test", *paths, f"exp={exp}", *m.overrides],
              PredictSummary, f"predict_{exp}")
        out.append(MemberResult(exp, fam, m.config, todo, reused))
    save_result(ctx.work, "members", out)
    return out


def store_exps(pred_root: Path) -> list[str]:
    """Experiments with OOF maps in the store, sorted."""
    return sorted(p.parent.parent.name for p in Path(pred_root).glob("*/oof/manifest.json"))


def crop_pads(work_root: Path) -> dict[str, dict[int, float]]:
    """{exp: {fold: pad}} of every member that crops to detector boxes: the ``data.box_pad`` its folds trained
    and predict with (``auto`` resolved at train time, read from each fold's last.pth meta)."""
    from kaggle_kit.engine.checkpoint import CheckpointError, load_inference_checkpoint

    out: dict[str, dict[int, float]] = {}
    for ck in sorted(Path(work_root).glob("*/*/fold*/last.pth")):
        try:
            data = load_inference_checkpoint(ck)[1].get("data") or {}
        except CheckpointError:  # not ours to report on (the job itself never used it)
            continue
        if data.get("crop") == "boxes" and ck.parent.name[4:].isdigit():
            out.setdefault(ck.parent.parent.name, {})[int(ck.parent.name[4:])] = float(data.get("box_pad") or 0.0)
    return out


def stage_scores(ctx: Context) -> ScoresResult:
    """What the tuner does not report: gating sources' ROC-AUC (the classifier family and the 2.5D aux heads;
    per class, and after the 5-slice z mean the ensemble's gating.z_window can apply), the detectors' OOF box
    recall of organ pixels, crop members' box pads, and the baselines (empty masks; an intensity threshold
    fitted per fold). Each member's own OOF score comes from the tuner (stage_tune)."""
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.data.dataset25d import fold_case_days
    from kaggle_kit.io.probmaps import read_manifest
    from kaggle_kit.metric.baselines import empty_baseline, intensity_baseline
    from kaggle_kit.metric.presence import report_exp

    kinds = {e: read_manifest(ctx.pred_root, e, "oof")["kind"] for e in store_exps(ctx.pred_root)}
    c = Cache(ctx.cache)
    intens = [intensity_baseline(c, fold_case_days(c, k, "train"), fold_case_days(c, k, "val"))
              for k in range(ctx.n_folds)]
    res = ScoresResult(pixel_members=[e for e, k in kinds.items() if k == "pixel"],
                       baseline_empty=empty_baseline(c, c.case_days("train"))["score"],
                       baseline_intensity=float(sum(x["score"] for x in intens) / len(intens)))
    for exp, kind in kinds.items():
        if kind == "classifier":
            rep = report_exp(ctx.cache, ctx.pred_root, exp, quiet=True)
            res.classifier_auc[exp] = {cl: round(v["auc"], 4) for cl, v in rep["classes"].items()}
            res.classifier_auc_z5[exp] = {cl: round(v, 4) for cl, v in rep["z_window_auc"]["5"].items()}
    res.box_pad = crop_pads(ctx.work_root)
    for f in sorted(ctx.pred_root.glob("*/oof/boxes.json")):
        res.detector_box_recall[f.parent.parent.name] = round(json.loads(f.read_text())["box_recall"]["recall"], 5)
    save_result(ctx.work, "scores", res)
    return res


def write_search(template: Path, out: Path, pred_root: Path, metric: str = "default") -> Path:
    """The search space with this run's members (every pixel / classifier OOF experiment in the store) and
    metric filled in."""
    import yaml

    from kaggle_kit.io.probmaps import read_manifest
    from kaggle_kit.utils import atomic_write_text

    s = yaml.safe_load(Path(template).read_text())
    if metric != "default":
        s["metric"] = metric
    s["members"] = [{"exp": e, "kind": k} for e in store_exps(pred_root)
                    if (k := read_manifest(pred_root, e, "oof")["kind"]) in ("pixel", "classifier")]
    atomic_write_text(out, yaml.safe_dump(s, sort_keys=False))
    return Path(out)


def stage_tune(ctx: Context, r: Runner) -> TuneResult:
    """Tune the ensemble on OOF (the tuner also scores each member alone, and the plain average), then run the
    tuned YAML through ``kk ensemble --split oof``: the ensemble's own code, and the OOF CSV the metric
    re-runs score."""
    ens = ctx.work / "ensembles"
    search = write_search(ctx.preset.search, ens / "search.yaml", ctx.pred_root, ctx.metric)
    tuned = ens / "tuned.yaml"
    ts = r.run("tune", "tune", [search, "--data-root", ctx.data, "--cache", ctx.cache, "--pred-root", ctx.pred_root,
                                "--out", tuned], TuneSummary)
    oof_csv = ctx.work / "oof" / "tuned.csv"
    es = r.run("ensemble oof", "ensemble", [tuned, "--data-root", ctx.data, "--split", "oof", "--out", oof_csv,
                                            "--pred-root", ctx.pred_root, "--cache", ctx.cache],
               EnsembleSummary, "ensemble_oof")
    score = from_mapping(es.metric, ScoreSummary, f"{ctx.tool_dir / 'ensemble_oof.json'} (kk ensemble), 'metric'")
    res = TuneResult(str(tuned), str(search), ts, score.score, str(oof_csv))
    save_result(ctx.work, "tune", res)
    return res


def can_unshare() -> bool:
    """Whether ``unshare -n`` (a network namespace with nothing in it) is permitted here (the same test as
    ``kk notebook --offline``'s)."""
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-n", "true"], capture_output=True).returncode == 0


def stage_submission(ctx: Context, r: Runner, tuned_yaml: Path) -> SubmissionResult:
    """The test submission, as on Kaggle: bundle the checkpoints + tuned YAML, run the notebook headless (no
    network where ``unshare -n`` is permitted) on the test split, validate, score against the hidden truth if
    present. The same YAML applied to the stored test maps by ``kk ensemble`` is scored too (train/serve skew
    check)."""
    from kaggle_kit.deploy.infer import report_path

    data, sub, bundle = ctx.data, ctx.work / "submission.csv", ctx.work / "bundle"
    r.run("bundle", "bundle", ["--out", bundle, "--ensemble", tuned_yaml, "--work-root", ctx.work_root,
                               "--pred-root", ctx.pred_root,
                               *(["--target", "local"] if ctx.opts.bundle_wheels else ["--no-wheels"])], BundleSummary)
    offline = can_unshare()
    report = report_path(sub)
    report.unlink(missing_ok=True)
    r.run("notebook" + (" (offline)" if offline else ""), "notebook",
          ["--bundle", bundle, "--data-root", data, "--out", sub, "--executed",
           ctx.work / "kaggle_kit_inference.executed.ipynb", *(["--offline"] if offline else [])])
    nb = read_summary(report, NotebookReport, "the notebook (kaggle_kit.deploy.infer)")
    r.run("validate", "validate", [sub, "--data-root", data, "--split", "test"], ValidateSummary)
    sub_maps = ctx.work / "submission_from_maps.csv"
    r.run("ensemble test maps", "ensemble", [tuned_yaml, "--data-root", data, "--split", "test", "--out", sub_maps,
                                             "--pred-root", ctx.pred_root], EnsembleSummary, "ensemble_test")
    scores = {}
    truth = data / "test_truth.csv"
    if truth.is_file():
        for path, key in ((sub, "test"), (sub_maps, "maps")):
            scores[key] = r.run(f"score {path.name}", "score", ["--truth", truth, "--pred", path, "--data-root", data,
                                                                 "--split", "test"], ScoreSummary,
                                f"score_{path.stem}").score
    res = SubmissionResult(str(sub) if sub.is_file() else None, str(sub_maps), scores.get("test"),
                           scores.get("maps"), nb)
    save_result(ctx.work, "submission", res)
    return res


def stage_oof_metric_reruns(ctx: Context, r: Runner, oof_csv: Path) -> dict:
    """The tuned OOF file under the Kaggle-style default and MLE-bench's grader: {metric: score}. A report
    after the submission is written: a metric that fails is said, not fatal."""
    out = {}
    if not Path(oof_csv).is_file():
        return out
    for m in ("default", "mlebench"):
        try:
            out[m] = r.run(f"score oof ({m})", "score", ["--truth", ctx.data / "train.csv", "--pred", oof_csv,
                                                         "--data-root", ctx.data, "--split", "train",
                                                         "--only-pred-case-days", "--metric", m],
                           ScoreSummary, f"score_oof_{m}").score
        except ToolFailed as e:  # a tool that ran and failed; a summary without its keys stays an error
            print(f"[run_all] WARNING: the OOF score under {m} is not available: {e}", flush=True)
    return out
