"""Training of the 3D family on one fold (or ``fold="all"``) with the shared mmengine engine.

Train: random patches of the resampled case-days (foreground-biased, augmented). Validation: whole
resampled case-days through the net's sliding window (eval mode), thresholded at 0.5 and scored with the
competition metric in training geometry (:class:`~kaggle_kit.engine.metrics.SegValMetric` on volumes; close to, not equal to, the raw-geometry
OOF score of tools/predict.py). Loss: ``kaggle_kit.losses.build_loss`` (any spatial rank: 5D here).
"""
from __future__ import annotations


from kaggle_kit.data.cache import Cache
from kaggle_kit.engine.checkpoint import load_model
from kaggle_kit.data.dataset25d import fold_case_days
from kaggle_kit.data.folds import FAULTY
from kaggle_kit.data.raw import CLASSES
from kaggle_kit.paths import work_dir as make_work_dir
from kaggle_kit.families.seg3d.data import Geometry3D, VolumeDataset3D
from kaggle_kit.families.seg3d.model import build_net
from kaggle_kit.engine.metrics import SegValMetric
from kaggle_kit.engine.runner import build_runner, seed_init
from kaggle_kit.losses import build_loss

__all__ = ["FAMILY", "make_datasets", "train"]

FAMILY = "seg3d"


def make_datasets(cfg: dict, cache: Cache, fold, seed: int = 0):
    d = cfg["data"]
    geom = Geometry3D.from_cfg(d)
    train_cds = fold_case_days(cache, fold, "train")
    if d["exclude_faulty"]:
        train_cds = [cd for cd in train_cds if cd not in FAULTY]
    common = {"geometry": geom, "norm": d["norm"], "preload": d["preload"]}
    train_ds = VolumeDataset3D(cache, train_cds, patch=tuple(d["patch"]), samples_per_volume=d["samples_per_volume"],
                               fg_prob=d["fg_prob"], augment=d["augment"], seed=seed, **common)
    val_cds = fold_case_days(cache, fold, "val")
    val_ds = VolumeDataset3D(cache, val_cds, patch=None, **common) if val_cds else None
    return train_ds, val_ds


def _init_weights(net, path) -> None:
    """Start from an exported inference checkpoint (e.g. the 160 x 160 stage before the 224 x 224 one)."""
    load_model(path, lambda meta: net, expect={"family": FAMILY})


def train(cfg: dict, fold, exp: str, resume: bool = False):
    """Train one fold; returns the work dir (with best.pth / last.pth inference checkpoints)."""
    cache = Cache(cfg["cache"])
    train_ds, val_ds = make_datasets(cfg, cache, fold, seed=int(cfg["train"].get("seed") or 0))
    if len(train_ds) == 0:
        raise ValueError(f"fold {fold}: no training case-days")
    seed_init(cfg["train"])  # the net's random init follows train.seed
    net = build_net(cfg["model"], cfg["data"], cfg["predict"])
    if cfg["init_from"] and not resume:
        _init_weights(net, cfg["init_from"])
    wd = make_work_dir(cfg["work_root"], FAMILY, exp, fold)
    meta = {"family": FAMILY, "exp": exp, "fold": fold, "task": "seg", "classes": list(CLASSES),
            "model": cfg["model"], "data": cfg["data"], "fingerprint": cache.fingerprint()}
    # whole validation volumes differ in shape unless the geometry is one fixed size
    train_cfg = dict(cfg["train"])  # channels_last: NDHWC for the 3D net (engine.model.to_channels_last)
    if not Geometry3D.from_cfg(cfg["data"]).fixed:
        train_cfg["val_batch_size"] = 1
    runner = build_runner(net=net, loss_fn=build_loss(cfg["loss"]), task="seg", train_ds=train_ds, val_ds=val_ds,
                          val_metric=SegValMetric(volumes=True), train_cfg=train_cfg, work_dir=wd, meta=meta, resume=resume)
    runner.train()
    return wd

