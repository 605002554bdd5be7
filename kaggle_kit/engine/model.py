"""The mmengine model wrapper shared by the torch families.

``TaskModel`` wraps a plain ``nn.Module`` (``net``) and a loss: batches are dicts from our datasets
(``inputs``, ``mask``, ``presence``, ``weight``, ``case_day``, ``z``) and mmengine passes their keys as
keyword arguments. Tasks:

- ``seg``: net(inputs) -> logits (B, C, ...) or (logits, cls_logits (B, C)) with an aux head;
  the loss is ``loss_fn(logits, mask, weight)`` (+ ``aux_weight`` x BCE of the aux head on ``presence``).
- ``cls``: net(inputs) -> logits (B, C), or in train mode (logits, map logits (B, C, h, w)) with a map head;
  the loss is ``loss_fn(logits, presence)`` (+ ``aux_weight`` x BCE of the map on the mask max-pooled to
  (h, w): a cell is positive when any of its pixels is).

In ``predict`` mode it returns one dict per sample with sigmoid probabilities (float16, on CPU) and the
truth, for the validation metric.

``channels_last``: the net's 4D weights and 4D inputs go NHWC (``torch.channels_last``), 5D ones NDHWC
(``torch.channels_last_3d``). A layout change only: outputs equal up to float rounding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel

from kaggle_kit.engine.memory_format import channels_last, to_channels_last

__all__ = ["TaskModel"]


class TaskModel(BaseModel):
    def __init__(self, net: torch.nn.Module, loss_fn, task: str = "seg", aux_weight: float = 0.0,
                 channels_last: bool = False):
        super().__init__()
        if task not in ("seg", "cls"):
            raise KeyError(f"unknown task {task!r}; options: ['seg', 'cls']")
        self.net = net
        self.loss_fn = loss_fn
        self.task = task
        self.aux_weight = float(aux_weight)
        self.channels_last = channels_last
        if channels_last:
            to_channels_last(self.net)

    def _net(self, inputs):
        if self.channels_last:
            inputs = channels_last(inputs)
        out = self.net(inputs)
        if isinstance(out, (tuple, list)):
            return out[0], out[1]
        return out, None

    def forward(self, inputs, mask=None, presence=None, weight=None, case_day=None, z=None, mode="tensor", **_):
        out, aux = self._net(inputs)
        if mode == "loss":
            if self.task == "cls":
                losses = {"loss_cls": self.loss_fn(out.float(), presence.float())}
                if aux is not None and self.aux_weight > 0:
                    if mask is None:
                        raise ValueError("the classifier's map loss needs the batch's masks (items without 'mask')")
                    target = F.adaptive_max_pool2d(mask.float(), aux.shape[-2:])
                    losses["loss_map"] = self.aux_weight * F.binary_cross_entropy_with_logits(aux.float(), target)
                return losses
            losses = {"loss_seg": self.loss_fn(out.float(), mask.float(), weight)}
            if aux is not None and self.aux_weight > 0:
                losses["loss_aux"] = self.aux_weight * F.binary_cross_entropy_with_logits(
                    aux.float(), presence.float())
            return losses
        if mode == "predict":
            prob = torch.sigmoid(out.float()).to(torch.float16).cpu()
            aux_p = torch.sigmoid(aux.float()).cpu() if aux is not None else None
            res = []
            for i in range(prob.shape[0]):
                r = {"prob": prob[i], "case_day": case_day[i] if case_day is not None else "",
                     "z": int(z[i]) if z is not None else i}
                if mask is not None and self.task == "seg":
                    r["mask"] = mask[i].to(torch.uint8).cpu()
                if presence is not None:
                    r["presence"] = presence[i].cpu()
                if aux_p is not None:
                    r["aux_prob"] = aux_p[i]
                res.append(r)
            return res
        return out if aux is None else (out, aux)
