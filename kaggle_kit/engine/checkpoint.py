"""Inference checkpoints (safe to load) and the resume loader for mmengine training checkpoints.

Inference checkpoints are plain dicts ``{"state_dict": {name: tensor}, "meta": {...plain types...}}``
loaded with ``torch.load(weights_only=True)``: a downloaded Kaggle dataset cannot run code through them.
``meta`` describes the model completely (family, model kwargs, input pipeline, fold, classes, data
fingerprint), so the notebook needs no YAML.

mmengine 0.10.7's own training checkpoints pickle its HistoryBuffer and need ``weights_only=False``; they
are only ever loaded to resume a run's own training (``enable_resume_loader``).
"""
from __future__ import annotations

import json
from pathlib import Path

from kaggle_kit.utils import UserError

__all__ = ["CheckpointError", "save_inference_checkpoint", "load_inference_checkpoint", "enable_resume_loader", "plain"]


class CheckpointError(UserError, ValueError):
    """A file that is not a loadable inference checkpoint (truncated, pickled code, wrong content)."""


def plain(obj):
    """Deep-convert to JSON-able plain types (tuples -> lists, numpy scalars -> python)."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def save_inference_checkpoint(path: str | Path, state_dict: dict, meta: dict) -> Path:
    import torch

    from kaggle_kit.utils import atomic_path

    sd = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": sd, "meta": plain(meta)}, tmp)
    return Path(path)


def load_inference_checkpoint(path: str | Path, map_location="cpu") -> tuple[dict, dict]:
    """Returns (state_dict, meta). Loads with weights_only=True: no code runs."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated or not an inference checkpoint
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise CheckpointError(f"{path}: not a loadable inference checkpoint ({type(e).__name__}: {first}); "
                              "re-export it with tools/train.py or copy it again") from None
    if not isinstance(ck, dict) or "state_dict" not in ck or "meta" not in ck:
        raise CheckpointError(f"{path}: not an inference checkpoint (expected keys state_dict, meta); "
                              "use the best.pth / last.pth that tools/train.py exports")
    return ck["state_dict"], ck["meta"]


_RESUME_ENABLED = False


def enable_resume_loader() -> None:
    """Let mmengine load local training checkpoints with weights_only=False (resume only).

    Registered for the empty prefix, i.e. local paths; remote schemes keep mmengine's own loaders.
    """
    global _RESUME_ENABLED
    if _RESUME_ENABLED:
        return
    import torch
    from mmengine.runner.checkpoint import CheckpointLoader

    def _load_local(filename, map_location=None):
        if not Path(filename).is_file():
            raise FileNotFoundError(f"{filename} can not be found.")
        return torch.load(filename, map_location=map_location, weights_only=False)

    CheckpointLoader.register_scheme(prefixes="", loader=_load_local, force=True)
    _RESUME_ENABLED = True
