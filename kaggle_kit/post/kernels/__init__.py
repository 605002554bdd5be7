"""Numba post-processing kernels, one module per concern (``fuse``, ``planes``, ``components``, ``rle``;
shared pieces in ``_base``), each with a numpy twin (``*_numpy``) that the tests compare it against.

Conventions (shared by both implementations):

- member maps: uint8 ``stack (M, D, C, H, W)`` (probability * 255), raw geometry and slice order;
- weights: float32 ``(M, C)``, already normalised to sum 1 per class (:func:`normalise_weights`);
- fused maps: float32 ``(D, C, H, W)``, ``sum_m w[m, c] * stack[m]`` accumulated member by member in
  float32, in member order (so numba and numpy agree bit for bit);
- thresholds: float64 ``(C,)`` on the 0..255 scale; a pixel is positive iff ``fused > thr255``
  (so one member with weight 1 and threshold t gives exactly ``member > t * 255``);
- masks: uint8 bit flags ``bits (D, H, W)`` (bit c = class c) plus ``counts (D, C)`` int64 positive pixels
  per plane; every in-place kernel keeps ``counts`` exact, so later steps skip empty planes for free.

Connectivity: ``8`` (default; the 2D neighbourhood of the 3x3 square) or ``4``; for 3D components the
same switch means 26- or 6-connectivity. 2D components are labelled on runs (runs per row, union-find
between overlapping runs of adjacent rows); scans of bit planes skip background 8 pixels at a time.
All kernels are single-threaded (``parallel`` is not used): the notebook runs other work beside them.
"""
from __future__ import annotations

from kaggle_kit.post.kernels._base import normalise_weights, plane_counts
from kaggle_kit.post.kernels.fuse import fuse, fuse_numpy, fuse_plane_max, fuse_plane_max_numpy, fuse_threshold, fuse_threshold_numpy, threshold, threshold_numpy
from kaggle_kit.post.kernels.planes import gate, gate_numpy, keep_range, truncate, truncate_numpy, z_smooth, z_smooth_numpy
from kaggle_kit.post.kernels.components import remove_relative_3d, remove_relative_3d_numpy, remove_small_2d, remove_small_2d_numpy, remove_small_3d, remove_small_3d_numpy
from kaggle_kit.post.kernels.rle import rle_encode_planes, rle_encode_planes_numpy

__all__ = ["fuse", "fuse_numpy", "fuse_plane_max", "fuse_plane_max_numpy", "fuse_threshold", "fuse_threshold_numpy", "gate", "gate_numpy", "keep_range", "normalise_weights", "plane_counts", "remove_relative_3d", "remove_relative_3d_numpy", "remove_small_2d", "remove_small_2d_numpy", "remove_small_3d", "remove_small_3d_numpy", "rle_encode_planes", "rle_encode_planes_numpy", "threshold", "threshold_numpy", "truncate", "truncate_numpy", "z_smooth", "z_smooth_numpy"]
