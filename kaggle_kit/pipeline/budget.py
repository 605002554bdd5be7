"""The main job on a time budget (``kk run --budget 20m``): calibrate each member on this device, plan every
fold's training length (:mod:`kaggle_kit.plan`), train fold by fold re-planning from what each fold took, and
report plan against actual.

- **calibrate**: each member trains a few steps on fold 0 (``train.iters``: 2 warm-up steps, then timed ones)
  at its real batch and canvas, in ``WORK/calibrate/`` (thrown away), and predicts that fold's OOF maps: the
  seconds per step (median of the timed ones), the rest of a fold's process (start-up, dataset, the one
  validation, export) and the seconds of its maps per slice. A detector trains one epoch (ultralytics trains
  whole epochs; its plan becomes ultralytics' ``time=``). A member that crops to detector boxes calibrates
  uncropped: a step costs the same on its canvas, and the detector has no boxes yet.
- **fixed costs**: the stages after training, from the data size and the measured per-slice costs: every
  member's OOF and test maps, the tuner, the bundle, the notebook (the test split once more, every fold
  model), the scoring stages (:func:`fixed_costs`).
- **plan / re-plan**: before any training, and before every fold (folds run one process each so the next
  one's length can change); a member that cannot get its minimum length is dropped whole, before it starts.
- **the ensemble's floor** (the preset's ``min_pixel_members``, ``kk run --min-pixel-members N``): every plan
  holds that many pixel members (at their minimum length when their shares buy less, :mod:`kaggle_kit.plan`).
  When the first plan cannot, the job stops before any training (:class:`BudgetTooSmall`, exit 2): the budget,
  the device, the pixel members the plan would drop with their minimums, and the smallest budget that keeps the
  floor on this device, rounded up to a minute (:func:`kaggle_kit.plan.floor_budget`); ``plan.json`` records it.
  A re-plan after a slow fold may still drop a started member when even the minimums no longer fit: its reason
  says after which fold and how many of its folds were trained (the final report prints it).
- the plan is printed as a table and written to ``WORK/pipeline/plan.json`` (every re-plan appended), with
  an ETA line after each fold; the job's result carries the first plan and the actual seconds per stage.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kaggle_kit.plan import FoldDone, MemberCost, Plan, floor_budget, format_plan, make_plan, minimum_s
from kaggle_kit.utils import UserError

__all__ = ["Calibration", "WARMUP_STEPS", "TIMED_STEPS", "calibrate_member", "fixed_costs", "member_costs",
           "BudgetLog", "BudgetTooSmall", "device_label", "pixel_floor", "refusal", "plan_vs_actual",
           "stage_members_budgeted"]

WARMUP_STEPS = 2  # untimed: the first steps pay allocator / autotuning / lazy-init costs
TIMED_STEPS = 4


class BudgetTooSmall(UserError):
    """The first plan keeps fewer pixel members than the preset's floor: the job stops before any training."""


@dataclass
class Calibration:
    """One member measured on this device (seconds)."""
    exp: str
    family: str
    unit: str  # "iter" (torch families: train.iters) | "epoch" (the detector: ultralytics epochs)
    sec_per_unit: float
    units_per_epoch: int  # iterations of one epoch of fold 0's training set (1 for the detector)
    fold_overhead_s: float  # a fold's process besides its steps: start-up, dataset, one validation, export
    map_s_per_slice: float  # one fold model's maps of one slice (OOF and test, TTA included, its loading too)
    startup_s: float  # a map-writing process's own start-up (imports), paid once per stage
    calibrate_s: float  # what the calibration itself took


def _train_overrides(cfg: dict, unit_count: int) -> list[str]:
    """Overrides that make a calibration run: a few steps (torch) or one epoch (detector); uncropped."""
    if cfg["family"] == "det_yolo":
        return ["train.epochs=1"]
    ov = [f"train.iters={unit_count}", "train.warmup_iters=1"]
    if (cfg.get("data") or {}).get("crop") == "boxes":
        ov += ["data.crop=null", "data.box_pad=0.0"]
    return ov


def _n_slices(cache, split: str) -> int:
    try:
        return int(len(cache.index(split)))
    except Exception:  # noqa: BLE001 - a split the cache lacks (no test images): nothing to predict there
        return 0


