"""3D segmentation family: case-day volumes resampled to a training geometry, MONAI SegResNet / UNet /
DynUNet or a 3D capsule network, patch training on the shared engine, Gaussian sliding-window inference
with flip TTA, maps written back in raw geometry.

Registered lazily as ``"kaggle_kit.families.seg3d.api:family"``; importing this package loads no torch.
"""
