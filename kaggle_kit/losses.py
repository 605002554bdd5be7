"""Multi-label segmentation losses on logits, in pure torch, with per-sample weights; built from a spec.

Every loss takes ``logits`` float (B, C, H, W), ``target`` float (B, C, H, W) of 0/1 (one channel per organ;
organs may overlap; any number of spatial dims works, e.g. (B, C, D, H, W)) and an optional ``pixel_weight``: a per-sample weight of shape (B,) or (B, 1, 1, 1), or
per sample and class, (B, C) or (B, C, 1, 1). A weight of 0 removes that sample (or sample-class) from the
loss and from its gradient: the training loop uses it to ignore ambiguous slices next to the first/last
annotated slice of a case-day. Losses return a float32 scalar (logits are upcast: safe under AMP).

How each loss reduces, with weights ``w[b, c]`` (all ones by default):

- ``bce``, ``focal``: the weighted mean over samples and classes of the per-(b, c) pixel mean (with unit
  weights: the plain mean over all elements).
- ``dice``, ``tversky``: per class over the whole batch (sums over b, h, w, each sample's terms times
  ``w[b, c]``), mean over classes; ``per_image=True`` instead scores each (b, c) and takes the weighted mean.
  ``smooth`` keeps empty classes defined (an empty target with an empty prediction scores 0 loss).
- ``lovasz``: the Lovász hinge (Berman et al., CVPR 2018) per image and class, weighted mean.

``build_loss([{"type": "bce", "weight": 0.5}, {"type": "dice", "weight": 0.5}])`` returns a
:class:`CombinedLoss`; ``loss(logits, target, pixel_weight=None)`` is the weighted sum of the parts.
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LOSSES",
    "BCELoss",
    "CombinedLoss",
    "DiceLoss",
    "FocalLoss",
    "LovaszHingeLoss",
    "TverskyLoss",
    "aux_bce",
    "build_loss",
    "lovasz_hinge_flat",
]


def _check(logits: Tensor, target: Tensor, pixel_weight) -> tuple[Tensor, Tensor, Tensor]:
    """Validate shapes; return float32 logits, target and weights of shape (B, C)."""
    if logits.dim() < 3 or logits.shape != target.shape:
        raise ValueError(f"logits and target must both be (B, C, H, W) (or (B, C, *spatial)); got "
                         f"{tuple(logits.shape)} and {tuple(target.shape)}")
    b, c = logits.shape[:2]
    logits, target = logits.float(), target.float()
    if pixel_weight is None:
        return logits, target, logits.new_ones(b, c)
    w = torch.as_tensor(pixel_weight, dtype=torch.float32, device=logits.device)
    if w.dim() > 2 and all(n == 1 for n in w.shape[2:]):
        w = w.reshape(w.shape[:2])
    elif w.dim() == 1:
        w = w[:, None]
    if w.dim() != 2 or w.shape[0] != b or w.shape[1] not in (1, c):
        raise ValueError(f"pixel_weight is per sample ((B,), (B, 1, 1, 1)) or per sample and class ((B, C), "
                         f"(B, C, 1, 1)); got {tuple(torch.as_tensor(pixel_weight).shape)} for logits "
                         f"{tuple(logits.shape)}")
    if (w < 0).any():
        raise ValueError("pixel_weight must be >= 0")
    return logits, target, w.expand(b, c)


def _spatial(x: Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.dim()))


def _weighted_mean(values: Tensor, w: Tensor) -> Tensor:
    """sum(w * v) / sum(w): exactly 0, with zero gradients, when every weight is 0."""
    return (values * w).sum() / w.sum().clamp_min(1e-12)


class BCELoss:
    """Binary cross-entropy on logits, per pixel and class. ``pos_weight`` scales the positive term."""

    def __init__(self, pos_weight: float | None = None):
        self.pos_weight = pos_weight

    def __call__(self, logits: Tensor, target: Tensor, pixel_weight=None) -> Tensor:
        logits, target, w = _check(logits, target, pixel_weight)
        pw = None if self.pos_weight is None else logits.new_tensor(self.pos_weight)
        per = F.binary_cross_entropy_with_logits(logits, target, reduction="none", pos_weight=pw)
        return _weighted_mean(per.mean(dim=_spatial(per)), w)


class FocalLoss:
    """Sigmoid focal loss, ``-a_t (1 - p_t)^gamma log(p_t)`` per pixel and class (Lin et al. 2017).

    ``alpha`` weighs positives (``1 - alpha`` negatives); ``None`` weighs both 1.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = None):
        self.gamma, self.alpha = gamma, alpha

    def __call__(self, logits: Tensor, target: Tensor, pixel_weight=None) -> Tensor:
        logits, target, w = _check(logits, target, pixel_weight)
        ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # -log(p_t)
        p = logits.sigmoid()
        p_t = p * target + (1 - p) * (1 - target)
        per = (1 - p_t).pow(self.gamma) * ce
        if self.alpha is not None:
            per = per * (self.alpha * target + (1 - self.alpha) * (1 - target))
        return _weighted_mean(per.mean(dim=_spatial(per)), w)


