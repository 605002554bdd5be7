"""3D capsule network for segmentation, after Avesta et al. 2022 ("3D Capsule Networks for Brain Image
Segmentation", AJNR 2023): a SegCaps-style U-shaped net of convolutional capsule layers with dynamic routing.

Capsules are tensors (B, T, A, d, h, w): T capsule types, A pose atoms per voxel. A convolutional capsule
layer applies ONE conv (A_in -> T_out * A_out) to every input type (weights shared across input types: this
is where the memory saving comes from), giving votes (B, T_in, T_out, A_out, d, h, w), then routes: the
coupling logits start at 0, ``c = softmax over T_out``, ``s = sum_i c_i * vote_i + bias``, ``v = squash(s)``,
logits += <vote, v>, for ``routings`` iterations. Output segmentation = length of the final capsule of each
class (in [0, 1)); :class:`CapsNet3D` returns its logit so the family's sigmoid losses apply unchanged.

Layer plan for ``levels=4, atoms=16`` (the published one; T x A per level, kernel 5, up-convs kernel 4):
conv 16 (full res) -> primary caps 2x16 /2 (1 routing) -> 4x16 -> 4x32 /4 -> 8x32 -> 8x64 /8 -> 8x32
-> deconv 8x32 /4 + skip -> 8x32 -> deconv 4x16 /2 + skip -> 4x16 -> deconv 2x16 /1 + conv skip (1x16)
-> final 1x1x1 caps: ``classes`` x 16. The paper's reconstruction-regularisation decoder is not included.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["CapsNet3D", "ConvCaps3D", "dynamic_routing", "squash"]


def squash(s: torch.Tensor, dim: int, eps: float = 1e-7) -> torch.Tensor:
    """v = s |s|^2 / ((1 + |s|^2) |s|) along ``dim`` (eps keeps zero vectors finite)."""
    n2 = (s * s).sum(dim, keepdim=True)
    return s * (n2 / (1.0 + n2) / torch.sqrt(n2 + eps))


def dynamic_routing(votes: torch.Tensor, bias: torch.Tensor, routings: int) -> torch.Tensor:
    """votes (B, Ti, To, Ao, d, h, w), bias (1, To, Ao, 1, 1, 1) -> capsules (B, To, Ao, d, h, w)."""
    b = votes.new_zeros(votes.shape[:3] + (1,) + votes.shape[4:])
    v = None
    for t in range(routings):
        c = torch.softmax(b, dim=2)
        v = squash((c * votes).sum(1) + bias, dim=2)
        if t < routings - 1:
            b = b + (votes * v.unsqueeze(1)).sum(3, keepdim=True)
    return v


class ConvCaps3D(nn.Module):
    """(B, Ti, Ai, d, h, w) -> (B, To, Ao, d', h', w'); ``transpose=True`` upsamples by ``stride``."""

    def __init__(self, ti: int, ai: int, to: int, ao: int, kernel: int = 5, stride: int = 1, routings: int = 3,
                 transpose: bool = False):
        super().__init__()
        self.ti, self.ai, self.to, self.ao, self.routings = ti, ai, to, ao, routings
        if transpose:  # kernel 2*stride, padding stride/2: output exactly stride x input
            self.conv = nn.ConvTranspose3d(ai, to * ao, kernel_size=2 * stride, stride=stride, padding=stride // 2,
                                           bias=False)
        else:
            self.conv = nn.Conv3d(ai, to * ao, kernel_size=kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bias = nn.Parameter(torch.full((1, to, ao, 1, 1, 1), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, A = x.shape[:3]
        if (T, A) != (self.ti, self.ai):
            raise ValueError(f"expected {self.ti} capsule types x {self.ai} atoms, got {T} x {A}")
        votes = self.conv(x.reshape(B * T, A, *x.shape[3:]))
        votes = votes.reshape(B, T, self.to, self.ao, *votes.shape[2:])
        return dynamic_routing(votes, self.bias, self.routings)


class CapsNet3D(nn.Module):
    """3D capsule U-net. ``forward(x)``: float (B, in_channels, d, h, w), every size divisible by
    2 ** (levels - 1) -> logits (B, classes, d, h, w) (logit of the class capsule's length)."""

    def __init__(self, in_channels: int = 1, classes: int = 3, atoms: int = 16, levels: int = 4, kernel: int = 5,
                 routings: int = 3):
        super().__init__()
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        a = int(atoms)
        # capsule types T and atoms A per level (level 0 = the full-resolution conv, one "type")
        T = [1] + [min(4 * 2 ** (lv - 1), 8) for lv in range(1, levels - 1)]
        A = [a] + [a * 2 ** (lv - 1) for lv in range(1, levels - 1)]
        self.conv1 = nn.Sequential(nn.Conv3d(in_channels, a, kernel, padding=kernel // 2), nn.ReLU(inplace=True))
        self.down = nn.ModuleList()
        for lv in range(1, levels - 1):
            first = ConvCaps3D(T[lv - 1], A[lv - 1], 2 if lv == 1 else T[lv - 1], A[lv], kernel, 2,
                               routings=1 if lv == 1 else routings)
            self.down.append(nn.Sequential(first, ConvCaps3D(first.to, A[lv], T[lv], A[lv], kernel, 1, routings)))
        tb, ab = T[-1], A[-1]
        self.bottom = nn.Sequential(ConvCaps3D(tb, ab, tb, 2 * ab, kernel, 2, routings),
                                    ConvCaps3D(tb, 2 * ab, tb, ab, kernel, 1, routings))
        self.up, self.fuse = nn.ModuleList(), nn.ModuleList()
        t_in, a_in = tb, ab
        for lv in range(levels - 2, 0, -1):
            self.up.append(ConvCaps3D(t_in, a_in, T[lv], A[lv], stride=2, routings=routings, transpose=True))
            self.fuse.append(ConvCaps3D(2 * T[lv], A[lv], T[lv], A[lv], kernel, 1, routings))
            t_in, a_in = T[lv], A[lv]
        self.up0 = ConvCaps3D(t_in, a_in, 2, a, stride=2, routings=routings, transpose=True)
        self.final = ConvCaps3D(3, a, classes, a, kernel=1, stride=1, routings=routings)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c0 = self.conv1(x).unsqueeze(1)  # (B, 1, a, d, h, w)
        skips, h = [], c0
        for blk in self.down:
            h = blk(h)
            skips.append(h)
        h = self.bottom(h)
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips)):
            h = fuse(torch.cat([skip, up(h)], 1))
        h = self.final(torch.cat([c0, self.up0(h)], 1))
        p = torch.linalg.vector_norm(h.float(), dim=2).clamp(1e-4, 1 - 1e-4)
        return torch.log(p) - torch.log1p(-p)

