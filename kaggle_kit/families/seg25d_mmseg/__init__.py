"""2.5D UPerNet family through mmsegmentation (ResNet, Swin or timm ConvNeXt backbones), multi-label logits.

Registered lazily as ``"kaggle_kit.families.seg25d_mmseg.model:build_mmseg_upernet"``; importing this package
loads no torch or mmseg.
"""