class TverskyLoss:
    """``1 - (TP + s) / (TP + alpha FP + beta FN + s)`` on sigmoid probabilities (soft counts).

    ``alpha`` weighs false positives, ``beta`` false negatives; ``alpha = beta = 0.5`` is the Dice loss.
    Per class over the batch (then mean over classes), or per image and class with ``per_image=True``.
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, smooth: float = 1.0, per_image: bool = False):
        self.alpha, self.beta, self.smooth, self.per_image = alpha, beta, smooth, per_image

    def __call__(self, logits: Tensor, target: Tensor, pixel_weight=None) -> Tensor:
        logits, target, w = _check(logits, target, pixel_weight)
        p = logits.sigmoid()
        dims = _spatial(p)
        tp = (p * target).sum(dim=dims)  # (B, C)
        fp = (p * (1 - target)).sum(dim=dims)
        fn = ((1 - p) * target).sum(dim=dims)
        s = self.smooth
        if self.per_image:
            score = (tp + s) / (tp + self.alpha * fp + self.beta * fn + s)
            return _weighted_mean(1 - score, w)
        tp, fp, fn = ((x * w).sum(dim=0) for x in (tp, fp, fn))  # (C,): weighted sums over the batch
        score = (tp + s) / (tp + self.alpha * fp + self.beta * fn + s)
        return (1 - score).mean()


class DiceLoss(TverskyLoss):
    """Soft Dice loss, ``1 - (2 TP + s) / (2 TP + FP + FN + s)`` per class; see :class:`TverskyLoss`."""

    def __init__(self, smooth: float = 1.0, per_image: bool = False):
        # Tversky(0.5, 0.5) with smooth s/2 is exactly (2 TP + s) / (2 TP + FP + FN + s).
        super().__init__(alpha=0.5, beta=0.5, smooth=smooth / 2, per_image=per_image)
        self.dice_smooth = smooth


def lovasz_hinge_flat(logits: Tensor, target: Tensor) -> Tensor:
    """Lovász hinge of each row: ``logits``, ``target`` (N, P) -> (N,).

    With ``y = 2 t - 1``, the hinge errors ``m = max(1 - logit * y, 0)`` are sorted in decreasing order
    (permutation ``pi``); the Lovász extension of the Jaccard loss is ``sum_i m[pi_i] g_i`` with
    ``g_i = J(S_i) - J(S_{i-1})``, ``S_i = {pi_1..pi_i}`` and ``J(S) = 1 - |G \\ S| / |G u S|`` for the
    ground-truth set ``G``. Gradients flow through the sorted errors (the permutation is constant).
    """
    signs = 2 * target - 1
    errors = (1 - logits * signs).clamp_min(0)
    errors_sorted, perm = torch.sort(errors, dim=1, descending=True)
    t_sorted = torch.gather(target, 1, perm)
    n_pos = t_sorted.sum(dim=1, keepdim=True)
    pos_seen = t_sorted.cumsum(dim=1)  # |G n S_i|
    neg_seen = (1 - t_sorted).cumsum(dim=1)  # |S_i \ G|
    jac = 1 - (n_pos - pos_seen) / (n_pos + neg_seen).clamp_min(1e-12)  # J(S_i), i = 1..P
    grad = torch.cat([jac[:, :1], jac[:, 1:] - jac[:, :-1]], dim=1)
    return (errors_sorted * grad).sum(dim=1)


class LovaszHingeLoss:
    """Binary Lovász hinge (a convex surrogate of 1 - IoU) per image and class; weighted mean over them."""

    def __call__(self, logits: Tensor, target: Tensor, pixel_weight=None) -> Tensor:
        logits, target, w = _check(logits, target, pixel_weight)
        b, c = logits.shape[:2]
        per = lovasz_hinge_flat(logits.reshape(b * c, -1), target.reshape(b * c, -1)).view(b, c)
        return _weighted_mean(per, w)


LOSSES: dict[str, type] = {"bce": BCELoss, "dice": DiceLoss, "focal": FocalLoss, "tversky": TverskyLoss,
                           "lovasz": LovaszHingeLoss}


class CombinedLoss:
    """A weighted sum of losses; ``parts`` is a list of ``(name, weight, loss)``."""

    def __init__(self, parts: list[tuple[str, float, object]]):
        self.parts = parts

    def components(self, logits: Tensor, target: Tensor, pixel_weight=None) -> dict[str, Tensor]:
        """Each part's unweighted value keyed by its type (``"dice"``; ``"dice1"`` etc. when a type repeats)."""
        names = [n for n, _, _ in self.parts]
        return {(n if names.count(n) == 1 else f"{n}{i}"): loss(logits, target, pixel_weight)
                for i, (n, _, loss) in enumerate(self.parts)}

    def __call__(self, logits: Tensor, target: Tensor, pixel_weight=None) -> Tensor:
        total = None
        for _, weight, loss in self.parts:
            term = weight * loss(logits, target, pixel_weight)
            total = term if total is None else total + term
        return total

    def __repr__(self) -> str:
        return "CombinedLoss(" + ", ".join(f"{w}*{n}" for n, w, _ in self.parts) + ")"


