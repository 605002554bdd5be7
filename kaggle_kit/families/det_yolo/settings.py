"""The detector's ``predict.*`` settings, read in one place (cheap to import: ``api.py`` and ``predict.py`` both
use it): the predictor's keyword arguments and the box post-processing numbers."""
from __future__ import annotations

__all__ = ["BOX_PARAMS", "PREDICT_ELSEWHERE", "box_params", "predictor_settings"]

BOX_PARAMS = ("conf", "smooth", "smooth_window", "margin", "fallback", "checkpoint")

#: the predict keys that are not predictor settings, and where they act
PREDICT_ELSEWHERE = {k: "box post-processing: box_params, recorded in boxes.json and the bundle's box_params"
                     for k in BOX_PARAMS if k != "checkpoint"}
PREDICT_ELSEWHERE["checkpoint"] = "the fold file predicted with (boxes.json params; the bundle ships it)"


def predictor_settings(cfg: dict) -> dict:
    """``make_predictor``'s keyword arguments from ``predict.*``, for ``predict()`` and the notebook alike."""
    return {"tta": "none", "batch_size": int(cfg["predict"]["batch_size"])}


def box_params(cfg: dict) -> dict:
    """The box post-processing numbers of ``predict.*`` (and the checkpoint choice): what ``predict_boxes``
    applies and records in ``boxes.json``, and what the bundle gives the notebook (``box_params``)."""
    return {k: cfg["predict"][k] for k in BOX_PARAMS}
