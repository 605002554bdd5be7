"""Typed results: what each stage of the main job returns, and the tool summaries it reads them from.

Every tool a stage runs writes its summary with ``--summary-json PATH`` (``WORK/pipeline/tools/<stage>.json``;
the notebook its ``<submission stem>_report.json``). A stage reads that file into one of the ``*Summary``
dataclasses below: a key the dataclass names and the file lacks (a tool renamed or dropped it) is a
:class:`StageError` naming the file and the key, never a silent ``n/a``. Each stage's own result is written as
``WORK/pipeline/<stage>.json`` (``dataclasses.asdict``), so a finished run can be read without its log.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from kaggle_kit.utils import UserError, atomic_write_json

__all__ = ["StageError", "ToolFailed", "read_summary", "save_result", "TrainSummary", "PredictSummary", "TuneSummary",
           "ScoreSummary", "EnsembleSummary", "ValidateSummary", "BundleSummary", "NotebookReport", "DataResult",
           "MemberResult", "ScoresResult", "TuneResult", "SubmissionResult", "PipelineResult"]

T = TypeVar("T")


class StageError(UserError):
    """A stage failed, or a tool's summary does not have what the stage reads from it."""


class ToolFailed(StageError):
    """A tool a stage ran exited non-zero."""


def read_summary(path: Path, cls: type[T], what: str) -> T:
    """``cls`` built from the JSON object in ``path`` (every field of ``cls`` must be a key; other keys are
    ignored). ``what``: the tool, for the message."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{what} exited 0 but wrote no summary at {path}")
    obj = json.loads(path.read_text())
    return from_mapping(obj, cls, f"{path} ({what})")


def from_mapping(obj, cls: type[T], where: str) -> T:
    if not isinstance(obj, dict):
        raise StageError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    names = [f.name for f in fields(cls)]
    missing = [n for n in names if n not in obj]
    if missing:
        raise StageError(f"{where}: no key {missing[0]!r} in the tool's summary (it has {sorted(obj)}); the tool and "
                         f"kaggle_kit.pipeline disagree on its keys")
    return cls(**{n: obj[n] for n in names})


def save_result(work: Path, stage: str, result) -> Path:
    """``WORK/pipeline/<stage>.json``: the stage's result (a dataclass, or a list of them)."""
    obj = [asdict(r) for r in result] if isinstance(result, list) else asdict(result)
    path = Path(work) / "pipeline" / f"{stage}.json"
    atomic_write_json(path, obj)
    return path


# ------------------------------------------------------------------------- what the tools write
@dataclass(frozen=True)
class TrainSummary:  # kk train --summary-json
    family: str
    exp: str
    folds: list


@dataclass(frozen=True)
class PredictSummary:  # kk predict --split oof,test --summary-json: {split: the family's predict summary}
    oof: dict
    test: dict


@dataclass(frozen=True)
class TuneSummary:  # kk tune --summary-json (kaggle_kit.commands.tune_oof.SUMMARY_KEYS + these)
    in_sample: float
    held_out_mean: float | None  # mean over held-out folds, each scored by the setting tuned without it
    plain_average_05: float
    plain_average_05_folds_mean: float | None
    single_members: dict  # {exp: score} each pixel member alone at 0.5, every step off, all OOF case-days
    single_members_folds_mean: dict | None
    held_out_by_metric: dict | None
    metric: str  # the search's metric (for mlebench its surrogate)
    target_metric: str | None  # mlebench: the metric the final choice is made by; else None
    capped_outputs: list
    tuned_yaml: str


@dataclass(frozen=True)
class ScoreSummary:  # kk score --summary-json; the metric part of kk ensemble --split oof's
    score: float


@dataclass(frozen=True)
class EnsembleSummary:  # kk ensemble --summary-json
    out: str
    metric: dict | None  # a ScoreSummary for --split oof, None for test


@dataclass(frozen=True)
class ValidateSummary:  # kk validate --summary-json
    valid: bool


@dataclass(frozen=True)
class BundleSummary:  # kk bundle --summary-json
    out: str
    members: list


