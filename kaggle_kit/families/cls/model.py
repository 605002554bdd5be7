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

from kaggle_kit.engine.weights import resolve_weights_path
from kaggle_kit.losses import build_loss

__all__ = ["HEADS", "MapHeadClassifier", "PresenceLoss", "build_cls_loss", "build_cls_model", "build_net"]

HEADS = ("pool", "map")


def _check_backbone(name: str) -> None:
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=5)
        raise KeyError(f"unknown timm backbone {name!r}; close timm names: {close} (all: timm.list_models())")


class MapHeadClassifier(nn.Module):
    """A timm backbone's last feature map -> a 1x1 conv per class -> a coarse logit map; presence = its max.

    The backbone is built with ``num_classes=0, global_pool=""``: its forward then returns the unpooled
    feature map, with whatever timm's head applies before the classifier (ConvNeXt's norm, MobileNetV3's conv
    head) and ``head_hidden_size`` channels.

    Presence of an organ in a slice is "some cell of the slice shows it" (multiple-instance pooling), so the
    map can also be supervised densely with the mask max-pooled to the map's size (``TaskModel`` does that
    with the cls task's ``aux_weight``): every slice then teaches where each organ is, not one bit per class.

    ``forward(x)`` returns presence logits (B, C) in eval mode and ``(logits, map_logits (B, C, h, w))`` in
    train mode; inference code never sees the map.
    """

    def __init__(self, backbone: nn.Module, classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.drop = nn.Dropout2d(drop_rate) if drop_rate > 0 else nn.Identity()
        width = getattr(backbone, "head_hidden_size", None) or backbone.num_features
        self.head = nn.Conv2d(width, classes, kernel_size=1)

    def forward(self, x: torch.Tensor):
        f = self.backbone(x)
        if f.dim() != 4:
            raise ValueError(f"head 'map' needs a CNN-like (B, F, h, w) feature map; got {tuple(f.shape)}")
        m = self.head(self.drop(f))
        logits = m.amax(dim=(2, 3))
        return (logits, m) if self.training else logits


def build_cls_model(backbone: str = "resnet18", in_chans: int = 3, classes: int = 3, pretrained: bool = False,
                    weights_path: str | Path | None = None, drop_rate: float = 0.0, head: str = "pool",
                    **kwargs) -> nn.Module:
    """Build a timm classifier with ``classes`` logits; random init unless ``weights_path`` names a local file.

    Args:
        backbone: timm model name (unknown -> KeyError with close names).
        in_chans: ``k``, slices per 2.5D stack.
        classes: outputs (3: large bowel, small bowel, stomach).
        pretrained: must stay False (nothing downloads); use ``weights_path``.
        weights_path: local ``.safetensors`` / ``.pth`` / ``.bin`` state dict of the same timm architecture
            (any class count, 3-channel stems are adapted).
        drop_rate: dropout before the classifier.
        head: ``pool`` (timm's own global pooling + linear classifier) or ``map`` (:class:`MapHeadClassifier`:
            a per-class logit map, max-pooled; trainable with dense mask supervision).
        **kwargs: other ``timm.create_model`` arguments (``drop_path_rate``, ``img_size``...).

    Returns:
        nn.Module; ``forward(x: float (B, in_chans, H, W)) -> logits float (B, classes)``.
    """
    import timm

    if pretrained:
        raise ValueError("pretrained=True would download weights: keep it False and pass a local file as weights_path")
    if head not in HEADS:
        raise KeyError(f"unknown head {head!r}; options: {list(HEADS)}")
    _check_backbone(backbone)
    if head == "map":  # the backbone without classifier and pooling; dropout lives in the map head
        kwargs = dict(kwargs, num_classes=0, global_pool="")
        kwargs.pop("drop_rate", None)
    else:
        kwargs = dict(kwargs, num_classes=classes, drop_rate=drop_rate)
    if weights_path is None:
        net = timm.create_model(backbone, pretrained=False, in_chans=in_chans, **kwargs)
    else:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        # timm resolves a pretrained_cfg with a 'file' entry to that local file only (no hub, no URL).
        net = timm.create_model(backbone, pretrained=True, pretrained_cfg_overlay={"file": str(path)},
                                in_chans=in_chans, **kwargs)
    return MapHeadClassifier(net, classes, drop_rate) if head == "map" else net


class PresenceLoss:
    """Presence loss on (B, C) logits through :func:`kaggle_kit.losses.build_loss` (bce, focal, ...).

    The shared losses take (B, C, *spatial); presence is a 1x1 "image" per class. ``pos_weight`` of ``bce``
    is a scalar (applies to every class).
    """

    def __init__(self, spec):
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


def build_net(model_cfg: dict, in_channels: int):
    """nn.Module from the ``model`` section (also what an inference checkpoint's meta holds)."""
    m = model_cfg
    return build_cls_model(backbone=m["backbone"], in_chans=in_channels, classes=m["classes"],
                           weights_path=resolve_weights_path(m.get("weights_path")),  # ${KAGGLE_KIT_WEIGHTS:-weights}
                           drop_rate=m.get("drop_rate", 0.0),
                           head=m.get("head", "pool"), **(m.get("kwargs") or {}))
