"""The slice classifier family as the tools see it (registered as ``cls``)."""
from __future__ import annotations

from kaggle_kit.families.base import Family
from kaggle_kit.engine.predict import predict_split
from kaggle_kit.io.boxes import load_boxes_for
from kaggle_kit.metric.presence import report_exp

# The family's own modules import torch (and its model libraries): they load inside the functions
# below, so the registry can list and describe families cheaply.

NAME = "cls"
KIND = "classifier"


def train(cfg: dict, fold, exp: str, resume: bool = False):
    from kaggle_kit.families.cls.train import train as _train

    return _train(cfg, fold, exp, resume=resume)


def predictor_settings(cfg: dict) -> dict:
    """:func:`make_predictor`'s keyword arguments from ``predict.*``, for ``predict()`` and the notebook alike."""
    p = cfg["predict"]
    return {"tta": p["tta"], "batch_size": int(p["batch_size"])}


#: the predict keys that are not predictor settings, and where they act
PREDICT_ELSEWHERE = {"checkpoint": "the fold file predicted with (manifest 'checkpoint'; the bundle ships it)",
                     "threshold": "the OOF report's precision / recall only (no map changes)"}


def predict(cfg: dict, exp: str, split: str, folds=None, report: bool = True) -> dict:
    """Write (D, C) maps for ``split``; for "oof" also the report (per-class AUC, P/R, PR curves)."""
    p = cfg["predict"]
    summary = predict_split(
        family=NAME, kind=KIND, exp=exp, split=split, cache_dir=cfg["cache"], work_root=cfg["work_root"],
        pred_root=cfg["pred_root"], folds=folds, which=p["checkpoint"],
        make_predictor=make_predictor, settings=predictor_settings(cfg),
        boxes_for=(lambda s: load_boxes_for(cfg, s)) if cfg["data"]["crop"] == "boxes" else None,
    )
    if split == "oof" and report:
        rep = report_exp(cfg["cache"], cfg["pred_root"], exp, threshold=p["threshold"])
        summary["macro_auc"] = rep["macro_auc"]
        summary.update({f"auc_{c}": v["auc"] for c, v in rep["classes"].items()})
    return summary


def make_predictor(ckpt_path, tta: str = "none", batch_size: int = 64, device=None):
    """A loaded classifier: ``pred(cache, split, case_day)`` -> float32 (D, C) presence probabilities.
    Loads with weights_only=True; ``cache`` may be any Cache look-alike (the notebook's PNG reader)."""
    from kaggle_kit.families.cls.predict import ClsPredictor

    return ClsPredictor(ckpt_path, device=device, batch_size=batch_size, tta=tta)


def runtime_deps(model_cfg) -> tuple[str, ...]:
    return ("timm",)


family = Family(name=NAME, kind=KIND, train=train, predict=predict, make_predictor=make_predictor,
                predictor_settings=predictor_settings, predict_elsewhere=PREDICT_ELSEWHERE, runtime_deps=runtime_deps,
                val_metric="per-class ROC-AUC and precision/recall at the threshold (val/auc_<class>, val/macro_auc)",
                loss_terms=("cls", "map"), doc=__doc__)