@dataclass(frozen=True)
class NotebookReport:  # <submission stem>_report.json, written by kaggle_kit.deploy.infer.run_inference
    mode: str
    case_days: int
    dropped: list
    failures: list
    seconds_per_case_day: float
    member_seconds_per_case_day: dict


# ------------------------------------------------------------------------- what the stages return
@dataclass
class DataResult:
    data_root: str
    cache: str
    n_folds: int
    synthetic: bool
    mlebench_layout: dict | None  # kaggle_kit.data.mlebench_layout.detect_mlebench_layout, None: Kaggle layout
    tuning_metric: str


@dataclass
class MemberResult:
    exp: str
    family: str
    config: str
    trained_folds: list  # trained in this run
    reused_folds: list  # trained before (done.json), reused


@dataclass
class ScoresResult:
    pixel_members: list  # experiments with pixel OOF maps (the tuner's pixel members)
    baseline_empty: float
    baseline_intensity: float  # fold mean
    classifier_auc: dict = field(default_factory=dict)  # {exp: {class: OOF ROC-AUC}}
    classifier_auc_z5: dict = field(default_factory=dict)  # the same after a 5-slice z mean
    detector_box_recall: dict = field(default_factory=dict)  # {exp: OOF box recall of organ pixels}
    box_pad: dict = field(default_factory=dict)  # {exp: {fold: pad}} of crop members


@dataclass
class TuneResult:
    tuned_yaml: str
    search_yaml: str
    summary: TuneSummary
    tuned_oof: float  # the tuned YAML through kk ensemble --split oof (the ensemble's own code)
    oof_csv: str


@dataclass
class SubmissionResult:
    submission: str | None  # the notebook's submission.csv
    submission_from_maps: str | None  # kk ensemble on the stored test maps (train/serve skew check)
    test: float | None  # scores against DATA/test_truth.csv when it exists
    test_from_maps: float | None
    notebook: NotebookReport | None


@dataclass
class PipelineResult:
    data: DataResult
    members: list[MemberResult]
    scores: ScoresResult
    tune: TuneResult | None  # None: no pixel member
    submission: SubmissionResult
    tuned_oof_by_metric: dict  # {metric: score} of the tuned OOF CSV under default and mlebench
    seconds: float
    stage_seconds: list = field(default_factory=list)  # [(stage, seconds)]
    budget: dict | None = None  # under --budget: the first plan, its re-plans' count and plan vs actual per stage

    def summary(self) -> dict[str, Any]:
        """The main job's final JSON line (``kk run``'s last stdout line; its keys are fixed)."""
        ts, nb, sub, sc = (self.tune.summary if self.tune else None), self.submission.notebook, self.submission, \
            self.scores
        return {"oof": dict(ts.single_members) if ts else {}, "tuned_oof": self.tune.tuned_oof if self.tune else None,
                "test": sub.test, "test_from_maps": sub.test_from_maps, "submission": sub.submission,
                "baselines": {"empty": sc.baseline_empty, "intensity": sc.baseline_intensity},
                "classifier_auc": sc.classifier_auc, "classifier_auc_z5": sc.classifier_auc_z5,
                "detector_box_recall": sc.detector_box_recall, "box_pad": sc.box_pad,
                "held_out": ts.held_out_mean if ts else None,
                "held_out_plain_average_05": ts.plain_average_05_folds_mean if ts else None,
                "held_out_single_members": ts.single_members_folds_mean if ts else None,
                "capped_outputs": ts.capped_outputs if ts else None,
                "plain_average_05": ts.plain_average_05 if ts else None,
                "inference_seconds_per_case_day": nb.member_seconds_per_case_day if nb else None,
                "notebook_failures": len(nb.failures) if nb else 0,
                "seconds": round(self.seconds, 1), "tuned_oof_by_metric": self.tuned_oof_by_metric,
                "tuning_metric": self.data.tuning_metric,
                "held_out_by_metric": ts.held_out_by_metric if ts else None,
                "mlebench_layout": self.data.mlebench_layout is not None}
