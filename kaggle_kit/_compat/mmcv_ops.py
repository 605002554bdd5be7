"""A pure-torch stand-in for ``mmcv.ops``, so mmsegmentation imports on mmcv-lite.

mmcv-lite ships the Python files of ``mmcv.ops`` but not the compiled ``mmcv._ext`` they load, so
``import mmcv.ops`` fails, and mmseg imports it at module level in a few files (``mmseg.utils``,
``mmseg.models.utils.point_sample``, ``mmseg.models.losses.focal_loss``, ``san_head``) and inside
``try: ... except ModuleNotFoundError`` in others (``cc_head``, ``psa_head``, ``point_head``).

:func:`install` registers this module as ``sys.modules["mmcv.ops"]`` (and
``mmcv.ops.multi_scale_deform_attn``) before anything imports mmseg. It provides:

- working pure-torch ops: :func:`point_sample` (same semantics as mmcv's: points in ``[0, 1]``,
  ``F.grid_sample`` with ``align_corners=False`` by default) and :func:`sigmoid_focal_loss` /
  :class:`SigmoidFocalLoss` (mmcv's kernel: class-index targets, ``C`` = background);
- stand-ins that raise ``NotImplementedError`` when called or instantiated, for names that mmseg
  imports but only models we never build use (criss-cross attention, PSA mask, deformable convs,
  multi-scale deformable attention, SyncBN from mmcv);
- ``get_compiler_version`` / ``get_compiling_cuda_version`` returning ``"n/a"`` (environment reports).

Any other name raises ``AttributeError`` (so ``from mmcv.ops import X`` raises ``ImportError``).
When a real mmcv with compiled ops is installed (``mmcv._ext`` importable), :func:`install` does
nothing.
"""
from __future__ import annotations

import importlib.util
import sys
import types

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SigmoidFocalLoss", "install", "installed", "point_sample", "sigmoid_focal_loss"]

_MARK = "__kaggle_kit_standin__"


def point_sample(input: Tensor, points: Tensor, align_corners: bool = False, **kwargs) -> Tensor:
    """Bilinearly sample ``input`` at normalised points, as ``mmcv.ops.point_sample``.

    Args:
        input: (N, C, H, W) float feature map.
        points: (N, P, 2) or (N, Hg, Wg, 2) float ``(x, y)`` in ``[0, 1] x [0, 1]``
            (0 = left/top edge of the map, 1 = right/bottom edge when ``align_corners=False``).
        align_corners: passed to ``F.grid_sample``.
        **kwargs: other ``F.grid_sample`` arguments (``mode``, ``padding_mode``).

    Returns:
        (N, C, P) for 3-D ``points``, else (N, C, Hg, Wg).
    """
    flat = points.dim() == 3
    grid = points.unsqueeze(2) if flat else points
    out = F.grid_sample(input, grid * 2.0 - 1.0, align_corners=align_corners, **kwargs)
    return out.squeeze(3) if flat else out


