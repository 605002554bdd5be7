"""A training run is a function of its config: the same ``train.seed`` gives the same weights (on CPU), another
seed other weights, with every train-time random stream on (augmentation, slice-step draw, organ shift)."""
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _train(synth_cache, work: Path, seed: int) -> dict:
    from kaggle_kit.config import load_config
    from kaggle_kit.families.seg25d.api import family

    cfg = load_config(ROOT / "configs/seg25d/tiny_cpu.yaml",
                      [f"cache={synth_cache}", f"work_root={work}", f"pred_root={work / 'preds'}",
                       "data.size=[32, 32]", "train.epochs=1", "train.batch_size=16", "train.val_batch_size=64",
                       "data.augment=light_int", "data.stride_train=[1, 2, 3]", "data.organ_shift=0.15",
                       f"train.seed={seed}"])
    family.train(cfg, 0, "rep")
    ck = torch.load(work / "seg25d/rep/fold0/last.pth", map_location="cpu", weights_only=False)
    return ck["state_dict"]


def test_same_seed_same_weights(synth_cache, tmp_path):
    a = _train(synth_cache, tmp_path / "a", 3)
    b = _train(synth_cache, tmp_path / "b", 3)
    c = _train(synth_cache, tmp_path / "c", 4)
    assert a.keys() == b.keys() == c.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(a[k].dtype.is_floating_point and not torch.equal(a[k], c[k]) for k in a)