def calibrate_member(ctx, r, member, cfg: dict, exp: str) -> Calibration:
    """Train ``member`` briefly on fold 0 and predict that fold's OOF maps, in ``WORK/calibrate``."""
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.data.dataset25d import fold_case_days

    root = ctx.work / "calibrate"
    cal_exp = f"cal_{exp}"
    paths = ["--cache", ctx.cache, "--work-root", root / "work_dirs", "--pred-root", root / "preds"]
    fam = cfg["family"]
    t0 = time.time()
    n_steps = WARMUP_STEPS + TIMED_STEPS
    r.run(f"calibrate {exp} (train)", "train",
          [member.path, "--fold", "0", *paths, f"exp={cal_exp}", *member.overrides, *_train_overrides(cfg, n_steps)])
    train_s = time.time() - t0
    wd = root / "work_dirs" / fam / cal_exp / "fold0"
    if fam == "det_yolo":
        epoch_s = _yolo_epoch_seconds(wd)
        unit, per_unit, units_per_epoch, steps_s = "epoch", epoch_s, 1, epoch_s
    else:
        timing = json.loads((wd / "timing.json").read_text())
        timed = timing["iter_seconds"][WARMUP_STEPS:] or timing["iter_seconds"]
        per_unit = float(statistics.median(timed))
        units_per_epoch = max(1, int(timing["samples"]) // max(1, int(timing["batch_size"])))
        unit, steps_s = "iter", float(sum(timing["iter_seconds"]))
    t1 = time.time()
    ov = [o for o in _train_overrides(cfg, n_steps) if o.startswith("data.")]
    summary = ctx.tool_dir / f"calibrate_predict_{exp}.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
    r.run(f"calibrate {exp} (predict)", "predict",
          [member.path, "--split", "oof", "--fold", "0", *paths, f"exp={cal_exp}", *member.overrides, *ov,
           "--summary-json", summary])
    pred_wall = time.time() - t1
    maps_s = float(json.loads(summary.read_text())["oof"]["seconds"])  # an OOF-only summary: no 'test' key
    c = Cache(ctx.cache)
    n0 = sum(int(c.image("train", cd, mmap=True).shape[0]) for cd in fold_case_days(c, 0, "val"))
    return Calibration(exp, fam, unit, per_unit, units_per_epoch, max(train_s - steps_s, 0.0),
                       maps_s / max(n0, 1), max(pred_wall - maps_s, 0.0), time.time() - t0)


def _yolo_epoch_seconds(wd: Path) -> float:
    """Seconds of ultralytics' first epoch (its results.csv ``time`` column: training + that epoch's validation)."""
    import csv

    path = wd / "yolo" / "results.csv"
    with open(path, newline="") as f:
        rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(f)]
    if not rows or "time" not in rows[0]:
        raise RuntimeError(f"{path}: no 'time' column: cannot time the detector's epoch")
    return float(rows[0]["time"])


def member_costs(cals: list[Calibration], members: list, n_folds: int, n_train: int, n_test: int,
                 cfgs: list[dict] | None = None) -> list[MemberCost]:
    """:class:`MemberCost` of each calibrated member: its share, minimum and cap from the preset (in epochs),
    each fold's training-process overhead (what a fold's measured seconds hold besides its steps) and, apart, the
    member's maps (OOF: every training slice once; test: every slice once per fold model), written after its
    folds: kept out of the per-fold overhead, or the rate measured from a fold would come out too fast."""
    out = []
    for i, (cal, m) in enumerate(zip(cals, members)):
        data = ((cfgs or [{}] * len(cals))[i].get("data") or {})
        needs = (data["boxes_exp"],) if data.get("crop") == "boxes" and data.get("boxes_exp") else ()
        maps_per_fold = cal.map_s_per_slice * (n_train / n_folds + n_test)
        cap = getattr(m, "max_epochs", None)
        out.append(MemberCost(cal.exp, float(getattr(m, "share", 1.0)), cal.sec_per_unit, cal.units_per_epoch,
                              fold_overhead_s=cal.fold_overhead_s, maps_s=maps_per_fold * n_folds,
                              min_epochs=float(getattr(m, "min_epochs", 1.0)),
                              max_epochs=None if cap is None else float(cap), needs=needs,
                              pixel=_kind(cal.family) == "pixel"))
    return out


