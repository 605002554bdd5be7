"""A training run is a function of its config: the same ``train.seed`` gives the same weights (on CPU, one
process after another), another seed other weights, with the train-time random streams on (2.5D: augmentation,
slice-step draw, organ shift; 3D: its patch sampling and augmentation)."""
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "seg25d": ("configs/seg25d/tiny_cpu.yaml",
               ["data.size=[32, 32]", "train.batch_size=16", "train.val_batch_size=64", "data.augment=light_int",
                "data.stride_train=[1, 2, 3]", "data.organ_shift=0.15"]),
    "cls": ("configs/cls/tiny_cpu.yaml",
            ["data.size=[32, 32]", "train.batch_size=16", "train.val_batch_size=64", "data.augment=light_int",
             "model.backbone=resnet10t"]),
    "seg3d": ("configs/seg3d/tiny_cpu.yaml",
              ["model.filters=4", "model.levels=2", "data.volume=[null,24,24]", "data.patch=[16,24,24]",
               "data.samples_per_volume=2"]),
}


def _train(family_name: str, synth_cache, work: Path, seed: int) -> dict:
    from kaggle_kit.config import load_config
    from kaggle_kit.registry import resolve

    path, ov = TINY[family_name]
    cfg = load_config(ROOT / path, [f"cache={synth_cache}", f"work_root={work}", f"pred_root={work / 'preds'}",
                                    "train.epochs=1", *ov, f"train.seed={seed}"])
    exp = f"rep_{work.name}"  # one experiment name per run: mmengine keys its logger and scope on it
    resolve("family", family_name).train(cfg, 0, exp)
    (ck,) = work.glob(f"{family_name}/{exp}/fold0/last.pth")
    return torch.load(ck, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.parametrize("family_name", sorted(TINY))
def test_same_seed_same_weights(family_name, synth_cache, tmp_path):
    a = _train(family_name, synth_cache, tmp_path / "a", 3)
    b = _train(family_name, synth_cache, tmp_path / "b", 3)
    c = _train(family_name, synth_cache, tmp_path / "c", 4)
    assert a.keys() == b.keys() == c.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(a[k].dtype.is_floating_point and not torch.equal(a[k], c[k]) for k in a)
