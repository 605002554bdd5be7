"""Inference checkpoints (safe to load) and the resume loader for mmengine training checkpoints.

Inference checkpoints are plain dicts ``{"state_dict": {name: tensor}, "meta": {...plain types...}}``
loaded with ``torch.load(weights_only=True)``: a downloaded Kaggle dataset cannot run code through them.
``meta`` describes the model completely (family, model kwargs, input pipeline, fold, classes, data
fingerprint), so the notebook needs no YAML. ``meta["format"]`` (an int, :data:`CHECKPOINT_FORMAT`) says how
to read it: every load goes through the reader of its format (:func:`read_meta`), which gives the meta in
the shape today's code reads (keys a format's older files lack filled with the value they meant), so a
renamed key is a failing test on the frozen metas of ``tests/engine/fixtures/``, not a dropped member.
A checkpoint without ``format`` was written before the key existed: format 1. A format this code does not
know (a newer kaggle_kit wrote it) is a :class:`CheckpointError` naming the file.

mmengine 0.10.7's own training checkpoints pickle its HistoryBuffer and need ``weights_only=False``; they
are only ever loaded to resume a run's own training (``enable_resume_loader``).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from kaggle_kit.utils import UserError
from kaggle_kit.utils import atomic_path

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "enable_resume_loader", "load_inference_checkpoint", "plain",
           "read_meta", "save_inference_checkpoint"]

#: The format of the inference checkpoints this code writes (``meta["format"]``).
CHECKPOINT_FORMAT = 1


class CheckpointError(UserError, ValueError):
    """A file that is not a loadable inference checkpoint (truncated, pickled code, wrong content)."""


def plain(obj):
    """Deep-convert to JSON-able plain types (tuples -> lists, numpy scalars -> python)."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def save_inference_checkpoint(path: str | Path, state_dict: dict, meta: dict) -> Path:
    import torch

    sd = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": sd, "meta": dict(plain(meta), format=CHECKPOINT_FORMAT)}, tmp)
    return Path(path)


# data.* keys of the 2.5D input pipeline (families seg25d and cls) that format-1 checkpoints written before
# the key existed lack, with the value they meant then
_V1_DATA_25D_ADDED = {"box_scope": "slice", "box_pad": 0.0}


def _read_meta_v1(meta: dict, path) -> dict:
    meta = dict(meta, format=1)
    if meta.get("family") in ("seg25d", "cls") and isinstance(meta.get("data"), dict):
        meta["data"] = {**_V1_DATA_25D_ADDED, **meta["data"]}
    return meta


_META_READERS = {1: _read_meta_v1}


def read_meta(meta, path) -> dict:
    """The meta of the checkpoint ``path`` read by the reader of its ``format`` (absent: 1) into the shape
    today's code reads; CheckpointError naming ``path`` for a format with no reader."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the checkpoint's meta is a {type(meta).__name__}, not a mapping")
    fmt = meta.get("format", 1)
    reader = _META_READERS.get(fmt) if isinstance(fmt, int) and not isinstance(fmt, bool) else None
    if reader is None:
        raise CheckpointError(f"{path}: checkpoint format {fmt!r}; this kaggle_kit reads format(s) "
                              f"{sorted(_META_READERS)}: a newer kaggle_kit wrote it, upgrade kaggle_kit (or the "
                              "bundle's wheel) or re-export the checkpoint with this one")
    return reader(meta, path)


def load_inference_checkpoint(path: str | Path, map_location="cpu") -> tuple[dict, dict]:
    """Returns (state_dict, meta). Loads with weights_only=True: no code runs."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols on its way to refusing them
            warnings.simplefilter("ignore", UserWarning)
            ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated or not an inference checkpoint
        text = str(e).strip()
        if "Weights only load failed" in text:
            why = "it holds pickled objects beyond tensors and plain types; refused, loading it could run code"
        else:
            why = f"{type(e).__name__}: {text.splitlines()[0][:200] if text else 'truncated or corrupt'}"
        raise CheckpointError(f"{path}: not a loadable inference checkpoint ({why}); re-export it with "
                              "tools/train.py or copy it again") from None
    if not isinstance(ck, dict) or "state_dict" not in ck or "meta" not in ck:
        raise CheckpointError(f"{path}: not an inference checkpoint (expected keys state_dict, meta); "
                              "use the best.pth / last.pth that tools/train.py exports")
    return ck["state_dict"], read_meta(ck["meta"], path)


def load_state_into(net, sd: dict, source) -> None:
    """Load ``sd`` into ``net``, every key matching both ways; a mismatch is a ValueError naming ``source``."""
    missing, unexpected = net.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"{source}: state dict does not match the model in its meta "
                         f"(missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]})")


def load_model(path: str | Path, build, expect: dict | None = None):
    """An inference checkpoint -> (net with its weights, meta): ``build(meta)`` makes the bare network from the
    meta (the family's constructor; it must not load other weights), then the state dict goes in, all keys
    matching. ``expect``: meta items that must hold (e.g. ``{"task": "cls"}``), checked before building."""
    sd, meta = load_inference_checkpoint(path)
    for k, v in (expect or {}).items():
        if meta.get(k) != v:
            raise ValueError(f"{path}: not a {v!r} checkpoint ({k} {meta.get(k)!r})")
    net = build(meta)
    load_state_into(net, sd, path)
    return net, meta


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