def _kind(family: str) -> str:
    from kaggle_kit.registry import resolve

    return resolve("family", family).kind


def pixel_floor(ctx, wanted: list) -> int:
    """Pixel members the plan must keep: ``--min-pixel-members`` or the preset's ``min_pixel_members``, at most
    the pixel members this run trains (``--families`` may leave fewer)."""
    n_pixel = sum(m.kind == "pixel" and m.share > 0 for m, _ in wanted)
    k = ctx.opts.min_pixel_members
    k = ctx.preset.min_pixel_members if k is None else int(k)
    if k > n_pixel:
        print(f"[budget] this run trains {n_pixel} pixel member{'s' * (n_pixel != 1)} (--families): the floor "
              f"is {n_pixel}, not {k}", flush=True)
    return min(k, n_pixel)


def device_label(torch_module=None) -> str:
    """The device the members train on, in words: ``cuda: <name>`` or ``cpu, <n> cores``. ``torch_module``:
    a stand-in for tests (default: ``import torch``)."""
    try:
        t = torch_module
        if t is None:
            import torch as t
        if t.cuda.is_available():
            return f"cuda: {t.cuda.get_device_name(0)}"
    except Exception:  # noqa: BLE001 - no usable torch here: the tools would train on the CPU as well
        pass
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"cpu, {n} core{'s' * (n != 1)}"


def _min(sec: float) -> str:
    return f"{sec / 60:.1f}"


def refusal(budget_text: str, plan: Plan, costs: list[MemberCost], n_folds: int, k: int, device: str,
            done: list[FoldDone] = (), source: str = "the preset's min_pixel_members") -> tuple[str, dict]:
    """The message and the record (``plan.json``) of a first plan that keeps fewer than ``k`` pixel members
    (``source``: where the floor comes from)."""
    fb = floor_budget(costs, n_folds, k, plan.fixed, plan.spent_s, done)
    kept = plan.pixel_kept
    lost = [c for c in costs if c.pixel and c.name not in kept and c.share > 0]
    mins = {c.name: minimum_s(c, n_folds, done) for c in costs}
    alt = f"--min-pixel-members {k - 1}" + (" (no floor)" if k == 1 else "")
    n = len(kept)
    head = (f"--budget {budget_text} cannot train the preset's ensemble on this device ({device}): the plan keeps "
            f"{n or 'no'} pixel member{'s' * (n != 1)}, under the floor of {k} ({source}), and "
            f"drops " + ", ".join(f"{c.name} ({_min(mins[c.name])} min at its minimum)" for c in lost))
    if math.isinf(fb.budget_s):
        msg = f"{head}; no budget keeps {k} (fewer can run at all): give {alt}"
        suggest = None
    else:
        suggest = max(1, math.ceil(fb.budget_s / 60 - 1e-9))
        parts = [f"{m} {_min(fb.member_s[m])}" for m in fb.members]
        extra = [f"{m} {_min(fb.member_s[m])}" for m in fb.held if m not in fb.members]
        listed = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
        if extra:
            listed = ", ".join(parts) + " and " + ", ".join(extra) + (", which they need" if k > 1 else
                                                                      ", which it needs")
        msg = (f"{head}; {k} need {_min(fb.budget_s)} min here (at their minimum {listed}; the stages after "
               f"training {_min(fb.fixed_s)}; spent so far {_min(fb.spent_s)}): give --budget {suggest}m or more, "
               f"or {alt}")
    rec = {"message": msg, "budget": budget_text, "budget_s": round(plan.budget_s, 1), "device": device,
           "min_pixel_members": k, "pixel_kept": kept, "would_drop": [c.name for c in lost],
           "minimum_s": {c.name: round(mins[c.name], 1) for c in lost},
           "floor_budget_s": None if math.isinf(fb.budget_s) else round(fb.budget_s, 1),
           "floor_members": list(fb.held), "suggested_budget": None if suggest is None else f"{suggest}m"}
    return msg, rec


#: seconds of the tuner per voxel of the OOF store and member (benchmarks/bench_tune.py at competition scale:
#: 371 s for 274 full-size case-days x 3 members on 2 CPU cores, ~2.8e9 voxel-members), and a light tool's start-up
TUNE_S_PER_VOXEL_MEMBER = 1.5e-7
LIGHT_TOOL_S = 2.0


