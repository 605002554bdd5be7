"""The 2.5D input pipeline shared by every family that reads slice stacks (2.5D segmenters, the classifier):
the ``data`` section of a family config -> :class:`~kaggle_kit.data.dataset25d.SliceDataset25D` arguments
and the (train, val) datasets of a fold."""
from __future__ import annotations

from kaggle_kit.data.augment import build_augment
from kaggle_kit.data.cache import Cache
from kaggle_kit.data.dataset25d import SliceDataset25D, StackSpec, fold_case_days

__all__ = ["dataset_kwargs", "make_datasets"]


def dataset_kwargs(data_cfg: dict) -> dict:
    """SliceDataset25D keyword arguments from the ``data`` section (shared by train and predict): a resolved
    family config's, or a checkpoint meta's as :func:`kaggle_kit.engine.checkpoint.read_meta` gives it (keys
    older checkpoints lack are filled there, by format, so every key is read here as is)."""
    return dict(
        stack=StackSpec(k=data_cfg["k"], stride=data_cfg["stride"], mode=data_cfg["stack_mode"],
                        ends=data_cfg["ends"]),
        size=tuple(data_cfg["size"]), geometry_mode=data_cfg["geometry"], norm=data_cfg["norm"],
        crop=data_cfg["crop"], box_scope=data_cfg["box_scope"], box_pad=_box_pad(data_cfg["box_pad"]),
    )


def _box_pad(v) -> float:
    if isinstance(v, str):
        raise ValueError(f"data.box_pad is {v!r} (null, a number or 'auto'): 'auto' is resolved from the detector's "
                         f"OOF boxes at train time (kaggle_kit.engine.box_pad.resolve_box_pad); datasets need a number")
    return float(v or 0.0)


def make_datasets(cfg: dict, cache: Cache, fold, boxes=None, val_boxes=None):
    """(train, val) SliceDataset25D of one fold from a family config's ``data`` section (val None for
    ``fold="all"``). ``boxes``: the crop table when ``data.crop == "boxes"`` (at train time the ground-truth
    boxes, :func:`kaggle_kit.io.boxes.train_boxes_for`, jittered here; the detector's own at predict time);
    ``val_boxes``: the validation set's table (default ``boxes``; the detector's OOF boxes in training).
    ``cfg`` is a resolved family config (every ``data`` key declared in its default.yaml): keys are read as
    they are, so a renamed one is a KeyError, not a silent default."""
    d = cfg["data"]
    kw = dataset_kwargs(d)
    seed = int(cfg["train"]["seed"])  # the data's random streams follow train.seed too
    if d["crop"] == "boxes" and boxes is None:
        raise ValueError("data.crop is 'boxes': pass the box table (kaggle_kit.io.boxes.train_boxes_for)")
    train_ds = SliceDataset25D(cache, fold_case_days(cache, fold, "train"), subset=d["subset_train"],
                               augment=build_augment(d["augment"], d["hflip"], seed), ambiguous_margin=d["ambiguous_margin"],
                               boxes=boxes, box_jitter=d["box_jitter"],
                               box_full_prob=float(d["box_full_prob"]), stride_train=tuple(d["stride_train"] or ()),
                               organ_shift=float(d["organ_shift"] or 0.0), seed=seed, **kw)
    val_cds = fold_case_days(cache, fold, "val")
    val_boxes = boxes if val_boxes is None else val_boxes
    val_ds = SliceDataset25D(cache, val_cds, subset=d["subset_val"], boxes=val_boxes, **kw) if val_cds else None
    return train_ds, val_ds
