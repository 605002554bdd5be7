"""2.5D segmentation family through segmentation_models_pytorch: k stacked slices in, per-class logits out.

Registered lazily as ``"kaggle_kit.families.seg25d.model:build_seg_model"``; importing this package loads
no torch.
"""
