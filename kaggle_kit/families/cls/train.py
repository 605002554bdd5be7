"""Training of the slice classifier on one fold (or ``fold="all"``) with the shared engine.

The datasets are the 2.5D family's (same ``data`` section, same SliceDataset25D, same crops), the target is
each item's ``presence`` (C,). Validation logs per-class ROC-AUC and precision/recall at the operating
threshold (``predict.threshold``) every epoch (metrics.csv, TensorBoard); the exported ``best.pth`` is the
epoch with the best mean AUC, ``last.pth`` the final weights. After training, the ``predict.checkpoint`` one
(default last: best is chosen on these very case-days) is run over the fold's held-out case-days (every
slice) and ``<work_dir>/report/{report.json, pr_curves.png}`` is written.
"""
from __future__ import annotations

import numpy as np

from kaggle_kit.data.cache import Cache
from kaggle_kit.families.cls.model import build_net
from kaggle_kit.data.pipeline25d import make_datasets
from kaggle_kit.engine.box_pad import resolve_box_pad
from kaggle_kit.io.boxes import train_boxes_for
from kaggle_kit.data.raw import CLASSES
from kaggle_kit.paths import work_dir as make_work_dir
from kaggle_kit.metric.presence import slice_presence
from kaggle_kit.engine.metrics import ClsValMetric
from kaggle_kit.engine.runner import build_runner, seed_init
from kaggle_kit.families.cls.model import build_cls_loss
from kaggle_kit.data.dataset25d import fold_case_days
from kaggle_kit.paths import inference_checkpoint
from kaggle_kit.io.boxes import load_boxes_for
from kaggle_kit.families.cls.predict import ClsPredictor
from kaggle_kit.metric.presence import format_report, write_report

__all__ = ["FAMILY", "MaskPresence", "build_net", "fold_report", "train"]

FAMILY = "cls"


class MaskPresence:
    """A SliceDataset25D whose items' ``presence`` (C,) is computed from the raw mask slice (bitwise OR of the
    flags, :func:`.report.slice_presence`) rather than read from the cache index's ``has_*`` columns, which
    are wrong when two organs share a slice (index built with a max over flags; reported to the lead)."""

    def __init__(self, ds):
        self.ds = ds
        self._pres: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.ds)

    def presence(self, cd: str) -> np.ndarray:
        if cd not in self._pres:
            self._pres[cd] = slice_presence(self.ds.volumes(cd)[1]).astype(np.float32)
        return self._pres[cd]

    def __getitem__(self, i: int) -> dict:
        item = self.ds[i]
        item["presence"] = self.presence(item["case_day"])[item["z"]].copy()
        return item


def train(cfg: dict, fold, exp: str, resume: bool = False):
    """Train one fold; returns the work dir (best.pth / last.pth inference checkpoints, report/)."""
    cache = Cache(cfg["cache"])
    # crops: ground-truth boxes made like the detector's (jittered) to train, its OOF boxes to validate and predict
    cfg = resolve_box_pad(cfg, cache, fold)  # data.box_pad auto -> a number (kept in the meta)
    train_boxes, val_boxes = train_boxes_for(cfg, cache)  # (None, None) unless data.crop == "boxes"
    train_ds, val_ds = make_datasets(cfg, cache, fold, boxes=train_boxes, val_boxes=val_boxes)
    train_ds, val_ds = MaskPresence(train_ds), (MaskPresence(val_ds) if val_ds is not None else None)
    if len(train_ds) == 0:
        raise ValueError(f"fold {fold}: no training slices (subset {cfg['data']['subset_train']!r})")
    seed_init(cfg["train"])  # the net's random init follows train.seed
    net = build_net(cfg["model"], cfg["data"]["k"])
    wd = make_work_dir(cfg["work_root"], FAMILY, exp, fold)
    meta = {"family": FAMILY, "exp": exp, "fold": fold, "task": "cls", "classes": list(CLASSES),
            "model": cfg["model"], "in_channels": cfg["data"]["k"], "data": cfg["data"],
            "threshold": cfg["predict"]["threshold"], "fingerprint": cache.fingerprint()}
    runner = build_runner(net=net, loss_fn=build_cls_loss(cfg["loss"]), task="cls", train_ds=train_ds,
                          val_ds=val_ds, val_metric=ClsValMetric(threshold=cfg["predict"]["threshold"]),
                          train_cfg=cfg["train"], work_dir=wd, meta=meta, resume=resume,
                          aux_weight=cfg["map_weight"] if cfg["model"].get("head") == "map" else 0.0)
    runner.train()
    if fold != "all":
        fold_report(cfg, exp, fold, cache)
    return wd


def fold_report(cfg: dict, exp: str, fold, cache: Cache | None = None, which: str | None = None) -> dict:
    """Run a fold's checkpoint (``which``, default ``predict.checkpoint``) over its held-out case-days and write
    ``<work_dir>/report/``; returns it."""

    cache = cache or Cache(cfg["cache"])
    p = cfg["predict"]
    which = which or p["checkpoint"]
    pred = ClsPredictor(inference_checkpoint(cfg["work_root"], FAMILY, exp, fold, which),
                        batch_size=p["batch_size"], tta=p["tta"])
    boxes = load_boxes_for(cfg, "train") if cfg["data"]["crop"] == "boxes" else None
    ts, ps = [], []
    for cd in fold_case_days(cache, fold, "val"):
        ts.append(slice_presence(cache.mask("train", cd)))
        ps.append(pred(cache, "train", cd, boxes=boxes))
    wd = make_work_dir(cfg["work_root"], FAMILY, exp, fold)
    rep = write_report(np.concatenate(ts), np.concatenate(ps), wd / "report", p["threshold"],
                       name=f"{exp} fold {fold} ({which}.pth, held-out slices)",
                       extra={"exp": exp, "fold": fold, "checkpoint": which})
    print(format_report(rep, f"{exp} fold {fold} held-out"))
    return rep
