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

Training checkpoints (mmengine's ``epoch_N.pth``, for ``kk train --resume``) load with ``weights_only=True``
too: mmengine pickles its message hub's ``HistoryBuffer`` objects (numpy inside), so before a save
:func:`training_state_to_plain` turns them into tagged dicts of tensors (``engine.hooks.PlainStateHook``) and
after a load :func:`training_state_from_plain` rebuilds them. A training checkpoint that holds anything else
(one written before this, or a crafted one) is refused by name: resuming never runs code from a file.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from kaggle_kit.utils import UserError
from kaggle_kit.utils import atomic_path, read_by_format

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "enable_resume_loader", "load_inference_checkpoint", "plain",
           "read_meta", "save_inference_checkpoint", "training_state_from_plain", "training_state_to_plain"]

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
    return read_by_format(meta, _META_READERS, path, CheckpointError, "checkpoint",
                          "the bundle's wheel, or re-export the checkpoint with this one")


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


# ------------------------------------------------------------------------------------ training state
_HISTORY = "__kk_history_buffer__"  # tag of a plain-data mmengine HistoryBuffer
_NDARRAY = "__kk_ndarray__"  # tag of a numpy array stored as a tensor


def training_state_to_plain(obj, where: str = "checkpoint"):
    """A training checkpoint dict -> one ``torch.load(weights_only=True)`` reads: tensors, str / int / float /
    bool / None, and dicts, lists and tuples of them. mmengine's HistoryBuffer becomes ``{_HISTORY: 1,
    "log_history": tensor, "count_history": tensor, "max_length": int}``, a numpy array ``{_NDARRAY: tensor}``, a
    numpy scalar its Python value. Anything else is a TypeError naming where it sits (nothing unloadable is
    written)."""
    import numpy as np
    import torch
    from mmengine.logging import HistoryBuffer

    if isinstance(obj, np.generic):  # before the plain types: numpy.float64 is a float subclass
        return obj.item()
    if isinstance(obj, torch.Tensor) or obj is None or type(obj) in (str, bool, int, float):
        return obj
    if isinstance(obj, HistoryBuffer):
        log, count = obj.data
        return {_HISTORY: 1, "log_history": torch.from_numpy(np.array(log)), "max_length": int(obj.max_length),
                "count_history": torch.from_numpy(np.array(count))}
    if isinstance(obj, np.ndarray):
        return {_NDARRAY: torch.from_numpy(np.array(obj))}
    if isinstance(obj, dict):  # OrderedDict stays one (weights_only reads it)
        return type(obj)((k, training_state_to_plain(v, f"{where}[{k!r}]")) for k, v in obj.items()) \
            if type(obj) is not dict else {k: training_state_to_plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
        return type(obj)(training_state_to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise TypeError(f"{where}: a {type(obj).__module__}.{type(obj).__qualname__} in the training state; only "
                    "tensors, plain types and containers are saved (a torch.load(weights_only=True) file)")


def training_state_from_plain(obj):
    """The inverse of :func:`training_state_to_plain`: tagged dicts back to HistoryBuffer / numpy arrays."""
    from mmengine.logging import HistoryBuffer

    if isinstance(obj, dict):
        if obj.get(_HISTORY) == 1:
            return HistoryBuffer(obj["log_history"].numpy(), obj["count_history"].numpy(), int(obj["max_length"]))
        if set(obj) == {_NDARRAY}:
            return obj[_NDARRAY].numpy()
        return type(obj)((k, training_state_from_plain(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
        return type(obj)(training_state_from_plain(v) for v in obj)
    return obj


def load_training_checkpoint(filename, map_location=None) -> dict:
    """A local training checkpoint, loaded with ``weights_only=True`` (then :func:`training_state_from_plain`
    runs in ``PlainStateHook.after_load_checkpoint``); CheckpointError naming the file when it holds more than
    tensors and plain data."""
    import torch

    path = Path(filename)
    if not path.is_file():
        raise FileNotFoundError(f"{filename} can not be found.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickled objects, truncated, corrupt
        text = str(e).strip()
        if "Weights only load failed" in text:
            why = ("it holds pickled objects beyond tensors and plain data, and loading it could run code (a "
                   "training checkpoint of an older kaggle_kit, or a file not written by this run)")
        else:
            why = f"{type(e).__name__}: {text.splitlines()[0][:200] if text else 'truncated or corrupt'}"
        raise CheckpointError(f"{path}: training checkpoint refused for resuming: {why}; train this fold again "
                              "without --resume, or remove the file (and last_checkpoint) to resume from an "
                              "earlier epoch") from None


_RESUME_ENABLED = False


def enable_resume_loader() -> None:
    """mmengine loads local checkpoints (resume) with :func:`load_training_checkpoint`: ``weights_only=True``,
    a refusal naming the file otherwise. Registered for the empty prefix, i.e. local paths; remote schemes
    keep mmengine's own loaders."""
    global _RESUME_ENABLED
    if _RESUME_ENABLED:
        return
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", loader=load_training_checkpoint, force=True)
    _RESUME_ENABLED = True
