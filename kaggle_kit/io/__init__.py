"""Readers and writers of kaggle_kit's on-disk artefacts (probability maps: :mod:`kaggle_kit.io.probmaps`)."""
