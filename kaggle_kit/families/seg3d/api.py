"""The 3D segmentation family as the tools see it (registered as ``seg3d``)."""
from __future__ import annotations

from kaggle_kit.families.base import Family
from kaggle_kit.engine.predict import predict_split

# The family's own modules import torch (and its model libraries): they load inside the functions
# below, so the registry can list and describe families cheaply.

NAME = "seg3d"
KIND = "pixel"


def train(cfg: dict, fold, exp: str, resume: bool = False):
    from kaggle_kit.families.seg3d.train import train as _train

    return _train(cfg, fold, exp, resume=resume)


def predictor_settings(cfg: dict) -> dict:
    """:func:`make_predictor`'s keyword arguments from ``predict.*``, for ``predict()`` and the notebook alike
    (``batch_size`` is ``predict.sw_batch_size``: windows per forward)."""
    p = cfg["predict"]
    return {"tta": p["tta"], "batch_size": int(p["sw_batch_size"]), "overlap": float(p["overlap"]),
            "window": None if p["window"] is None else [int(v) for v in p["window"]]}


#: the predict keys that are not predictor settings, and where they act
PREDICT_ELSEWHERE = {"checkpoint": "the fold file predicted with (manifest 'checkpoint'; the bundle ships it)"}


def predict(cfg: dict, exp: str, split: str, folds=None) -> dict:
    return predict_split(
        family=NAME, kind=KIND, exp=exp, split=split, cache_dir=cfg["cache"], work_root=cfg["work_root"],
        pred_root=cfg["pred_root"], folds=folds, which=cfg["predict"]["checkpoint"],
        make_predictor=make_predictor, settings=predictor_settings(cfg),
    )


def make_predictor(ckpt_path, tta: str = "none", batch_size: int = 1, device=None, overlap: float = 0.5,
                   window=None):
    """A loaded 3D model for the notebook: ``pred(cache, split, case_day)`` -> float32 (D, C, H, W)."""
    from kaggle_kit.families.seg3d.predict import Predictor3D

    return Predictor3D(ckpt_path, device=device, tta=tta, overlap=overlap, sw_batch_size=batch_size, window=window)


def runtime_deps(model_cfg) -> tuple[str, ...]:
    return ("monai",)


family = Family(name=NAME, kind=KIND, train=train, predict=predict, make_predictor=make_predictor,
                predictor_settings=predictor_settings, predict_elsewhere=PREDICT_ELSEWHERE, runtime_deps=runtime_deps,
                val_metric="competition score of the fold's validation case-days, sliding window (val/score)",
                loss_terms=("seg",), doc=__doc__)

