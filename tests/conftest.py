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


def fake_oof_store(root: Path, data_seed: int, noise_seed: int, blobs: int, smooth_noise: bool,
                   classifier: bool) -> dict:
    """A tiny synthetic cache (3 folds, train only) and OOF maps of fake members, for the tuner's tests:
    ``sharp`` (the truth blurred a little, noisy, with ``blobs`` false-positive blobs per class), ``smooth``
    (blurred more, shifted by a pixel; with ``smooth_noise`` a little noise) and, with ``classifier``, ``cls``
    (blurred per-slice presence + noise). Returns {data, cache, preds, root}."""
    import numpy as np
    from scipy import ndimage

    from kaggle_kit.data.cache import Cache, prepare_cache
    from kaggle_kit.data.raw import CLASSES
    from kaggle_kit.data.synthetic import make_synthetic
    from kaggle_kit.io.probmaps import ProbMapStore

    data, cache, preds = root / "data", root / "cache", root / "preds"
    make_synthetic(data, train_cases=4, test_cases=0, seed=data_seed, size_scale=0.2, max_days=2)
    prepare_cache(data, cache, splits=("train",), n_folds=3, seed=0)
    c = Cache(cache)
    st = ProbMapStore(preds)
    members = [("sharp", "pixel"), ("smooth", "pixel")] + ([("cls", "classifier")] if classifier else [])
    for exp, kind in members:
        st.write_manifest(exp, "oof", family="fake", kind=kind, classes=CLASSES, folds=[0, 1, 2])
    rng = np.random.default_rng(noise_seed)
    index = c.index("train")
    for cd in c.case_days("train"):
        m = np.asarray(c.mask("train", cd))
        d, h, w = m.shape
        slices = index[index.case_day == cd].sort_values("z")["slice"].tolist()
        sharp, smooth = np.zeros((d, 3, h, w), np.float32), np.zeros((d, 3, h, w), np.float32)
        cls = np.zeros((d, 3), np.float32)
        for k in range(3):
            t = ((m >> k) & 1).astype(np.float32)
            a = ndimage.gaussian_filter(t, (0.4, 0.8, 0.8)) + rng.normal(0, 0.15, t.shape)
            for _ in range(blobs):
                z, y, x = rng.integers(0, d), rng.integers(2, h - 2), rng.integers(2, w - 2)
                a[z, y - 1:y + 2, x - 1:x + 2] += 0.8
            b = ndimage.gaussian_filter(np.roll(t, 1, axis=2), (0.8, 1.6, 1.6)) * 1.1
            if smooth_noise:
                b = b + rng.normal(0, 0.05, t.shape)
            sharp[:, k], smooth[:, k] = np.clip(a, 0, 1), np.clip(b, 0, 1)
            if classifier:
                pres = t.reshape(d, -1).max(1)
                cls[:, k] = np.clip(ndimage.uniform_filter1d(pres, 3) * 0.8 + rng.normal(0.1, 0.08, d), 0, 1)
        st.write("sharp", "oof", cd, sharp, slices)
        st.write("smooth", "oof", cd, smooth, slices)
        if classifier:
            st.write("cls", "oof", cd, cls, slices)
    return {"data": data, "cache": cache, "preds": preds, "root": root}
