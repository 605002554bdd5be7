import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("KAGGLE_KIT_NO_PROGRESS", "1")
os.environ.setdefault("KAGGLE_KIT_HOME", str(ROOT / ".pytest_cache" / "kaggle_kit_home"))


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic competition folder (all four geometries, shrunk 4x), built once per session."""
    from kaggle_kit.data.synthetic import make_synthetic

    out = tmp_path_factory.mktemp("synth")
    make_synthetic(out, train_cases=5, test_cases=2, seed=123, size_scale=0.25, max_days=2)
    return out


@pytest.fixture(scope="session")
def synth_cache(synth_root, tmp_path_factory) -> Path:
    from kaggle_kit.data.cache import prepare_cache

    cache = tmp_path_factory.mktemp("cache")
    prepare_cache(synth_root, cache, n_folds=5, seed=0)
    return cache


def run_tool(script: str, *args, check=True, env=None):
    """Run tools/<script> in a subprocess with this interpreter; returns CompletedProcess."""
    import subprocess

    e = dict(os.environ, **(env or {}))
    p = subprocess.run([sys.executable, str(ROOT / "tools" / script), *map(str, args)],
                       capture_output=True, text=True, env=e, cwd=ROOT)
    if check and p.returncode != 0:
        raise AssertionError(f"{script} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


TINY_SEG = ["data.size=[32, 32]", "train.batch_size=32", "train.epochs=1", "train.log_interval=5",
            "train.val_batch_size=64", "data.augment=none"]


@pytest.fixture(scope="session")
def trained_seg25d(synth_cache, tmp_path_factory):
    """A tiny 2.5D model trained on fold 0 (1 epoch, 32x32) with OOF (fold 0) and test maps written.

    Returns dict(work_root, pred_root, exp, config, overrides)."""
    tmp = tmp_path_factory.mktemp("seg25d")
    cfg = ROOT / "configs/seg25d/tiny_cpu.yaml"
    ov = [f"cache={synth_cache}", f"work_root={tmp / 'work'}", f"pred_root={tmp / 'preds'}", *TINY_SEG]
    run_tool("train.py", cfg, "--fold", 0, *ov)
    p = run_tool("predict.py", cfg, "--split", "oof,test", "--folds", "0", *ov)  # both splits, one process
    assert [json.loads(line)["split"] for line in p.stdout.strip().splitlines()[-2:]] == ["oof", "test"]
    return {"work_root": tmp / "work", "pred_root": tmp / "preds", "exp": "tiny_cpu", "config": cfg, "overrides": ov}
