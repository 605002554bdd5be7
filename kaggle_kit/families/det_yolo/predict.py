"""Prediction of the crop detector: one box per slice (with score) for every case-day of a split.

The network is rebuilt from the inference checkpoint's meta (``model_cfg``: the ultralytics model dict,
no YAML file needed) and its weights loaded from ``best.pth`` with ``torch.load(weights_only=True)``;
ultralytics' predictor is not used: slices go through the same 8-bit conversion as the training PNGs
(:func:`~.dataset.yolo_image`) and ultralytics' validation letterbox, and the highest-scoring candidate of
each slice is its detection (one region per slice, so no NMS is needed). Per case-day the detections are
smoothed along z, expanded by a margin and completed with a fallback box (:func:`~.boxes.finalise_boxes`).

Output: ``<pred_root>/<exp>/<split>/boxes.csv`` (case_day, z, slice, y0, y1, x0, x1, score, detected; raw
pixels, end-exclusive), written atomically, and ``boxes.json`` next to it (family, folds, parameters, data
fingerprint, and for ``oof`` the box recall of organ pixels). Splits: ``oof`` (each train case-day by the
fold model that did not see it) and ``test``.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from kaggle_kit.data.cache import Cache
from kaggle_kit.data.dataset25d import body_box, volume_scale
from kaggle_kit.engine.checkpoint import load_model
from kaggle_kit.utils import atomic_write_json, atomic_write_text, progress
from kaggle_kit.families.det_yolo.boxes import finalise_boxes
from kaggle_kit.families.det_yolo.settings import box_params, predictor_settings
from kaggle_kit.io.boxes import boxes_frame, boxes_path
from kaggle_kit.metric.boxes import box_recall
from kaggle_kit.families.det_yolo.dataset import letterbox, yolo_image
from kaggle_kit.env import setup_offline
from kaggle_kit.engine.predict import available_folds, fold_plan
from kaggle_kit.paths import inference_checkpoint

__all__ = ["DetPredictor", "build_detector", "case_day_boxes", "make_detector", "predict_boxes"]

def build_detector(model_cfg: dict, nc: int = 1):
    """ultralytics DetectionModel from its model dict (as stored in the checkpoint meta), random init."""
    setup_offline()
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(dict(model_cfg), ch=3, nc=nc, verbose=False)


class DetPredictor:
    """One loaded detector. ``raw(cache, split, case_day)`` -> (boxes float (D, 4) y0,y1,x0,x1 raw pixels,
    scores float (D,)): the best candidate of every slice, before smoothing/fallback."""

    def __init__(self, ckpt_path, device=None, batch_size: int = 32):
        import torch

        net, meta = load_model(ckpt_path, lambda m: build_detector(m["model_cfg"], nc=int(m["nc"])),
                               expect={"task": "det"})
        self.meta = meta
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net = net.to(self.device).float().eval()
        self.imgsz = int(meta["imgsz"])
        self.data = meta["data"]
        self.batch_size = batch_size

    def _forward(self, ims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (B, S, S, 3) letterboxed, PNG channel order -> best (cx, cy, w, h) (B, 4) and score (B,)."""
        import torch

        # ultralytics reverses OpenCV's BGR order before the network (Format: img[::-1]); do the same
        x = torch.from_numpy(np.ascontiguousarray(ims[..., ::-1].transpose(0, 3, 1, 2))).to(self.device)
        with torch.inference_mode():
            y = self.net(x.float() / 255.0)
            y = y[0] if isinstance(y, (tuple, list)) else y  # (B, 4 + nc, A): xywh in input pixels, class probs
            scores, _ = y[:, 4:].max(1)
            best = scores.argmax(1)
            b = torch.arange(len(y), device=y.device)
            xywh = y[b, :4, best]
            s = scores[b, best]
        return xywh.float().cpu().numpy(), s.float().cpu().numpy()

    def raw(self, cache: Cache, split: str, case_day: str) -> tuple[np.ndarray, np.ndarray]:
        img = cache.image(split, case_day)
        D = img.shape[0]
        scale = volume_scale(img)
        boxes = np.zeros((D, 4), np.float64)
        scores = np.zeros(D, np.float64)
        for b0 in range(0, D, self.batch_size):
            zs = list(range(b0, min(D, b0 + self.batch_size)))
            lb = [letterbox(yolo_image(img, z, scale, self.data["channels"], self.data["stride"]), self.imgsz) for z in zs]
            xywh, s = self._forward(np.stack([a for a, _ in lb]))
            ry, rx, top, left = lb[0][1]  # same for every slice of a case-day
            cx, cy, w, h = xywh.T
            boxes[zs] = np.stack([(cy - h / 2 - top) / ry, (cy + h / 2 - top) / ry,
                                  (cx - w / 2 - left) / rx, (cx + w / 2 - left) / rx], 1)
            scores[zs] = s
        return boxes, scores

    def __call__(self, cache: Cache, split: str, case_day: str, params: dict | None = None) -> pd.DataFrame:
        """Final boxes of one case-day (smoothed, margin, fallback; ``params`` default: the checkpoint's
        ``predict`` section): rows case_day, z, y0, y1, x0, x1, score, detected."""
        return case_day_boxes([self], cache, split, case_day, params or self.meta["predict"])


