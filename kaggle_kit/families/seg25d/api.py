"""The 2.5D segmentation family as the tools see it (registered as ``seg25d``)."""
from __future__ import annotations

from kaggle_kit.families.base import Family
from kaggle_kit.engine.predict import predict_split
from kaggle_kit.io.boxes import load_boxes_for

# The family's own modules import torch (and its model libraries): they load inside the functions
# below, so the registry can list and describe families cheaply.

NAME = "seg25d"
KIND = "pixel"


def train(cfg: dict, fold, exp: str, resume: bool = False):
    from kaggle_kit.families.seg25d.train import train as _train

    return _train(cfg, fold, exp, resume=resume)


def predictor_settings(cfg: dict) -> dict:
    """:func:`make_predictor`'s keyword arguments from ``predict.*``, for ``predict()`` and the notebook alike."""
    p = cfg["predict"]
    return {"tta": p["tta"], "batch_size": int(p["batch_size"]),
            "strides": [int(v) for v in (p["strides"] or ())] or None}


#: the predict keys that are not predictor settings, and where they act
PREDICT_ELSEWHERE = {"checkpoint": "the fold file predicted with (manifest 'checkpoint'; the bundle ships it)"}


def predict(cfg: dict, exp: str, split: str, folds=None, aux: bool = True) -> dict:
    return predict_split(
        family=NAME, kind=KIND, exp=exp, split=split, cache_dir=cfg["cache"], work_root=cfg["work_root"],
        pred_root=cfg["pred_root"], folds=folds, which=cfg["predict"]["checkpoint"],
        make_predictor=make_predictor, settings=predictor_settings(cfg),
        aux_exp=f"{exp}_aux" if (aux and cfg["model"].get("aux_head")) else None,
        boxes_for=(lambda s: load_boxes_for(cfg, s)) if cfg["data"]["crop"] == "boxes" else None,
    )


def make_predictor(ckpt_path, tta: str = "none", batch_size: int = 32, device=None, strides=None):
    """A loaded model: ``pred(cache, split, case_day)`` -> float32 (D, C, H, W) in raw geometry
    (and ``pred.last_presence`` (D, C) from the aux head, if any). Loads with weights_only=True.
    ``strides``: the slice steps averaged (``predict.strides``; None: the checkpoint's ``data.stride``)."""
    from kaggle_kit.families.seg25d.predict import Predictor25D

    return Predictor25D(ckpt_path, device=device, batch_size=batch_size, tta=tta, strides=strides)


def runtime_deps(model_cfg) -> tuple[str, ...]:
    """smp + timm; the mmseg backend (``model.backend: mmseg``) needs mmsegmentation on mmcv-lite (with the
    pure-torch ``mmcv.ops`` stand-in shipped in kaggle_kit._compat) and mmengine, and mmseg's ftfy / regex."""
    if (model_cfg or {}).get("backend", "smp") == "mmseg":
        return ("timm", "mmsegmentation", "mmengine", "mmcv-lite", "ftfy", "regex")
    return ("segmentation-models-pytorch", "timm")


family = Family(name=NAME, kind=KIND, train=train, predict=predict, make_predictor=make_predictor,
                predictor_settings=predictor_settings, predict_elsewhere=PREDICT_ELSEWHERE, runtime_deps=runtime_deps,
                val_metric="competition score of the fold's validation slices on the canvas (val/score, val/dice, val/hausdorff)",
                loss_terms=("seg", "aux"), doc=__doc__)
