"""3D networks of the seg3d family, built by name with one set of constructor arguments.

``build_net3d(arch, in_channels=1, classes=3, filters=16, levels=4, norm="instance", dropout=0.0, **kwargs)``
returns a :class:`Seg3DNet`: the architecture wrapped so that any input size works (zero-padded to a
multiple of ``2 ** (levels - 1)``, output cropped back) and, in eval mode with ``roi`` set, inference runs
as a Gaussian-blended sliding window. Outputs are logits (B, classes, d, h, w) for independent sigmoids.

Architectures (random init; nothing downloads): MONAI ``SegResNet`` (the 1st place's 3D model), ``UNet``
(the public 3D notebook's), ``DynUNet`` (nnU-Net's), and ``capsnet`` (3D capsule network after Avesta et
al. 2022, :mod:`.capsnet`). ``filters`` is the width of the first level; each level doubles it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from kaggle_kit.families.seg3d.capsnet import CapsNet3D

__all__ = ["ARCHS", "Seg3DNet", "build_net", "build_net3d"]

_NORMS = {"instance": "INSTANCE", "batch": "BATCH", "group": ("GROUP", {"num_groups": 8})}


def _norm(norm: str):
    if norm not in _NORMS:
        raise KeyError(f"unknown norm {norm!r}; options: {sorted(_NORMS)}")
    return _NORMS[norm]


def _segresnet(in_channels, classes, filters, levels, norm, dropout, **kw):
    from monai.networks.nets import SegResNet

    down = (1, 2, 2, 4, 4, 4)[:levels]
    return SegResNet(spatial_dims=3, init_filters=filters, in_channels=in_channels, out_channels=classes,
                     dropout_prob=dropout or None, norm=_norm(norm), blocks_down=down,
                     blocks_up=(1,) * (levels - 1), **kw)


def _unet(in_channels, classes, filters, levels, norm, dropout, **kw):
    from monai.networks.nets import UNet

    if norm == "group" and classes % 8:
        # MONAI's UNet normalises its top up-convolution, whose width is ``classes``
        raise ValueError(f"unet with norm='group' needs classes divisible by 8 (got {classes}); use instance or batch")

    kw.setdefault("num_res_units", 2)
    return UNet(spatial_dims=3, in_channels=in_channels, out_channels=classes,
                channels=tuple(filters * 2 ** i for i in range(levels)), strides=(2,) * (levels - 1),
                norm=_norm(norm), dropout=dropout, **kw)


def _dynunet(in_channels, classes, filters, levels, norm, dropout, **kw):
    from monai.networks.nets import DynUNet

    kw.setdefault("res_block", True)
    return DynUNet(spatial_dims=3, in_channels=in_channels, out_channels=classes, kernel_size=[3] * levels,
                   strides=[1] + [2] * (levels - 1), upsample_kernel_size=[2] * (levels - 1),
                   filters=[min(filters * 2 ** i, 320) for i in range(levels)], dropout=dropout or None,
                   norm_name=_norm(norm), deep_supervision=False, **kw)


def _capsnet(in_channels, classes, filters, levels, norm, dropout, **kw):
    return CapsNet3D(in_channels=in_channels, classes=classes, atoms=filters, levels=levels, **kw)


ARCHS = {"segresnet": _segresnet, "unet": _unet, "dynunet": _dynunet, "capsnet": _capsnet}


class Seg3DNet(nn.Module):
    """Wraps an architecture: pads inputs to a multiple of ``divisor``; eval with ``roi`` set = sliding window.

    ``forward(x)``: float (B, C_in, d, h, w) -> logits (B, classes, d, h, w).
    """

    def __init__(self, net: nn.Module, divisor: int, roi=None, overlap: float = 0.25, sw_batch_size: int = 1):
        super().__init__()
        self.net = net
        self.divisor = int(divisor)
        self.roi = None if roi is None else tuple(int(r) for r in roi)
        self.overlap = float(overlap)
        self.sw_batch_size = int(sw_batch_size)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        d = self.divisor
        size = x.shape[2:]
        pad = [(-s) % d for s in size]
        if any(pad):
            x = F.pad(x, [0, pad[2], 0, pad[1], 0, pad[0]])
        out = self.net(x)
        if any(pad):
            out = out[:, :, : size[0], : size[1], : size[2]]
        return out

    def sliding_window(self, x: torch.Tensor, roi=None, overlap: float | None = None,
                       sw_batch_size: int | None = None) -> torch.Tensor:
        """Gaussian-blended sliding-window logits over a whole volume (MONAI ``sliding_window_inference``)."""
        from monai.inferers import sliding_window_inference

        roi = tuple(int(r) for r in (roi or self.roi))
        return sliding_window_inference(x, roi_size=roi, sw_batch_size=sw_batch_size or self.sw_batch_size,
                                        predictor=self.forward_padded, mode="gaussian",
                                        overlap=self.overlap if overlap is None else overlap)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and self.roi is not None and any(s > r for s, r in zip(x.shape[2:], self.roi)):
            return self.sliding_window(x)
        return self.forward_padded(x)


def build_net3d(arch: str = "segresnet", in_channels: int = 1, classes: int = 3, filters: int = 16,
                levels: int = 4, norm: str = "instance", dropout: float = 0.0, roi=None, overlap: float = 0.25,
                sw_batch_size: int = 1, **kwargs) -> Seg3DNet:
    """A :class:`Seg3DNet` around ``arch`` (one of :data:`ARCHS`; unknown names raise KeyError with the
    options). ``kwargs`` go to the architecture's constructor (e.g. ``num_res_units`` for UNet)."""
    if arch not in ARCHS:
        raise KeyError(f"unknown 3D architecture {arch!r}; options: {sorted(ARCHS)}")
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    net = ARCHS[arch](in_channels, classes, int(filters), int(levels), norm, float(dropout), **kwargs)
    return Seg3DNet(net, divisor=2 ** (levels - 1), roi=roi, overlap=overlap, sw_batch_size=sw_batch_size)


def build_net(model_cfg: dict, data_cfg: dict | None = None, predict_cfg: dict | None = None) -> Seg3DNet:
    """Seg3DNet from the config's ``model`` section (also what an inference checkpoint's meta holds); the
    eval-mode sliding window is ``data.patch`` with ``predict.overlap`` / ``predict.sw_batch_size``."""
    m = dict(model_cfg)
    kwargs = dict(m.pop("kwargs", None) or {})
    p = predict_cfg or {}
    return build_net3d(m["arch"], in_channels=m["in_channels"], classes=m["classes"], filters=m["filters"],
                       levels=m["levels"], norm=m["norm"], dropout=m["dropout"],
                       roi=tuple(data_cfg["patch"]) if data_cfg else None, overlap=p.get("overlap", 0.25),
                       sw_batch_size=p.get("sw_batch_size", 1), **kwargs)
