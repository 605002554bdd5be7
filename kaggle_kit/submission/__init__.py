"""Submission rows, validation and writing (:mod:`kaggle_kit.submission.writer`)."""
