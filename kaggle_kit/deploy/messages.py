"""What every part of the notebook run prints and raises: ``[kaggle_kit]`` lines (also logged) and
:class:`InferenceError`, the failure the public run must not hide."""
from __future__ import annotations

import logging

log = logging.getLogger("kaggle_kit.infer")


class InferenceError(RuntimeError):
    """A failure the public (debug) run must not hide: a member that did not load or run, a missing
    detector, a score not above the empty-mask baseline."""


def say(msg: str, warn: bool = False) -> None:
    (log.warning if warn else log.info)(msg)
    print(f"[kaggle_kit] {'WARNING ' if warn else ''}{msg}", flush=True)