def fixed_costs(cals: list[Calibration], n_folds: int, n_train_voxels: int, n_train_cd: int,
                n_test: int) -> dict[str, float]:
    """Seconds of the stages after training that do not scale with it (estimates from the data size and the
    measured costs; the report sets them against what they took): each member's map-writing start-up; the
    in-process scores (baselines per case-day); the tuner (:data:`TUNE_S_PER_VOXEL_MEMBER`) and its OOF
    ensemble; the bundle; the notebook (a kernel start-up, then the test split through every fold model of every
    member); validation and the scoring tools (start-up bound)."""
    n_members = sum(c.family != "det_yolo" for c in cals)
    startup = max((c.startup_s for c in cals), default=LIGHT_TOOL_S)
    notebook_maps = sum(c.map_s_per_slice * n_test * n_folds for c in cals)
    return {"predict start-up": sum(c.startup_s for c in cals), "scores": 1.0 + 0.1 * n_train_cd,
            "tune": 2 * LIGHT_TOOL_S + TUNE_S_PER_VOXEL_MEMBER * n_train_voxels * max(n_members, 1),
            "bundle": LIGHT_TOOL_S, "notebook": startup + 5.0 + notebook_maps, "validate+score": 5 * LIGHT_TOOL_S}


class BudgetLog:
    """Every plan made during the run, appended to ``WORK/pipeline/plan.json``, and the ETA lines."""

    def __init__(self, work: Path, budget_s: float, t_start: float):
        self.path = Path(work) / "pipeline" / "plan.json"
        self.budget_s, self.t_start = budget_s, t_start
        self.plans: list[dict] = []
        self.calibration: list[dict] = []
        self.first: Plan | None = None  # the plan made after calibration, before any training
        self.fixed: dict[str, float] = {}
        self.refused: dict | None = None  # why the job stopped before training (BudgetTooSmall)
        self.dropped: list | None = None  # [(member, why)] at the end of training, re-plans' drops told apart
        self.min_pixel = 0  # the ensemble's floor the plans kept

    def record(self, plan: Plan, when: str) -> None:
        self.plans.append({"when": when, "elapsed_s": round(time.time() - self.t_start, 1), **plan.to_json()})
        self.write()

    def write(self) -> None:
        from kaggle_kit.utils import atomic_write_json

        self.path.parent.mkdir(parents=True, exist_ok=True)
        obj = {"budget_s": self.budget_s, "calibration": self.calibration, "plans": self.plans}
        if self.refused is not None:
            obj["refused"] = self.refused
        atomic_write_json(self.path, obj)

    def show(self, plan: Plan, title: str) -> None:
        print(f"[budget] {title}\n{format_plan(plan)}", flush=True)

    def eta(self, plan: Plan) -> None:
        el = time.time() - self.t_start
        end = time.strftime("%H:%M", time.localtime(self.t_start + plan.total_s))
        print(f"[budget] {el / 60:.1f} min elapsed; projected total {plan.total_s / 60:.1f} min of "
              f"{self.budget_s / 60:.1f} (ETA {end})", flush=True)

    def add_calibration(self, cal: Calibration) -> None:
        self.calibration.append({k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(cal).items()})


def plan_now(budget_s: float, costs: list[MemberCost], n_folds: int, fixed: dict, t_start: float,
             done: list[FoldDone], dropped: list, min_pixel: int = 0) -> Plan:
    """The plan from here: the wall time since the job started is spent."""
    return make_plan(budget_s, costs, n_folds, fixed, spent_s=time.time() - t_start, done=done, dropped=dropped,
                     min_pixel=min_pixel)


def _note_drops(plan: Plan, known: set, told: set, when: str, done: list[FoldDone], n_folds: int) -> list:
    """``plan.dropped`` with each member dropped by this re-plan told apart: after which fold, how many of its
    folds were trained (thrown away: OOF needs every fold), and when the ensemble fell under its floor."""
    for i, (name, why) in enumerate(plan.dropped):
        if name in known:
            continue
        known.add(name)
        n = sum(d.member == name and d.iters > 0 for d in done)
        why += f"; re-plan {when}: {n} of its {n_folds} folds trained, thrown away" if n else f"; re-plan {when}"
        if plan.min_pixel and len(plan.pixel_kept) < plan.min_pixel:
            why += (f"; {len(plan.pixel_kept)} pixel member{'s' * (len(plan.pixel_kept) != 1)} left, under the "
                    f"floor of {plan.min_pixel} (the folds ran slower than calibrated)")
        plan.dropped[i] = (name, why)
        told.add(name)
        print(f"[budget] member {name} dropped: {why}", flush=True)
    return plan.dropped


