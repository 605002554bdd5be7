"""The main job's work folder: its options, its folders, and the rule that a work folder belongs to one data set.

Work-folder rule: the data a work folder's models are trained on (the synthetic parameters, or the data
root's resolved path) is recorded in WORK/data_source.json; a run on other data refuses to reuse it (pass
another ``--work``; the default folder is derived from the data, so ``make demo`` and ``make demo DATA=ROOT``
never share one). When the data under the same root changed since folds were trained (the cache's train
fingerprint), the run refuses to reuse those models. A fold counts as trained only when ``kk train`` wrote its
``done.json`` (all epochs ran), never because ``best.pth`` exists.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kaggle_kit.data.raw import check_data_root
from kaggle_kit.paths import fold_done_marker
from kaggle_kit.pipeline.presets import Preset, load_preset
from kaggle_kit.utils import UserError, atomic_write_json, short_hash

__all__ = ["RunOptions", "Context", "WorkFolderError", "data_identity", "default_work", "claim_work_folder",
           "describe", "check_models_match_data", "unfinished_folds", "setup"]


@dataclass
class RunOptions:
    """What ``kk run`` takes (its flags, one field each; these defaults are its defaults)."""
    work: str | None = None  # None: default_work()
    data_root: str | None = None  # None: synthetic data in WORK/data
    preset: str = "tiny"  # a name under configs/presets/ or a preset YAML's path
    n_folds: int | None = None  # None: the preset's
    train_cases: int = 10  # synthetic data only
    test_cases: int = 3
    size_scale: float = 0.5
    seed: int = 0
    bundle_wheels: bool = False
    families: list | None = None  # a subset of the preset's families
    metric: str | None = None  # None: mlebench on an MLE-bench folder, else default
    out: str | None = None  # also copy the submission here
    budget: str | None = None  # wall time of the whole job ("20m", "1.5h"): calibrate, plan, re-plan (pipeline.budget)
    min_pixel_members: int | None = None  # under a budget: pixel members the plan must keep (None: the preset's)


class WorkFolderError(UserError):
    """A work folder that belongs to other data (see the module docstring)."""


@dataclass
class Context:
    """What every stage needs: the options, the preset and the run's folders."""
    opts: RunOptions
    preset: Preset
    work: Path
    data: Path
    n_folds: int
    metric: str = "default"  # what the tuner optimises
    python: str = sys.executable
    times: list = field(default_factory=list)  # [(stage, seconds)], filled by stages.Runner

    @property
    def cache(self) -> Path:
        return self.work / "cache"

    @property
    def work_root(self) -> Path:
        return self.work / "work_dirs"

    @property
    def pred_root(self) -> Path:
        return self.work / "preds"

    preds = pred_root

    @property
    def tool_dir(self) -> Path:
        """Where the tools' ``--summary-json`` files go."""
        return self.work / "pipeline" / "tools"


def data_identity(o: RunOptions) -> dict:
    """What the work folder's models are trained on: the synthetic parameters or the data root's path."""
    if o.data_root is None:
        return {"source": "synthetic", "train_cases": o.train_cases, "test_cases": o.test_cases, "seed": o.seed,
                "size_scale": o.size_scale}
    return {"source": str(Path(o.data_root).resolve())}


def default_work(o: RunOptions) -> Path:
    """``demo_out`` for the default synthetic data, ``demo_out-synthetic-<hash of its parameters>`` for other
    synthetic parameters (``make demo SEED=1``); ``demo_out-<root name>-<hash of its resolved path>`` for a
    data root."""
    if o.data_root is None:
        ident = data_identity(o)
        if ident == data_identity(RunOptions()):
            return Path("demo_out")
        return Path(f"demo_out-synthetic-{short_hash(json.dumps(ident, sort_keys=True), n=6)}")
    root = Path(o.data_root).resolve()
    return Path(f"demo_out-{root.name or 'root'}-{short_hash(str(root), n=6)}")