def case_day_boxes(predictors, cache: Cache, split: str, case_day: str, params: dict) -> pd.DataFrame:
    """Several detectors (e.g. fold models) on one case-day -> its final box rows (see ``DetPredictor``)."""
    raw, scores = _combine([m.raw(cache, split, case_day) for m in predictors])
    boxes, det = postprocess(raw, scores, cache.image(split, case_day), params)
    return boxes_frame(case_day, boxes, score=np.round(scores, 4), detected=det.astype(int))


def _combine(raws: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Several models' detections of one case-day: score-weighted mean box, mean score."""
    if len(raws) == 1:
        return raws[0]
    b = np.stack([r[0] for r in raws])  # (M, D, 4)
    s = np.stack([r[1] for r in raws])  # (M, D)
    w = s + 1e-6
    return (b * w[..., None]).sum(0) / w.sum(0)[:, None], s.mean(0)


def postprocess(raw_boxes, scores, img, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """Smoothing, margin and fallback (``predict`` section ``p``) for one case-day volume ``img``."""
    fb = body_box(img) if p["fallback"] == "body" else None
    return finalise_boxes(raw_boxes, scores, tuple(img.shape[1:]), conf=p["conf"], smooth=p["smooth"],
                          window=p["smooth_window"], margin=p["margin"], fallback_box=fb)


def make_detector(ckpt_path, tta: str = "none", batch_size: int = 32, device=None) -> DetPredictor:
    """The family's ``make_predictor`` (``predict_boxes`` builds its detectors with it too)."""
    if tta != "none":
        raise KeyError(f"unknown tta {tta!r} for the detector; options: ['none']")
    return DetPredictor(ckpt_path, device=device, batch_size=batch_size)


def predict_boxes(cfg: dict, exp: str, split: str, folds=None) -> dict:
    """Write ``boxes.csv`` + ``boxes.json`` for ``split`` ("oof" or "test"); returns a summary (with the box
    recall of organ pixels for "oof"). Existing rows of other case-days are kept (a per-fold run extends the
    table)."""

    cache = Cache(cfg["cache"])
    params, settings = box_params(cfg), predictor_settings(cfg)
    family = "det_yolo"
    folds = available_folds(cache) if folds is None else folds
    cache_split, plan = fold_plan(cache, split, folds)
    slices_of = {cd: g.sort_values("z")["slice"].to_numpy() for cd, g in cache.index(cache_split).groupby("case_day")}
    parts, done = [], []
    for fold_list, cds in plan:
        preds = [make_detector(inference_checkpoint(cfg["work_root"], family, exp, f, params["checkpoint"]),
                                **settings) for f in fold_list]
        for cd in progress(cds, desc=f"{exp} boxes {split} folds {fold_list}", unit="case-day"):
            rows = case_day_boxes(preds, cache, cache_split, cd, params)
            rows.insert(2, "slice", slices_of[cd])
            parts.append(rows)
            done.append(cd)
    table = pd.concat(parts, ignore_index=True)
    out = boxes_path(cfg["pred_root"], exp, split)
    man_path = out.with_name("boxes.json")
    fold_ints = [] if folds == "all" else [int(f) for f in folds]
    manifest = {"family": family, "exp": exp, "split": split, "kind": "boxes", "folds": fold_ints,
                "trained_on_all": folds == "all", "params": params, "predictor": settings, "data": cfg["data"],
                "data_fingerprint": cache.fingerprint()}
    if out.is_file() and man_path.is_file():
        old = json.loads(man_path.read_text())
        same = all(old.get(k) == manifest[k] for k in ("params", "predictor", "data", "data_fingerprint",
                                                        "trained_on_all"))
        if same:  # extend: keep the other case-days' rows
            prev = pd.read_csv(out)
            table = pd.concat([prev[~prev["case_day"].isin(done)], table], ignore_index=True)
            manifest["folds"] = sorted(set(old.get("folds", [])) | set(fold_ints))
    table = table.sort_values(["case_day", "z"], key=_natural).reset_index(drop=True)
    atomic_write_text(out, table.to_csv(index=False))
    summary = {"exp": exp, "split": split, "case_days": int(table["case_day"].nunique()), "folds": folds,
               "detected_share": float(table["detected"].mean()), "boxes": str(out)}
    if split == "oof":
        rec = box_recall(cache, table.set_index(["case_day", "z"]))
        manifest["box_recall"] = rec
        summary.update({"box_recall": rec["recall"], "box_area_fraction": rec["area_fraction"],
                        "box_area_fraction_organ_slices": rec["area_fraction_organ_slices"]})
        print(f"{exp} OOF box recall of organ pixels: {rec['recall']:.5f} ({rec['inside']}/{rec['organ_pixels']}), "
              f"mean box area {rec['area_fraction']:.3f} of the image, detected on "
              f"{summary['detected_share']:.3f} of slices, {rec['case_days']} case-days")
    atomic_write_json(man_path, manifest)
    return summary


def _natural(col: pd.Series) -> pd.Series:
    """Sort key: case-days by (case, day) numbers, other columns as is."""
    if col.name != "case_day":
        return col
    return col.map(lambda s: tuple(int(t) for t in s.replace("case", "").split("_day")))