def _fold_overrides(cfg: dict, cost: MemberCost, units: int) -> list[str]:
    """The planned length of one fold: ``train.iters`` (torch families) or ultralytics' ``time=`` (hours)."""
    if cfg["family"] == "det_yolo":
        return [f"train.time_h={units * cost.sec_per_iter / 3600:.6f}", f"train.epochs={max(1, units)}"]
    return [f"train.iters={units}"]


def stage_members_budgeted(ctx, r, budget_s: float, t_start: float):
    """:func:`kaggle_kit.pipeline.stages.stage_members` on a budget: calibrate, plan, then every fold in its own
    ``kk train`` with its planned length, re-planning before each; a member the plan drops is not trained.
    Returns (members, BudgetLog)."""
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.pipeline.results import MemberResult, PredictSummary, TrainSummary, save_result
    from kaggle_kit.pipeline.stages import _members_wanted
    from kaggle_kit.pipeline.work import unfinished_folds

    log = BudgetLog(ctx.work, budget_s, t_start)
    wanted = _members_wanted(ctx)
    exps = [cfg.get("exp") or f"{cfg['family']}_{m.path.stem}" for m, cfg in wanted]
    c = Cache(ctx.cache)
    n_train, n_test = _n_slices(c, "train"), _n_slices(c, "test")
    n_train_cd = len(c.case_days("train"))
    idx = c.index("train")
    n_train_voxels = int((idx["height"] * idx["width"]).sum()) if {"height", "width"} <= set(idx.columns) else 0
    done: list[FoldDone] = []
    cals = []
    for (m, cfg), exp in zip(wanted, exps):
        todo = unfinished_folds(ctx.work_root, cfg["family"], exp, ctx.n_folds)
        for k in sorted(set(range(ctx.n_folds)) - set(todo)):  # trained before: reused, costs nothing now
            done.append(FoldDone(exp, k, 0, 0.0))
        cal = calibrate_member(ctx, r, m, cfg, exp)
        log.add_calibration(cal)
        cals.append(cal)
    costs = member_costs(cals, [m for m, _ in wanted], ctx.n_folds, n_train, n_test, [c for _, c in wanted])
    fixed = fixed_costs(cals, ctx.n_folds, n_train_voxels, n_train_cd, n_test)
    floor = pixel_floor(ctx, wanted)
    plan = plan_now(budget_s, costs, ctx.n_folds, fixed, t_start, done, [], floor)
    dropped = plan.dropped
    known = {n for n, _ in dropped}  # drops already told apart (the first plan's: before anything trained)
    log.first, log.fixed = plan, fixed
    log.record(plan, "before training")
    log.show(plan, f"plan for a budget of {budget_s / 60:.1f} min (calibrated on this device)")
    if len(plan.pixel_kept) < floor:  # no ensemble on this budget: stop before any training, say what would do
        src = "the preset's min_pixel_members" if ctx.opts.min_pixel_members is None else "--min-pixel-members"
        msg, log.refused = refusal(ctx.opts.budget or f"{budget_s / 60:g}m", plan, costs, ctx.n_folds, floor,
                                   device_label(), done, src)
        log.write()
        raise BudgetTooSmall(msg)
    if not plan.pixel_kept:
        print("[budget] WARNING: the plan keeps no pixel member (--min-pixel-members 0): no ensemble to tune, "
              "no submission", flush=True)
    first = plan
    paths = ["--cache", ctx.cache, "--work-root", ctx.work_root, "--pred-root", ctx.pred_root]
    out = []
    told: set = set()
    for (m, cfg), exp, cost in zip(wanted, exps, costs):
        fam = cfg["family"]
        trained = []
        for k in range(ctx.n_folds):
            if any(d.member == exp and d.fold == k for d in done):
                continue
            plan = plan_now(budget_s, costs, ctx.n_folds, fixed, t_start, done, dropped, floor)
            dropped = _note_drops(plan, known, told, f"before {exp} fold {k}", done, ctx.n_folds)
            mp = next((p for p in plan.members if p.name == exp), None)
            if mp is None:
                break
            units = mp.iters[k]
            t0 = time.time()
            t = r.run(f"train {exp} fold {k} ({units} {'epochs' if fam == 'det_yolo' else 'iterations'})", "train",
                      [m.path, "--fold", str(k), *paths, f"exp={exp}", *m.overrides, *_fold_overrides(cfg, cost, units)],
                      TrainSummary, f"train_{exp}_fold{k}")
            if t.folds != [k]:
                from kaggle_kit.pipeline.results import StageError

                raise StageError(f"kk train {m.path}: trained folds {t.folds}, asked for [{k}]")
            done.append(FoldDone(exp, k, units, time.time() - t0))
            trained.append(k)
            again = plan_now(budget_s, costs, ctx.n_folds, fixed, t_start, done, dropped, floor)
            dropped = _note_drops(again, known, told, f"after {exp} fold {k}", done, ctx.n_folds)
            log.record(again, f"after {exp} fold {k}")
            log.eta(again)
        if not any(p.name == exp for p in plan_now(budget_s, costs, ctx.n_folds, fixed, t_start, done,
                                                   dropped, floor).members) or any(n == exp for n, _ in dropped):
            if exp not in told:
                print(f"[budget] member {exp} dropped: " + next((w for n, w in dropped if n == exp), "no time left"),
                      flush=True)
            continue
        r.run(f"predict {exp} oof+test", "predict", [m.path, "--split", "oof,test", *paths, f"exp={exp}", *m.overrides],
              PredictSummary, f"predict_{exp}")
        reused = [d.fold for d in done if d.member == exp and d.seconds == 0.0 and d.iters == 0]
        out.append(MemberResult(exp, fam, m.config, trained, sorted(reused)))
    save_result(ctx.work, "members", out)
    log.first, log.dropped, log.min_pixel = first, list(dropped), floor
    return out, log


