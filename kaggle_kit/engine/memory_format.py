"""Memory layout of nets and batches: NHWC for 4D tensors, NDHWC for 5D ones (torch only, no mmengine, so
the predictors and the notebook can use it). A layout change only: outputs equal up to float rounding."""
from __future__ import annotations

import torch

__all__ = ["channels_last", "to_channels_last"]


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """A 4D tensor as NHWC, a 5D one as NDHWC; others unchanged."""
    if t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if t.dim() == 5:
        return t.contiguous(memory_format=torch.channels_last_3d)
    return t


def to_channels_last(net: torch.nn.Module) -> torch.nn.Module:
    """In place: every 4D / 5D parameter and buffer of ``net`` to NHWC / NDHWC (2D and 3D nets alike, where
    ``Module.to(memory_format=...)`` takes one format for all). Returns ``net``."""
    with torch.no_grad():
        for t in list(net.parameters()) + list(net.buffers()):
            if t.dim() in (4, 5):
                t.data = channels_last(t.data)
    return net
