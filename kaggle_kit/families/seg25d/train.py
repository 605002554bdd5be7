"""Training of the 2.5D segmentation family on one fold (or ``fold="all"``) with the shared engine."""
from __future__ import annotations

from pathlib import Path

from kaggle_kit.data.cache import Cache
from kaggle_kit.data.pipeline25d import make_datasets
from kaggle_kit.engine.weights import resolve_weights_path
from kaggle_kit.engine.box_pad import resolve_box_pad
from kaggle_kit.io.boxes import train_boxes_for
from kaggle_kit.data.raw import CLASSES
from kaggle_kit.paths import work_dir as make_work_dir
from kaggle_kit.families.seg25d.model import build_seg_model
from kaggle_kit.engine.metrics import SegValMetric
from kaggle_kit.engine.runner import build_runner, seed_init
from kaggle_kit.losses import build_loss

__all__ = ["build_net", "train", "exp_name", "FAMILY"]

FAMILY = "seg25d"


def exp_name(cfg: dict, config_path=None) -> str:
    return cfg.get("exp") or (Path(config_path).stem if config_path else FAMILY)


def build_net(model_cfg: dict, in_channels: int, load_weights: bool = True):
    """nn.Module from the ``model`` section (also what an inference checkpoint's meta holds).

    ``load_weights=False`` ignores ``weights_path`` (inference: the checkpoint's state dict follows, and the
    local pretrained file of training time does not exist on Kaggle)."""
    m = dict(model_cfg)
    backend = m.pop("backend", "smp")
    extra = dict(m.get("extra") or {})
    # ${KAGGLE_KIT_WEIGHTS:-weights}/... expanded; a missing pretrained file warns loudly (random init)
    wp = resolve_weights_path(m.get("weights_path")) if load_weights else None
    if m.get("encoder_weights"):
        raise ValueError("encoder_weights must be null: nothing downloads; pass a local file as weights_path")
    if backend == "smp":
        return build_seg_model(arch=m["arch"], encoder_name=m["encoder_name"], in_channels=in_channels,
                               classes=m["classes"], encoder_weights=None, aux_head=m.get("aux_head", False),
                               weights_path=wp, **extra)
    if backend == "mmseg":
        # heavy and optional: mmseg (and the mmcv ops stand-in) load only for this backend
        from kaggle_kit.families.seg25d.mmseg_upernet import build_mmseg_upernet

        return build_mmseg_upernet(backbone=m["encoder_name"], in_channels=in_channels, classes=m["classes"],
                                   weights_path=wp, **extra)
    raise KeyError(f"unknown model backend {backend!r}; options: ['smp', 'mmseg']")


def train(cfg: dict, fold, exp: str, resume: bool = False):
    """Train one fold; returns the work dir (with best.pth / last.pth inference checkpoints)."""
    cache = Cache(cfg["cache"])
    # crops: ground-truth boxes made like the detector's (jittered) to train, its OOF boxes to validate and predict
    cfg = resolve_box_pad(cfg, cache, fold)  # data.box_pad auto -> a number (kept in the meta)
    train_boxes, val_boxes = train_boxes_for(cfg, cache)  # (None, None) unless data.crop == "boxes"
    train_ds, val_ds = make_datasets(cfg, cache, fold, boxes=train_boxes, val_boxes=val_boxes)
    if len(train_ds) == 0:
        raise ValueError(f"fold {fold}: no training slices (subset {cfg['data']['subset_train']!r})")
    seed_init(cfg["train"])  # the net's random init follows train.seed
    net = build_net(cfg["model"], cfg["data"]["k"])
    wd = make_work_dir(cfg["work_root"], FAMILY, exp, fold)
    meta = {"family": FAMILY, "exp": exp, "fold": fold, "task": "seg", "classes": list(CLASSES),
            "model": cfg["model"], "in_channels": cfg["data"]["k"], "data": cfg["data"],
            "fingerprint": cache.fingerprint()}
    runner = build_runner(net=net, loss_fn=build_loss(cfg["loss"]), task="seg", train_ds=train_ds, val_ds=val_ds,
                          val_metric=SegValMetric(), train_cfg=cfg["train"], work_dir=wd, meta=meta,
                          resume=resume, aux_weight=cfg["aux_weight"] if cfg["model"].get("aux_head") else 0.0)
    runner.train()
    return wd