def _group(stage: str, exps: list[str]) -> str:
    """The plan's line a stage's seconds belong to."""
    if stage.startswith("calibrate"):
        return "calibrate"
    if stage in ("generate", "prepare"):
        return "data"
    for e in exps:
        if stage.startswith((f"train {e} ", f"predict {e} ")):
            return e
    if stage.startswith(("tune", "ensemble oof")):
        return "tune"
    if stage.startswith("bundle"):
        return "bundle"
    if stage.startswith("notebook"):
        return "notebook"
    return "validate+score"


def plan_vs_actual(log: BudgetLog, stage_seconds: list, total_s: float) -> dict:
    """Plan (the first plan, made after calibration) against what each line took; ``scores`` (in-process) is
    the job's wall time no tool accounts for."""
    first = log.first
    exps = [m["exp"] for m in log.calibration]
    actual: dict[str, float] = {}
    for name, dt in stage_seconds:
        g = _group(name, exps)
        actual[g] = actual.get(g, 0.0) + float(dt)
    actual["scores"] = max(total_s - sum(actual.values()), 0.0)
    startup = {m["exp"]: m["startup_s"] for m in log.calibration}
    planned = dict(first.fixed)
    planned.pop("predict start-up", None)  # a member's own line holds its map-writing process, start-up included
    planned.update({m.name: m.total_s + startup.get(m.name, 0.0) for m in first.members})
    rows = []
    for g in ["data", "calibrate", *exps, *planned]:
        if any(r["stage"] == g for r in rows):
            continue
        if g in planned or g in actual:
            rows.append({"stage": g, "planned_s": round(planned[g], 1) if g in planned else None,
                         "actual_s": round(actual.get(g, 0.0), 1)})
    return {"budget_s": log.budget_s, "planned_total_s": round(first.total_s, 1), "actual_total_s": round(total_s, 1),
            "over_budget_pct": round(100 * (total_s / log.budget_s - 1), 2),
            "dropped": ([{"member": n, "why": w} for n, w in log.dropped] if log.dropped is not None
                        else log.plans[-1]["dropped"] if log.plans else []),
            "min_pixel_members": log.min_pixel, "replans": len(log.plans), "stages": rows,
            "plan_json": str(log.path)}
