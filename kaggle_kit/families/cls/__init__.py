"""Slice classifier family (``cls``): a timm backbone on the 2.5D stacks predicting per-class presence.

Outputs (D, C) probabilities per case-day in the probability-map store (kind ``classifier``), used for
gating. Registered lazily as ``"kaggle_kit.families.cls.api:family"``; importing this package loads no torch.
"""
