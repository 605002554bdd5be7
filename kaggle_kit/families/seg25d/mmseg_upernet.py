"""2.5D UPerNet through mmsegmentation's registry: a backbone and mmseg's ``UPerHead``, multi-label logits.

Composition: a plain ``nn.Module`` holding ``backbone`` and ``decode_head`` (both built with
``mmseg.registry.MODELS``), not mmseg's ``EncoderDecoder``. We feed normalised tensors and compute our own
losses (:mod:`kaggle_kit.losses`) on the logits, so ``EncoderDecoder``'s data preprocessor, ``SegDataSample``
plumbing and ``loss_decode`` are not wanted. The child names match ``EncoderDecoder``'s, so a full mmseg
UPerNet checkpoint (``backbone.*``, ``decode_head.*``) loads with ``weights_path`` (its ``auxiliary_head.*``
keys are reported as unexpected, a different class count as shape-mismatched).

The head is multi-label: ``num_classes = out_channels = classes``, ``threshold=0.5`` and a sigmoid
``loss_decode`` (built by mmseg's head but unused here). ``forward`` upsamples the head's 1/4-resolution
logits bilinearly (``align_corners=False``) to the input size. H and W should be multiples of 32 (the 2.5D
dataset pads to that); BatchNorm in the pyramid pooling needs a batch of at least 2 in training.

Backbones (``backbone=``), checked here on 64x64 inputs, 3 and 5 channels, forward and backward:

- ``resnet18``/``resnet34``/``resnet50``/``resnet101``: mmseg's ``ResNetV1c`` (deep stem), as in mmseg's
  UPerNet configs, with plain BN (mmseg's configs use SyncBN, which needs a process group).
- ``swin_tiny``/``swin_small``/``swin_base``: mmseg's ``SwinTransformer`` (window 7, pads any size).
- ``convnext_atto`` ... ``convnext_base`` and any ``tu-<timm model>``: a timm ``features_only`` model through
  mmseg's ``TIMMBackbone``. mmseg 1.2.2 has no ConvNeXt of its own (its configs use mmpretrain's, not
  installed); the four outputs with strides 4, 8, 16, 32 are taken, channels-last outputs (timm Swin) are
  permuted. Timm models that need a fixed ``img_size`` take it through ``**backbone_kw``.

mmcv-lite lacks ``mmcv.ops``; :func:`kaggle_kit._compat.mmcv_ops.install` puts a pure-torch stand-in in
place before mmseg is imported (below).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kaggle_kit._compat import mmcv_ops

mmcv_ops.install()  # before any mmseg import: mmseg imports mmcv.ops at module level

import mmseg.models  # noqa: E402, F401  (registers backbones and heads; after mmcv_ops.install)
from mmengine.registry import DefaultScope  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402

from kaggle_kit.families.seg25d.model import LoadReport, load_into, read_state_dict, timm_to_features  # noqa: E402

__all__ = ["BACKBONES", "MMSegUPerNet", "build_mmseg_upernet", "load_mmseg_weights"]

_BN = {"type": "BN", "requires_grad": True}
_RESNET = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101}
_SWIN = {"swin_tiny": (96, (2, 2, 6, 2), (3, 6, 12, 24)), "swin_small": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
         "swin_base": (128, (2, 2, 18, 2), (4, 8, 16, 32))}
_CONVNEXT = ("convnext_atto", "convnext_femto", "convnext_pico", "convnext_nano", "convnext_tiny", "convnext_small",
             "convnext_base")
BACKBONES: tuple[str, ...] = (*_RESNET, *_SWIN, *_CONVNEXT)


class MMSegUPerNet(nn.Module):
    """``backbone`` (multi-scale features) -> mmseg ``UPerHead`` -> logits resized to the input.

    ``forward(x: float (B, in_channels, H, W)) -> logits float (B, classes, H, W)``.
    """

    def __init__(self, backbone: nn.Module, decode_head: nn.Module, channels_last: bool = False,
                 timm_name: str | None = None, in_channels: int = 3, timm_kwargs: dict | None = None):
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        self.channels_last = channels_last  # timm features in NHWC (e.g. timm Swin)
        self.timm_name, self.in_channels, self.timm_kwargs = timm_name, in_channels, dict(timm_kwargs or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = list(self.backbone(x))
        if self.channels_last:
            feats = [f.permute(0, 3, 1, 2).contiguous() for f in feats]
        logits = self.decode_head(feats)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _timm_backbone(name: str, in_channels: int, timm_kwargs: dict) -> tuple[dict, list[int], bool]:
    """mmseg TIMMBackbone config taking the last feature of each stride 4, 8, 16, 32."""
    import timm

    if not timm.is_model(name):
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        raise KeyError(f"unknown timm backbone {name!r}; close timm names: {close}")
    kw = {"pretrained": False, "features_only": True, "in_chans": in_channels, **timm_kwargs}
    try:
        with torch.device("meta"):  # shapes only: no memory, no init
            probe = timm.create_model(name, **kw)
    except Exception:  # noqa: BLE001 - a few models do not build on meta
        probe = timm.create_model(name, **kw)
    info = probe.feature_info
    reductions = info.reduction()
    idx = [max(i for i, r in enumerate(reductions) if r == s) if s in reductions else None for s in (4, 8, 16, 32)]
    if None in idx:
        raise ValueError(f"timm model {name!r} has feature strides {reductions}; UPerNet needs 4, 8, 16 and 32")
    channels = [info.channels()[i] for i in idx]
    nhwc = str(getattr(probe, "output_fmt", "NCHW")).endswith("NHWC")
    cfg = dict(type="TIMMBackbone", model_name=name, pretrained=False, in_channels=in_channels,
               out_indices=tuple(idx), **timm_kwargs)
    return cfg, channels, nhwc


def _init_weights(*modules: nn.Module) -> None:
    """Run mmengine's ``init_weights`` (which ``EncoderDecoder`` would call) without its per-parameter dump.

    Outside a Runner (no log file) mmengine prints one INFO line per parameter to stdout; keep those quiet.
    """
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        for m in modules:
            m.init_weights()
    finally:
        logger.setLevel(level)


def build_mmseg_upernet(backbone: str = "resnet50", in_channels: int = 3, classes: int = 3, channels: int = 512,
                        pool_scales: tuple[int, ...] = (1, 2, 3, 6), dropout: float = 0.1, drop_path_rate: float = 0.2,
                        weights_path: str | Path | None = None, weights_target: str = "auto",
                        **backbone_kw) -> MMSegUPerNet:
    """Build a randomly initialised mmseg UPerNet for multi-label 2.5D segmentation; never downloads.

    Args:
        backbone: one of :data:`BACKBONES` or ``"tu-<timm model>"`` (unknown -> KeyError listing options).
        in_channels: ``k``, the number of stacked slices.
        classes: output channels (3: large bowel, small bowel, stomach).
        channels: UPerHead width (mmseg's configs use 512).
        pool_scales: pyramid pooling scales of the head.
        dropout: dropout before the head's 1x1 classifier.
        drop_path_rate: stochastic depth of the Swin and ``convnext_*`` backbones (ResNet has none; for
            ``tu-`` backbones pass ``drop_path_rate`` in ``**backbone_kw`` if the timm model takes it).
        weights_path: a local state dict loaded with ``strict=False`` by :func:`load_mmseg_weights`.
        weights_target: ``"auto"``, ``"model"`` or ``"backbone"`` (alias ``"encoder"``, as in the smp family).
        **backbone_kw: extra backbone arguments (mmseg ``ResNetV1c``/``SwinTransformer`` kwargs, or
            ``timm.create_model`` kwargs for timm backbones, e.g. ``img_size``).

    Returns:
        :class:`MMSegUPerNet`; ``forward(x: float (B, in_channels, H, W))`` -> logits (B, classes, H, W).
    """
    timm_name, nhwc, timm_kw = None, False, {}
    if backbone in _RESNET:
        depth = _RESNET[backbone]
        cfg = dict(type="ResNetV1c", depth=depth, in_channels=in_channels, num_stages=4, out_indices=(0, 1, 2, 3),
                   dilations=(1, 1, 1, 1), strides=(1, 2, 2, 2), norm_cfg=_BN, norm_eval=False, style="pytorch",
                   contract_dilation=True, **backbone_kw)
        feat = [c * (4 if depth >= 50 else 1) for c in (64, 128, 256, 512)]
    elif backbone in _SWIN:
        dims, depths, heads = _SWIN[backbone]
        cfg = dict(type="SwinTransformer", in_channels=in_channels, embed_dims=dims, depths=depths, num_heads=heads,
                   window_size=7, drop_path_rate=drop_path_rate, out_indices=(0, 1, 2, 3), **backbone_kw)
        feat = [dims * 2 ** i for i in range(4)]
    elif backbone in _CONVNEXT or backbone.startswith("tu-"):
        timm_name = backbone.removeprefix("tu-")
        timm_kw = dict(backbone_kw)
        if backbone in _CONVNEXT:  # not every timm model takes drop_path_rate: tu- names get only backbone_kw
            timm_kw.setdefault("drop_path_rate", drop_path_rate)
        cfg, feat, nhwc = _timm_backbone(timm_name, in_channels, timm_kw)
    else:
        raise KeyError(f"unknown mmseg UPerNet backbone {backbone!r}; options: {list(BACKBONES)} or 'tu-<timm model>'")
    head_cfg = {"type": "UPerHead", "in_channels": feat, "in_index": [0, 1, 2, 3], "pool_scales": tuple(pool_scales),
                "channels": channels, "dropout_ratio": dropout, "num_classes": classes, "out_channels": classes,
                "threshold": 0.5, "norm_cfg": _BN, "align_corners": False,
                "loss_decode": {"type": "CrossEntropyLoss", "use_sigmoid": True, "avg_non_ignore": True}}
    # mmseg's registry, whatever scope a Runner of this process set as the default (in "mmengine" scope
    # the lookup of "ResNetV1c" / "UPerHead" fails)
    with DefaultScope.overwrite_default_scope("mmseg"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*build_loss.*deprecated", category=UserWarning)
        bb = MODELS.build(cfg)  # mmseg's heads call its own deprecated build_loss internally
        head = MODELS.build(head_cfg)
    _init_weights(bb, head)
    model = MMSegUPerNet(bb, head, channels_last=nhwc, timm_name=timm_name, in_channels=in_channels,
                         timm_kwargs=timm_kw)
    if weights_path is not None:
        load_mmseg_weights(model, weights_path, target=weights_target)
    return model


def load_mmseg_weights(model: MMSegUPerNet, path: str | Path, target: str = "auto") -> LoadReport:
    """Load a local weights file into :class:`MMSegUPerNet` with ``strict=False``; never downloads.

    ``target``: ``"model"`` for ``backbone.*``/``decode_head.*`` keys (ours or an mmseg UPerNet checkpoint);
    ``"backbone"`` for backbone weights in the backbone's own format: a timm checkpoint for timm backbones
    (mapped as in :func:`kaggle_kit.families.seg25d.model.timm_to_features`), mmseg/mmpretrain key names for
    ``ResNetV1c`` (``stem.*``, ``layer1.*``; torchvision's ResNet has no deep stem, so its ``conv1``
    weights are reported unexpected and the stem stays random) and Swin; ``"auto"``: ``"model"`` when any key
    starts with ``backbone.`` or ``decode_head.``. RGB input convs are adapted to ``in_channels``; the report
    is logged and returned.
    """
    sd = read_state_dict(path)
    if target == "auto":
        target = "model" if any(k.startswith(("backbone.", "decode_head.")) for k in sd) else "backbone"
    if target == "model":
        report = load_into(model, sd, target="model")
    elif target in ("backbone", "encoder"):
        if model.timm_name is not None:
            feats = model.backbone.timm_model
            sd, unused, notes = timm_to_features(model.timm_name, sd, feats, model.in_channels, **model.timm_kwargs)
            report = load_into(feats, sd, target="backbone")
            report.unexpected += unused
            report.notes += notes
        else:
            report = load_into(model.backbone, sd, target="backbone")
    else:
        raise ValueError(f"target must be 'auto', 'model' or 'backbone' (alias 'encoder'), got {target!r}")
    report.log(path)
    return report
