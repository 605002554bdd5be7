"""2.5D training samples per second: memory-mapped cache vs decoding the PNGs for every sample.

The PNG path is how public notebooks load: for each sample, read the k slice PNGs with cv2, normalise,
resize; the cache path is kaggle_kit's SliceDataset25D on memory-mapped volumes. Same stacks, same
canvas, same augmentation recipe, same random sample order, one process, one run.

    python benchmarks/bench_loader.py [--cases 4 --size-scale 1.0 --samples 400 --augment baseline]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--size-scale", type=float, default=1.0)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--augment", nargs="+", default=["light", "baseline"])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--work", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    a = ap.parse_args(argv)
    os.environ.setdefault("KAGGLE_KIT_NO_PROGRESS", "1")
    tmp = a.work is None
    work = Path(a.work or tempfile.mkdtemp(prefix="bench_loader_"))
    try:
        return _bench(a, work)
    finally:
        if tmp and not a.keep:
            shutil.rmtree(work, ignore_errors=True)


def _bench(a, work) -> int:
    import cv2

    from kaggle_kit.data.augment import build_augment
    from kaggle_kit.data.cache import Cache, prepare_cache
    from kaggle_kit.data.dataset25d import SliceDataset25D, StackSpec, normalise, stack_indices
    from kaggle_kit.data.geometry import SliceGeometry
    from kaggle_kit.data.raw import CLASSES, discover_split, load_labels
    from kaggle_kit.data.rle import rle_decode
    from kaggle_kit.data.synthetic import make_synthetic

    root, cache_dir = work / "data", work / "cache"
    if not (root / "train.csv").is_file():
        make_synthetic(root, a.cases, 0, seed=1, size_scale=a.size_scale, max_days=1, overwrite=True)
    prepare_cache(root, cache_dir, splits=("train",), n_folds=min(5, a.cases))
    cache = Cache(cache_dir)
    cds = cache.case_days("train")
    stack = StackSpec(k=3, stride=2)
    size = (a.size, a.size)
    table = discover_split(root, "train").set_index(["case_day", "z"])
    labels = load_labels(root / "train.csv").set_index(["id", "class"])["segmentation"].to_dict()
    def png_sample(i):
        row = ds.items.iloc[i]
        cd, z, depth = row["case_day"], int(row["z"]), int(row["depth"])
        ids, _ = stack_indices(z, depth, stack)
        st = np.stack([cv2.imread(table.loc[(cd, int(j)), "path"], cv2.IMREAD_UNCHANGED) for j in ids])
        x = normalise(st, "slice")
        g = SliceGeometry(st.shape[1:], size)
        img = g.forward(np.ascontiguousarray(x.transpose(1, 2, 0)))
        # masks from train.csv's RLE, as the notebooks that read PNGs per sample do
        m = np.stack([rle_decode(labels[(row["id"], c)], st.shape[1:]) for c in CLASSES], -1)
        m = g.forward(m, interp="nearest")
        return aug(img, m) if aug is not None else (img, m)

    shape = cache.image("train", cds[0]).shape
    print(f"samples: {a.samples}, canvas {size}, k=3, stride 2, first volume {shape}, one process")
    for aug_name in a.augment:
        aug = build_augment(aug_name)
        ds = SliceDataset25D(cache, cds, stack=stack, size=size, augment=aug)
        order = np.random.default_rng(0).integers(0, len(ds), a.samples)
        t = {}
        for name, fn in (("png_decode", png_sample), ("cache_mmap", ds.__getitem__)):
            for i in order[:20]:  # warm-up (page cache, imports)
                fn(int(i))
            t0 = time.perf_counter()
            for i in order:
                fn(int(i))
            t[name] = time.perf_counter() - t0
        print(f"augment={aug_name}")
        for name, sec in t.items():
            print(f"  {name:>11}: {a.samples / sec:8.1f} samples/s ({sec * 1e3 / a.samples:.2f} ms/sample)")
        print(f"  ratio cache/png: {t['png_decode'] / t['cache_mmap']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
