"""Training of the 2.5D segmentation family on one fold (or ``fold="all"``) with the shared engine."""
from __future__ import annotations

from pathlib import Path

from ...data.augment import build_augment
from ...data.cache import Cache
from ...data.dataset25d import SliceDataset25D, StackSpec, fold_case_days
from ...data.raw import CLASSES
from ...paths import work_dir as make_work_dir

__all__ = ["build_net", "dataset_kwargs", "make_datasets", "train", "exp_name", "FAMILY"]

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
    wp = m.get("weights_path") if load_weights else None
    if m.get("encoder_weights"):
        raise ValueError("encoder_weights must be null: nothing downloads; pass a local file as weights_path")
    if backend == "smp":
        from .model import build_seg_model

        return build_seg_model(arch=m["arch"], encoder_name=m["encoder_name"], in_channels=in_channels,
                               classes=m["classes"], encoder_weights=None, aux_head=m.get("aux_head", False),
                               weights_path=wp, **extra)
    if backend == "mmseg":
        from ..seg25d_mmseg.model import build_mmseg_upernet

        return build_mmseg_upernet(backbone=m["encoder_name"], in_channels=in_channels, classes=m["classes"],
                                   weights_path=wp, **extra)
    raise KeyError(f"unknown model backend {backend!r}; options: ['smp', 'mmseg']")


def dataset_kwargs(data_cfg: dict) -> dict:
    """SliceDataset25D keyword arguments from the ``data`` section (shared by train and predict)."""
    return dict(
        stack=StackSpec(k=data_cfg["k"], stride=data_cfg["stride"], mode=data_cfg["stack_mode"],
                        ends=data_cfg["ends"]),
        size=tuple(data_cfg["size"]), geometry_mode=data_cfg["geometry"], norm=data_cfg["norm"],
        crop=data_cfg["crop"],
    )


def load_boxes_for(cfg: dict, split: str):
    """Detector boxes table when ``data.crop == "boxes"`` (from the detector family's predictions)."""
    if cfg["data"]["crop"] != "boxes":
        return None
    from ..det_yolo.predict import load_boxes

    return load_boxes(cfg["pred_root"], cfg["data"]["boxes_exp"], split)


def make_datasets(cfg: dict, cache: Cache, fold):
    d = cfg["data"]
    kw = dataset_kwargs(d)
    if d["crop"] == "boxes":
        # Train on ground-truth-derived boxes with jitter; the detector's own boxes are used at predict time.
        from ..det_yolo.boxes import truth_boxes

        boxes = truth_boxes(cache, "train")
    else:
        boxes = None
    train_ds = SliceDataset25D(cache, fold_case_days(cache, fold, "train"), subset=d["subset_train"],
                               augment=build_augment(d["augment"], d["hflip"]), ambiguous_margin=d["ambiguous_margin"],
                               boxes=boxes, box_jitter=d["box_jitter"], **kw)
    val_cds = fold_case_days(cache, fold, "val")
    val_ds = SliceDataset25D(cache, val_cds, subset=d["subset_val"], boxes=boxes, **kw) if val_cds else None
    return train_ds, val_ds


def train(cfg: dict, fold, exp: str, resume: bool = False):
    """Train one fold; returns the work dir (with best.pth / last.pth inference checkpoints)."""
    from ...engine.metrics import SegValMetric
    from ...engine.runner import build_runner
    from ...losses import build_loss

    cache = Cache(cfg["cache"])
    train_ds, val_ds = make_datasets(cfg, cache, fold)
    if len(train_ds) == 0:
        raise ValueError(f"fold {fold}: no training slices (subset {cfg['data']['subset_train']!r})")
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
