"""The format of inference checkpoints: ``meta["format"]``, a reader per format, frozen metas of format 1.

``fixtures/<family>_meta_format1.json`` are the metas the train code of each family wrote on its tiny config
(one epoch) before checkpoints carried a ``format`` key; they are kept as they were, so that renaming a
``data.*`` (or any other) key the predictors read fails here instead of dropping every member trained before
the rename. Only the metas are stored: each test builds a tiny random state dict around one.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from kaggle_kit.engine.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_inference_checkpoint,
    read_meta,
    save_inference_checkpoint,
)

FIXTURES = Path(__file__).parent / "fixtures"
FAMILIES = ("seg25d", "cls", "seg3d", "det_yolo")


def frozen_meta(family: str) -> dict:
    return json.loads((FIXTURES / f"{family}_meta_format1.json").read_text())


def _net(family: str, meta: dict):
    """A random-init network of the checkpoint's model (what the family's predictor builds from the meta)."""
    if family == "seg25d":
        from kaggle_kit.families.seg25d.train import build_net

        return build_net(meta["model"], meta["in_channels"], load_weights=False)
    if family == "cls":
        from kaggle_kit.families.cls.model import build_net

        return build_net(dict(meta["model"], weights_path=None), meta["in_channels"])
    if family == "seg3d":
        from kaggle_kit.families.seg3d.model import build_net

        return build_net(meta["model"], meta["data"])
    from kaggle_kit.families.det_yolo.predict import build_detector

    return build_detector(meta["model_cfg"], nc=int(meta["nc"]))


def _write_raw(path: Path, family: str, meta: dict) -> Path:
    """A checkpoint file exactly as given (no format key added), around a random state dict."""
    import torch

    torch.manual_seed(0)
    sd = {k: v.detach().clone() for k, v in _net(family, meta).state_dict().items()}
    torch.save({"state_dict": sd, "meta": meta}, path)
    return path


def test_every_inference_checkpoint_carries_its_format(tmp_path):
    import torch

    p = save_inference_checkpoint(tmp_path / "m.pth", {"w": torch.zeros(2)}, {"family": "x", "data": {"k": 3}})
    raw = torch.load(p, weights_only=True)
    assert raw["meta"]["format"] == CHECKPOINT_FORMAT == 1
    assert load_inference_checkpoint(p)[1] == {"family": "x", "data": {"k": 3}, "format": 1}


@pytest.mark.parametrize("family", FAMILIES)
def test_frozen_format1_metas_still_load_and_predict(family, synth_cache, tmp_path):
    """A checkpoint of today's format (no ``format`` key: read as format 1) loads through the family's own
    predictor and predicts a case-day in raw geometry: every key the predictor reads is still there."""
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.registry import resolve

    meta = frozen_meta(family)
    assert "format" not in meta and meta["family"] == family
    ck = _write_raw(tmp_path / "fold0.pth", family, meta)
    pred = resolve("family", family).make_predictor(ck, device="cpu")
    assert pred.meta["format"] == 1
    cache = Cache(synth_cache)
    cd = cache.case_days("train")[0]
    d, h, w = cache.image("train", cd).shape
    out = pred(cache, "train", cd)
    if family == "det_yolo":
        assert len(out) == d and ((out["y1"] <= h) & (out["x1"] <= w)).all()
    elif family == "cls":
        assert out.shape == (d, 3) and np.isfinite(out).all()
    else:
        assert out.shape == (d, 3, h, w) and np.isfinite(out).all()


def test_format1_reader_fills_what_older_format1_metas_lack():
    """2.5D checkpoints written before data.box_scope / data.box_pad existed meant 'slice' and no pad."""
    from kaggle_kit.data.pipeline25d import dataset_kwargs

    full = frozen_meta("seg25d")
    older = json.loads(json.dumps(full))
    del older["data"]["box_scope"], older["data"]["box_pad"]
    read = read_meta(older, "old.pth")
    assert read["data"]["box_scope"] == "slice" and read["data"]["box_pad"] == 0.0
    kw = dataset_kwargs(read["data"])
    assert kw == dataset_kwargs(read_meta(dict(full, data=dict(full["data"], box_pad=0.0)), "new.pth")["data"])


@pytest.mark.parametrize("fmt", [2, 99, "1", None, True])
def test_a_format_without_reader_is_refused_naming_the_file(fmt, tmp_path):
    meta = dict(frozen_meta("seg3d"), format=fmt)
    ck = _write_raw(tmp_path / "newer.pth", "seg3d", meta)
    with pytest.raises(CheckpointError, match=rf"{ck}: checkpoint format {fmt!r}; this kaggle_kit reads format\(s\) \[1\]"):
        load_inference_checkpoint(ck)


def test_manifest_formats(tmp_path):
    """Maps manifests carry ``format`` too; one without it is format 1; an unknown one is refused by name."""
    from kaggle_kit.io.probmaps import ProbMapError, manifest_path, read_manifest, write_manifest

    man = write_manifest(tmp_path, "e", "oof", family="seg25d", kind="pixel", classes=["a"], folds=[0],
                         predictor={"tta": "hflip", "batch_size": 4})
    assert man["format"] == 1 and read_manifest(tmp_path, "e", "oof")["predictor"] == {"tta": "hflip", "batch_size": 4}
    path = manifest_path(tmp_path, "e", "oof")
    old = {k: v for k, v in man.items() if k not in ("format", "predictor")}  # as written before those keys
    path.write_text(json.dumps(old))
    got = read_manifest(tmp_path, "e", "oof")
    assert got["format"] == 1 and got["predictor"] == {} and got["checkpoint"] is None
    path.write_text(json.dumps(dict(man, format=2)))
    with pytest.raises(ProbMapError, match=rf"{path}: manifest format 2; this kaggle_kit reads format\(s\) \[1\]"):
        read_manifest(tmp_path, "e", "oof")