def sigmoid_focal_loss(input: Tensor, target: Tensor, gamma: float = 2.0, alpha: float = 0.25,
                       weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Sigmoid focal loss with mmcv's op semantics, in pure torch (autograd gives the backward).

    Args:
        input: (N, C) float logits.
        target: (N,) long class indices in ``[0, C]``; ``C`` means "no positive class" (background).
        gamma, alpha: focal parameters; positives weigh ``alpha``, negatives ``1 - alpha``.
        weight: optional (C,) per-class weight, applied per row by the row's target class
            (as mmcv's kernel does: ``loss[n, :] *= weight[target[n]]``).
        reduction: ``"none"`` -> (N, C); ``"mean"`` -> sum / N (mmcv's mean); ``"sum"``.
    """
    if input.dim() != 2 or target.dim() != 1 or input.size(0) != target.size(0):
        raise ValueError(f"sigmoid_focal_loss wants input (N, C) and target (N,), got {tuple(input.shape)} "
                         f"and {tuple(target.shape)}")
    n, c = input.shape
    pos = F.one_hot(target.long(), c + 1)[:, :c].to(input.dtype)
    p = input.sigmoid()
    # log(p) and log(1-p) from logsigmoid: stable where mmcv clamps with FLT_MIN.
    term_p = (1 - p).pow(gamma) * F.logsigmoid(input)
    term_n = p.pow(gamma) * F.logsigmoid(-input)
    loss = -(alpha * pos * term_p + (1 - alpha) * (1 - pos) * term_n)
    if weight is not None:
        if weight.dim() != 1 or weight.numel() != c:
            raise ValueError(f"weight must be (C,) = ({c},), got {tuple(weight.shape)}")
        # rows whose target is background (index C) have no class weight in mmcv (out of range there);
        # keep them at weight 1 here.
        w = torch.cat([weight.to(input.dtype), weight.new_ones(1, dtype=input.dtype)])
        loss = loss * w[target.long()].unsqueeze(1)
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.sum() / max(n, 1)
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


class SigmoidFocalLoss(nn.Module):
    """Module form of :func:`sigmoid_focal_loss` (mmcv's ``SigmoidFocalLoss``)."""

    def __init__(self, gamma: float, alpha: float, weight: Tensor | None = None, reduction: str = "mean"):
        super().__init__()
        self.gamma, self.alpha, self.reduction = gamma, alpha, reduction
        self.register_buffer("weight", weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return sigmoid_focal_loss(input, target, self.gamma, self.alpha, self.weight, self.reduction)


def _unavailable(name: str) -> type:
    """A class that fails clearly when instantiated (or called, for function-like use)."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(
            f"mmcv.ops.{name} needs mmcv's compiled ops, which mmcv-lite lacks; kaggle_kit installs a pure-torch "
            f"stand-in for mmcv.ops that only implements point_sample and sigmoid_focal_loss. Use a model "
            f"without {name}, or install full mmcv (with CUDA ops) instead of mmcv-lite.")

    return type(name, (nn.Module,), {"__init__": __init__, "__doc__": f"Unavailable stand-in for mmcv.ops.{name}.",
                                     "__module__": __name__})


# Names mmseg / mmengine / mmcv.cnn import from mmcv.ops for models and paths we do not use.
_UNAVAILABLE = ("CrissCrossAttention", "PSAMask", "DeformConv2d", "DeformConv2dPack", "ModulatedDeformConv2d",
                "ModulatedDeformConv2dPack", "MultiScaleDeformableAttention", "SyncBatchNorm", "SimpleRoIAlign")


def _get_compiler_version() -> str:
    return "n/a (kaggle_kit mmcv.ops stand-in)"


def _build_module() -> types.ModuleType:
    mod = types.ModuleType("mmcv.ops", __doc__)
    setattr(mod, _MARK, True)
    mod.point_sample = point_sample
    mod.sigmoid_focal_loss = sigmoid_focal_loss
    mod.SigmoidFocalLoss = SigmoidFocalLoss
    mod.get_compiler_version = _get_compiler_version
    mod.get_compiling_cuda_version = _get_compiler_version
    for name in _UNAVAILABLE:
        setattr(mod, name, _unavailable(name))
    provided = sorted(n for n in vars(mod) if not n.startswith("_"))

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"mmcv.ops.{name} is not provided by kaggle_kit's mmcv.ops stand-in (mmcv-lite has no "
                             f"compiled ops); provided: {provided}")

    mod.__getattr__ = __getattr__
    # mmcv.cnn.bricks.transformer imports this submodule (in a try) and warns "install mmcv" when it is missing.
    msda = types.ModuleType("mmcv.ops.multi_scale_deform_attn")
    msda.MultiScaleDeformableAttention = mod.MultiScaleDeformableAttention
    mod.multi_scale_deform_attn = msda
    return mod


def installed() -> bool:
    """True when ``mmcv.ops`` in ``sys.modules`` is this stand-in."""
    return getattr(sys.modules.get("mmcv.ops"), _MARK, False)


def install() -> bool:
    """Register the stand-in as ``mmcv.ops`` unless real compiled ops exist; returns True if registered.

    Call before ``import mmseg``. Idempotent. Importing ``mmcv`` itself (mmcv-lite) is fine.
    """
    if installed():
        return True
    if importlib.util.find_spec("mmcv") is None:
        raise ImportError("mmcv is not installed: run `make install` (pip install -e .), which pins mmcv-lite")
    if importlib.util.find_spec("mmcv._ext") is not None:
        return False  # full mmcv: its own ops work
    existing = sys.modules.get("mmcv.ops")
    if existing is not None:
        return False  # someone imported a working mmcv.ops already; leave it
    import mmcv

    mod = _build_module()
    sys.modules["mmcv.ops"] = mod
    sys.modules["mmcv.ops.multi_scale_deform_attn"] = mod.multi_scale_deform_attn
    mmcv.ops = mod
    return True
