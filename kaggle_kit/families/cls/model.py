"""Slice classifier: a timm backbone on a 2.5D stack predicting per-class presence (multi-label logits).

``x`` is float (B, k, H, W), normalised like the segmenters' inputs (the same SliceDataset25D); the model
returns raw logits (B, classes): sigmoid per class (organs co-occur), no activation inside. Any size works
for CNNs (global pooling); fixed-size transformers need ``img_size`` through ``kwargs``.

Building never downloads: the architecture is ``timm.create_model(name, pretrained=False, ...)``. A local
weights file (e.g. a timm ``model.safetensors`` the user downloaded) is loaded only when ``weights_path`` is
given, by timm's own loader (``pretrained_cfg_overlay=dict(file=...)``, ``torch.load(weights_only=True)`` or
safetensors): it adapts RGB stem weights to ``k`` input channels and drops the ImageNet classifier when the
class count differs. Checked on 64x64, k in (3, 5), forward + backward: ``resnet18``, ``efficientnet_b0``,
``convnext_atto``, ``mobilenetv3_small_050`` (tests/test_cls.py).
"""
from __future__ import annotations

import difflib
from pathlib import Path

import torch
from torch import nn

__all__ = ["PresenceLoss", "build_cls_loss", "build_cls_model"]


def _check_backbone(name: str) -> None:
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=5)
        raise KeyError(f"unknown timm backbone {name!r}; close timm names: {close} (all: timm.list_models())")


def build_cls_model(backbone: str = "resnet18", in_chans: int = 3, classes: int = 3, pretrained: bool = False,
                    weights_path: str | Path | None = None, drop_rate: float = 0.0, **kwargs) -> nn.Module:
    """Build a timm classifier with ``classes`` logits; random init unless ``weights_path`` names a local file.

    Args:
        backbone: timm model name (unknown -> KeyError with close names).
        in_chans: ``k``, slices per 2.5D stack.
        classes: outputs (3: large bowel, small bowel, stomach).
        pretrained: must stay False (nothing downloads); use ``weights_path``.
        weights_path: local ``.safetensors`` / ``.pth`` / ``.bin`` state dict of the same timm architecture
            (any class count, 3-channel stems are adapted).
        drop_rate: dropout before the classifier.
        **kwargs: other ``timm.create_model`` arguments (``drop_path_rate``, ``img_size``...).

    Returns:
        nn.Module; ``forward(x: float (B, in_chans, H, W)) -> logits float (B, classes)``.
    """
    import timm

    if pretrained:
        raise ValueError("pretrained=True would download weights: keep it False and pass a local file as weights_path")
    _check_backbone(backbone)
    if weights_path is None:
        return timm.create_model(backbone, pretrained=False, in_chans=in_chans, num_classes=classes,
                                 drop_rate=drop_rate, **kwargs)
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    # timm resolves a pretrained_cfg with a 'file' entry to that local file only (no hub, no URL).
    return timm.create_model(backbone, pretrained=True, pretrained_cfg_overlay={"file": str(path)},
                             in_chans=in_chans, num_classes=classes, drop_rate=drop_rate, **kwargs)


class PresenceLoss:
    """Presence loss on (B, C) logits through :func:`kaggle_kit.losses.build_loss` (bce, focal, ...).

    The shared losses take (B, C, *spatial); presence is a 1x1 "image" per class. ``pos_weight`` of ``bce``
    is a scalar (applies to every class).
    """

    def __init__(self, spec):
        from ...losses import build_loss

        self.loss = build_loss(spec)

    def __call__(self, logits: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2 or logits.shape != presence.shape:
            raise ValueError(f"logits and presence must both be (B, C); got {tuple(logits.shape)} and "
                             f"{tuple(presence.shape)}")
        return self.loss(logits[:, :, None, None], presence[:, :, None, None].float())

    def __repr__(self) -> str:
        return f"PresenceLoss({self.loss!r})"


def build_cls_loss(spec) -> PresenceLoss:
    """``spec``: the config's ``loss`` list, e.g. ``[{type: bce, weight: 1.0}]``."""
    return PresenceLoss(spec)
