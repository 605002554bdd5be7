"""The crop-detector family as the tools see it (registered as ``det_yolo``)."""
from __future__ import annotations

from kaggle_kit.families.base import Family
from kaggle_kit.families.det_yolo.settings import PREDICT_ELSEWHERE, predictor_settings

# The family's own modules import torch (and its model libraries): they load inside the functions
# below, so the registry can list and describe families cheaply.

NAME = "det_yolo"
KIND = "boxes"


def train(cfg: dict, fold, exp: str, resume: bool = False):
    from kaggle_kit.families.det_yolo.train import train as _train

    return _train(cfg, fold, exp, resume=resume)


def predict(cfg: dict, exp: str, split: str, folds=None) -> dict:
    """Write ``<pred_root>/<exp>/<split>/boxes.csv`` (+ ``boxes.json``); "oof" prints the box recall."""
    from kaggle_kit.families.det_yolo.predict import predict_boxes

    return predict_boxes(cfg, exp, split, folds=folds)


def make_predictor(ckpt_path, tta: str = "none", batch_size: int = 32, device=None):
    """A loaded detector: ``pred(cache, split, case_day)`` -> DataFrame of the case-day's final boxes (z, y0, y1,
    x0, x1, score, detected), post-processed with the checkpoint's own ``predict`` settings. Loads with
    weights_only=True. ``tta`` is accepted for a uniform signature and must be "none"."""
    from kaggle_kit.families.det_yolo.predict import make_detector

    return make_detector(ckpt_path, tta=tta, batch_size=batch_size, device=device)


def runtime_deps(model_cfg) -> tuple[str, ...]:
    return ("ultralytics",)


family = Family(name=NAME, kind=KIND, train=train, predict=predict, make_predictor=make_predictor,
                predictor_settings=predictor_settings, predict_elsewhere=PREDICT_ELSEWHERE, runtime_deps=runtime_deps,
                val_metric="ultralytics box mAP on the fold's validation slices; OOF box recall of organ pixels",
                loss_terms=("box", "cls", "dfl"), doc=__doc__)