def describe(ident) -> str:
    if not isinstance(ident, dict):
        return repr(ident)
    if ident.get("source") == "synthetic":
        return "synthetic data (" + ", ".join(f"{k}={v}" for k, v in ident.items() if k != "source") + ")"
    return f"the data root {ident.get('source')}"


def claim_work_folder(work: Path, ident: dict) -> None:
    """Record ``ident`` in WORK/data_source.json, or refuse a work folder recorded for other data."""
    src = work / "data_source.json"
    if src.is_file():
        old = json.loads(src.read_text()).get("identity")
        if old != ident:
            raise WorkFolderError(
                f"{work}: this work folder holds models of other data ({describe(old)}; recorded in {src}), this "
                f"run is on {describe(ident)}; pass another --work (or leave --work out: the default folder "
                f"is derived from the data), or delete {work} to start over")
        return
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(src, {"identity": ident})


def check_models_match_data(ctx: Context) -> None:
    """After prepare: refuse to reuse trained folds when the train data changed since they were trained."""
    src = ctx.work / "data_source.json"
    rec = json.loads(src.read_text())
    fps = json.loads((ctx.cache / "fingerprint.json").read_text())["case_days"]
    train_fp = short_hash(sorted((k, v) for k, v in fps.items() if k.startswith("train/")))
    trained = sorted(ctx.work_root.glob("*/*/fold*/done.json"))
    old = rec.get("train_fingerprint")
    if old is not None and old != train_fp and trained:
        raise WorkFolderError(
            f"{ctx.data}: the train data changed since the models in {ctx.work_root} were trained (cache "
            f"fingerprint {old} -> {train_fp}; {len(trained)} trained fold(s), e.g. {trained[0].parent}); delete "
            f"{ctx.work_root} to retrain on the new data, or pass another --work")
    rec["train_fingerprint"] = train_fp
    atomic_write_json(src, rec)


def unfinished_folds(work_root: Path, family: str, exp: str, n_folds: int) -> list[int]:
    """Folds without ``done.json`` (``kk train`` writes it when the fold's training returned); an interrupted
    fold has best.pth (written at its first validation) but no done.json: it is trained again."""
    return [k for k in range(n_folds) if not fold_done_marker(work_root, family, exp, k).is_file()]


def setup(o: RunOptions) -> Context:
    """The preset, the work folder (claimed for this data) and the environment of every stage."""
    preset = load_preset(o.preset)  # a bad preset fails before any folder is made
    if o.n_folds is not None and o.n_folds < 2:
        raise UserError(f"--n-folds {o.n_folds}: the tuner needs at least 2 folds")
    if o.budget is not None:
        from kaggle_kit.plan import parse_budget

        try:
            parse_budget(o.budget)
        except ValueError as e:
            raise UserError(f"--budget: {e}") from None
    if o.min_pixel_members is not None:
        n_pixel = len(preset.pixel_members)
        if o.budget is None:
            raise UserError(f"--min-pixel-members {o.min_pixel_members}: it is the floor of a --budget plan; give "
                            f"--budget too, e.g. --budget 20m")
        if not 0 <= o.min_pixel_members <= n_pixel:
            raise UserError(f"--min-pixel-members {o.min_pixel_members}: expected 0 to {n_pixel} (preset "
                            f"{preset.name} has {n_pixel} pixel member{'s' * (n_pixel != 1)}; 0: no floor)")
    if o.data_root is not None:
        check_data_root(o.data_root)  # a typo is an error, not an empty test set
    work = Path(o.work or default_work(o)).resolve()
    claim_work_folder(work, data_identity(o))
    print(f"[run_all] work folder: {work} ({describe(data_identity(o))}); preset {preset.name} ({preset.path})",
          flush=True)
    os.environ.update({"KAGGLE_KIT_HOME": str(work / "home"),
                       "KAGGLE_KIT_NO_PROGRESS": os.environ.get("KAGGLE_KIT_NO_PROGRESS", "1")})
    data = work / "data" if o.data_root is None else Path(o.data_root).resolve()
    return Context(opts=o, preset=preset, work=work, data=data, n_folds=o.n_folds or preset.n_folds)