def build_loss(spec) -> CombinedLoss:
    """Build a loss from ``{"type": ..., "weight": 1.0, **kwargs}``, a list of those, or a type name.

    Raises KeyError for an unknown type (listing the options) and TypeError for unknown keys (naming them and
    the allowed ones).
    """
    if isinstance(spec, str):
        spec = {"type": spec}
    if isinstance(spec, dict):
        spec = [spec]
    if not spec:
        raise ValueError("empty loss spec")
    parts = []
    for item in spec:
        if not isinstance(item, dict) or "type" not in item:
            raise TypeError(f"each loss spec must be a dict with a 'type' key, got {item!r}")
        kwargs = dict(item)
        name = kwargs.pop("type")
        if name not in LOSSES:
            raise KeyError(f"unknown loss type {name!r}; options: {sorted(LOSSES)}")
        weight = float(kwargs.pop("weight", 1.0))
        allowed = [p for p in inspect.signature(LOSSES[name]).parameters if p != "self"]
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise TypeError(f"loss {name!r} got unknown keys {unknown}; allowed: {['type', 'weight', *allowed]}")
        parts.append((name, weight, LOSSES[name](**kwargs)))
    return CombinedLoss(parts)


def aux_bce(cls_logits: Tensor, presence: Tensor, sample_weight=None) -> Tensor:
    """BCE of the classification head: ``cls_logits`` float (B, C) vs ``presence`` float (B, C) 0/1.

    ``sample_weight``: optional (B,) or (B, C) weights, as ``pixel_weight`` in the segmentation losses.
    """
    if cls_logits.dim() != 2 or cls_logits.shape != presence.shape:
        raise ValueError(f"cls_logits and presence must both be (B, C); got {tuple(cls_logits.shape)} and "
                         f"{tuple(presence.shape)}")
    per = F.binary_cross_entropy_with_logits(cls_logits.float(), presence.float(), reduction="none")
    if sample_weight is None:
        return per.mean()
    w = torch.as_tensor(sample_weight, dtype=torch.float32, device=per.device)
    w = (w[:, None] if w.dim() == 1 else w).expand_as(per)
    return _weighted_mean(per, w)
