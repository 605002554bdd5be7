"""One full OOF tuning run at competition scale: 274 case-days, 3 pixel members + 1 slice classifier.

    python benchmarks/bench_tune.py [--data /tmp/bench_tune] [--case-days 274] [--geometry mix|266]
                                    [--search configs/ensemble/search_default.yaml] [--workers 2] [--keep]

Generates (once; reused when ``--data`` already holds it) a minimal cache (``train/<cd>/mask.npy`` +
``meta.json``, ``train_index.csv``, ``folds.csv``; no images: the tuner never reads them) and a
probability-map store with random but organ-shaped maps: per case-day a stomach (a deformed ellipsoid), a
large bowel (a chain of elongated ellipsoids along the colon frame) and small-bowel loops (small ellipsoids
in the lower centre); each member sees the organs with its own offsets, scale, sharpness and noise, adds
false-positive blobs, and a quarter of the case-days have their annotation cut a few slices short of what
the maps show (the competition's truncated labels). Geometries follow the competition (``mix``: 180 x
144x266x266, 78 x 144x310x360, 15 x 80x276x276, 1 x 144x234x234) or are all 144x266x266 (``266``).

Then it times ``load_oof`` + ``tune_oof`` (nested over 5 folds + the full fit, the exact re-run of the
chosen ensemble included) with the given search space, and prints one JSON line: wall times, scale, peak
memory, the scores and what the search evaluated. Generation is not timed.

``--baseline`` (default ``benchmarks/baselines/bench_tune_default.json``, used when the run has the same
scale and search space): a stored run of earlier code on the same generated data; a table before the JSON
line puts its scores and timings beside this run's, and says whether every score is identical.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.data.cache import INDEX_COLUMNS
from kaggle_kit.data.raw import CLASSES
from kaggle_kit.io.probmaps import ProbMapStore
from kaggle_kit.utils import atomic_save_npy, atomic_write_json, atomic_write_text, progress

ROOT = Path(__file__).resolve().parents[1]

MIX = [((144, 266, 266), 180), ((144, 310, 360), 78), ((80, 276, 276), 15), ((144, 234, 234), 1)]
MEMBERS = ("unet", "upernet", "segresnet")  # pixel members; "cls" is the classifier


def _ellipsoids(rng, shape):
    """Organs as lists of ellipsoids (centre z, y, x; radii z, y, x) in voxel units."""
    d, h, w = shape
    zc, yc, xc = d * rng.uniform(0.45, 0.55), h * rng.uniform(0.45, 0.55), w * rng.uniform(0.45, 0.55)
    zs = d / 144  # geometries with fewer slices have thicker ones
    s = w / 266
    stomach = [(zc + 28 * zs, yc - 0.15 * h, xc + 0.15 * w, 16 * zs * rng.uniform(0.8, 1.2),
                0.1 * h * rng.uniform(0.8, 1.2), 0.08 * w * rng.uniform(0.8, 1.2))]
    frame = [(-35, 0.12, -0.28), (0, 0.05, -0.3), (22, -0.1, -0.15), (25, -0.08, 0.1), (10, 0.05, 0.3),
             (-25, 0.1, 0.28), (-42, 0.15, 0.05)]
    large = []
    for i in range(len(frame) - 1):
        (z1, y1, x1), (z2, y2, x2) = frame[i], frame[i + 1]
        for t in (0.1, 0.3, 0.5, 0.7, 0.9):
            large.append((zc + (z1 + t * (z2 - z1)) * zs + rng.normal(0, 1), yc + (y1 + t * (y2 - y1)) * h,
                          xc + (x1 + t * (x2 - x1)) * w, 8 * zs, 13 * s * rng.uniform(0.85, 1.15),
                          13 * s * rng.uniform(0.85, 1.15)))
    small = [(zc - 18 * zs + rng.normal(0, 8) * zs, yc + 0.12 * h + rng.normal(0, 0.06 * h),
              xc + rng.normal(0, 0.1 * w), 5 * zs, 7 * s * rng.uniform(0.7, 1.3), 7 * s * rng.uniform(0.7, 1.3))
             for _ in range(int(rng.integers(6, 12)))]
    return [large, small, stomach]


def _level(shape, ells, box):
    """min over ellipsoids of the normalised radius r (< 1 inside), float32 on ``box`` (z0, z1, y0, y1, x0, x1)."""
    z0, z1, y0, y1, x0, x1 = box
    out = np.full((z1 - z0, y1 - y0, x1 - x0), 9.0, np.float32)
    for cz, cy, cx, rz, ry, rx in ells:
        a = [max(int(cz - 2 * rz), z0), min(int(cz + 2 * rz) + 1, z1), max(int(cy - 2 * ry), y0),
             min(int(cy + 2 * ry) + 1, y1), max(int(cx - 2 * rx), x0), min(int(cx + 2 * rx) + 1, x1)]
        if a[0] >= a[1] or a[2] >= a[3] or a[4] >= a[5]:
            continue
        zz = ((np.arange(a[0], a[1], dtype=np.float32) - cz) / rz)[:, None, None] ** 2
        yy = ((np.arange(a[2], a[3], dtype=np.float32) - cy) / ry)[None, :, None] ** 2
        xx = ((np.arange(a[4], a[5], dtype=np.float32) - cx) / rx)[None, None, :] ** 2
        sub = out[a[0] - z0:a[1] - z0, a[2] - y0:a[3] - y0, a[4] - x0:a[5] - x0]
        np.minimum(sub, np.sqrt(zz + yy + xx), out=sub)
    return out


def _box(shape, ells, pad=6):
    d, h, w = shape
    z0 = max(int(min(e[0] - 2 * e[3] for e in ells)) - 1, 0)
    z1 = min(int(max(e[0] + 2 * e[3] for e in ells)) + 2, d)
    y0 = max(int(min(e[1] - 2 * e[4] for e in ells)) - pad, 0)
    y1 = min(int(max(e[1] + 2 * e[4] for e in ells)) + pad, h)
    x0 = max(int(min(e[2] - 2 * e[5] for e in ells)) - pad, 0)
    x1 = min(int(max(e[2] + 2 * e[5] for e in ells)) + pad, w)
    return z0, max(z1, z0 + 1), y0, max(y1, y0 + 1), x0, max(x1, x0 + 1)


def make_case_day(seed: int, shape):
    """truth uint8 (D, H, W), pixel maps uint8 (3, D, C, H, W), classifier uint8 (D, C)."""
    rng = np.random.default_rng(seed)
    d, h, w = shape
    organs = _ellipsoids(rng, shape)
    truth = np.zeros(shape, np.uint8)
    pix = np.zeros((len(MEMBERS), d, len(CLASSES), h, w), np.uint8)
    present = np.zeros((d, len(CLASSES)), np.float32)
    cut = int(rng.integers(2, 6)) if rng.random() < 0.25 else 0  # annotation stops short of the organ
    quality = [(1.2, 0.6, 0.06), (1.8, 1.0, 0.09), (1.0, 1.4, 0.12)]  # member: sharpness, offset px, noise
    for c, ells in enumerate(organs):
        box = _box(shape, ells)
        z0, z1, y0, y1, x0, x1 = box
        lev = _level(shape, ells, box)
        t = lev < 1.0
        zs = np.flatnonzero(t.any((1, 2)))
        if cut and zs.size > cut + 3:
            t[zs[-cut]:] = False
        truth[z0:z1, y0:y1, x0:x1] |= t.astype(np.uint8) << c
        present[z0:z1, c] = t.any((1, 2))
        for m, (sharp, off, noise) in enumerate(quality):
            moved = [(e[0] + rng.normal(0, off * 0.5), e[1] + rng.normal(0, off), e[2] + rng.normal(0, off),
                      e[3] * rng.uniform(0.9, 1.1), e[4] * rng.uniform(0.9, 1.1), e[5] * rng.uniform(0.9, 1.1))
                     for e in ells]
            lm = _level(shape, moved, box)
            sel = lm < 2.0  # beyond, the map rounds to 0
            v = lm[sel]
            p = 1.0 / (1.0 + np.exp((v - 1.0) * 6.0 * sharp)) + rng.normal(0, noise, v.shape).astype(np.float32)
            sub = np.zeros(lm.shape, np.uint8)
            sub[sel] = np.rint(np.clip(p, 0, 1) * 255)
            pix[m, z0:z1, c, y0:y1, x0:x1] = sub
        for _ in range(int(rng.integers(0, 4))):  # false-positive blobs, one member at a time
            m = int(rng.integers(len(MEMBERS)))
            z, y, x = int(rng.integers(0, d)), int(rng.integers(8, h - 8)), int(rng.integers(8, w - 8))
            r = int(rng.integers(2, 6))
            pix[m, max(z - 1, 0):z + 2, c, y - r:y + r, x - r:x + r] = int(rng.integers(100, 230))
    cls = np.stack([np.convolve(present[:, c], np.ones(3) / 3, "same") for c in range(len(CLASSES))], 1)
    cls = np.clip(cls * 0.85 + rng.normal(0.08, 0.08, cls.shape), 0, 1)
    return truth, pix, np.rint(cls * 255).astype(np.uint8)


def generate(root: Path, n_case_days: int, geometry: str, seed: int = 0) -> None:
    """Write the minimal cache and the store under ``root`` (skipped when complete)."""
    if (root / "DONE").is_file():
        return
    cache, preds = root / "cache", root / "preds"
    rng = np.random.default_rng(seed)
    geoms = [g for g, n in MIX for _ in range(n)] if geometry == "mix" else [(144, 266, 266)] * 274
    geoms = [geoms[i] for i in np.linspace(0, len(geoms) - 1, n_case_days).round().astype(int)]
    store = ProbMapStore(preds)
    for exp in MEMBERS:
        store.write_manifest(exp, "oof", family="bench", kind="pixel", classes=CLASSES, folds=range(5))
    store.write_manifest("cls", "oof", family="bench", kind="classifier", classes=CLASSES, folds=range(5))
    rows, case, day = [], 1, 0
    for i, shape in enumerate(progress(geoms, desc="generate", unit="case-day")):
        if i and (day >= 3 or geoms[i - 1] != shape):
            case, day = case + 1, 0
        day += 1
        cd = f"case{case}_day{day}"
        truth, pix, cls = make_case_day(int(rng.integers(2**31)), shape)
        d, h, w = shape
        out = cache / "train" / cd
        atomic_save_npy(out / "mask.npy", truth)
        atomic_write_json(out / "meta.json", {"fingerprint": "bench", "shape": list(shape), "labelled": True})
        slices = np.arange(1, d + 1)
        for m, exp in enumerate(MEMBERS):
            store.write(exp, "oof", cd, pix[m], slices)
        store.write("cls", "oof", cd, cls, slices)
        flags = truth.reshape(d, -1).max(1)
        anno = np.flatnonzero(flags)
        for z in range(d):
            rows.append({"id": f"{cd}_slice_{z + 1:04d}", "case": case, "day": day, "case_day": cd, "slice": z + 1,
                         "z": z, "depth": d, "height": h, "width": w, "spacing_x": 1.5, "spacing_y": 1.5,
                         "labelled": True, **{f"has_{c}": int((flags[z] >> k) & 1) for k, c in enumerate(CLASSES)},
                         "first_anno": int(anno[0]) + 1 if anno.size else 0,
                         "last_anno": int(anno[-1]) + 1 if anno.size else 0, "faulty": False})
    index = pd.DataFrame(rows)[INDEX_COLUMNS]
    atomic_write_text(cache / "train_index.csv", index.to_csv(index=False))
    cases = sorted(index["case"].unique())
    folds = pd.DataFrame({"case": cases, "fold": [i % 5 for i in range(len(cases))]})
    atomic_write_text(cache / "folds.csv", folds.to_csv(index=False))
    (root / "DONE").write_text("ok\n")


SCORES = ("in_sample", "held_out_mean", "held_out_std", "plain_average_05", "best_single_member", "members_kept",
          "rounds")
TIMES = ("load_s", "search_s", "steps_and_sweeps_s", "verify_s", "wall_s", "cpu_s", "peak_rss_gb")


def _compare(a, out: dict) -> None:
    """Print the stored baseline beside this run (scores must be identical; timings as ratios)."""
    path = Path(a.baseline)
    if not path.is_file():
        return
    base = json.loads(path.read_text())
    ref = base["result"]
    same_scale = (ref["case_days"], ref["geometry"]) == (out["case_days"], out["geometry"])
    default_search = Path(a.search).resolve() == (ROOT / "configs" / "ensemble" / "search_default.yaml").resolve()
    if not same_scale or not default_search or a.no_verify != ("verify_s" not in ref):
        print(f"baseline {path.name}: other scale, search space or verification; not compared")
        return
    print(f"baseline: {path} (code {base['code']}, {base['machine']}, {base['date']})")
    print(f"{'':22s} {'baseline':>22s} {'this run':>22s}")
    same = True
    for k in SCORES:
        eq = ref.get(k) == out.get(k)
        same &= eq
        print(f"{k:22s} {str(ref.get(k))[:22]:>22s} {str(out.get(k))[:22]:>22s}  {'identical' if eq else 'DIFFERENT'}")
    for k in TIMES:
        r, o = ref.get(k), out.get(k)
        ratio = f"{r / o:.2f}x" if r and o else ""
        print(f"{k:22s} {str(r):>22s} {str(o):>22s}  {ratio}")
    print("scores: " + ("identical to the baseline" if same else "DIFFERENT from the baseline"))
    out["baseline_scores_identical"] = same


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="folder for the generated cache + store (reused if complete)")
    ap.add_argument("--case-days", type=int, default=274)
    ap.add_argument("--geometry", choices=["mix", "266"], default="mix")
    ap.add_argument("--search", default=str(ROOT / "configs" / "ensemble" / "search_default.yaml"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-verify", action="store_true", help="skip the exact re-run of the chosen ensemble")
    ap.add_argument("--keep", action="store_true", help="keep a temporary --data folder")
    ap.add_argument("--report", default=None, help="also write the tuned YAML + report to this folder")
    ap.add_argument("--baseline", default=str(ROOT / "benchmarks" / "baselines" / "bench_tune_default.json"),
                    help="a stored run to compare with (skipped when its scale or search space differ)")
    a = ap.parse_args(argv)
    import yaml

    from kaggle_kit.tune.search import load_oof, parse_search_space, tune_oof

    tmp = a.data is None
    root = Path(a.data or tempfile.mkdtemp(prefix="bench_tune_"))
    try:
        t0 = time.perf_counter()
        generate(root, a.case_days, a.geometry)
        t_gen = time.perf_counter() - t0
        obj = yaml.safe_load(Path(a.search).read_text())
        obj["members"] = [{"exp": e, "kind": "pixel"} for e in MEMBERS] + [{"exp": "cls", "kind": "classifier"}]
        space = parse_search_space(obj, a.search)
        t0, cpu0, load0 = time.perf_counter(), os.times(), os.getloadavg()[0]
        data = load_oof(root / "cache", root / "preds", space.pixel, space.classifier, space.floor_thr)
        t_load = time.perf_counter() - t0
        res = tune_oof(space, data, workers=a.workers, verify=not a.no_verify, log=lambda s: print(s, flush=True))
        t_total = time.perf_counter() - t0
        cpu = os.times()  # the evaluation processes' time is counted once they have exited (tune_oof's end)
        cpu_s = (cpu.user + cpu.system + cpu.children_user + cpu.children_system
                 - cpu0.user - cpu0.system - cpu0.children_user - cpu0.children_system)
        voxels = sum(int(np.prod(cd.shape)) for cd in data.case_days)
        crop = sum(cr.size for cd in data.case_days for cr in cd.crops if cr is not None)
        s = res["summary"]
        if a.report:
            from kaggle_kit.tune.report import write_report, write_tuned_yaml

            write_tuned_yaml(Path(a.report) / "tuned.yaml", res["ensemble"], s, a.search, a.report)
            write_report(res, a.report, str(Path(a.report) / "tuned.yaml"), a.search, {"load_s": t_load})
        out = {
            "case_days": len(data.case_days), "geometry": a.geometry, "pixel_members": len(MEMBERS),
            "classifier_members": 1, "voxels_per_class": voxels, "crop_fraction": crop / (3 * voxels),
            "crop_mb": data.nbytes() / 1e6, "workers": a.workers, "cpus": os.cpu_count(),
            "load_s": round(t_load, 1), "wall_s": round(t_total, 1), "cpu_s": round(cpu_s, 1),
            "load_avg_start_end": [round(load0, 1), round(os.getloadavg()[0], 1)], "generate_s": round(t_gen, 1),
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in res["timing"].items()},
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            # the largest evaluation process; most of its pages are the parent's crops, shared copy-on-write
            "peak_rss_child_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2),
            "in_sample": s["in_sample"], "skew": s.get("skew"), "held_out_mean": s["held_out_mean"],
            "held_out_std": s["held_out_std"], "plain_average_05": s["plain_average_05"],
            "best_single_member": s["best_single_member"], "members_kept": s["members_kept"],
            "rounds": {r["name"]: r["rounds"] for r in res["runs"]},
        }
        _compare(a, out)
        print(json.dumps(out))
    finally:
        if tmp and not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
