"""kaggle_kit: a toolkit for the UW-Madison GI Tract Image Segmentation competition.

Importing the package is cheap: it loads no torch, ultralytics or mmseg. Model families are registered as
``"module:attr"`` strings in :mod:`kaggle_kit.registry` and imported on first use.
"""
__version__ = "0.1.0"

from kaggle_kit.data.raw import CLASSES  # noqa: E402,F401  (pure-python constant)
