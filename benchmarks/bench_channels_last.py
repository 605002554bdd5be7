"""NCHW vs NHWC (channels_last; NCDHW vs NDHWC for 3D nets) training steps and inference, side by side.

    python benchmarks/bench_channels_last.py                       # the tiny CPU configs (cls, 2.5D, 3D)
    python benchmarks/bench_channels_last.py --configs configs/seg25d/tiny_cpu.yaml --steps 20
    python benchmarks/bench_channels_last.py --device cuda --configs configs/seg3d/gpu_segresnet.yaml

For each config: the family's own builder, the config's batch size and canvas (3D: patch), AdamW steps (forward,
backward, update) timed after warm-up, alternating the two memory formats round by round so that machine
load hits both alike. Prints seconds per step and the NCHW / NHWC ratio (> 1: channels_last is faster),
plus the largest difference between the two formats' outputs on the same weights (a layout change, not a
different model). Then the same for eval-mode inference (``torch.inference_mode``) at the config's predict
batch size, as the predictors run it. On CUDA both run under fp16 autocast (+ GradScaler), as training does.

    python benchmarks/bench_channels_last.py --configs --predict demo_out/work_dirs/seg25d/seg25d_tiny_cpu/fold0/best.pth \
        --cache demo_out/cache --case-days 4

``--predict CKPT --cache CACHE``: the real predictor of that checkpoint (cls or 2.5D), data pipeline and
paste-back included, over the first ``--case-days`` train case-days, NCHW and NHWC alternating.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT = ["configs/cls/tiny_cpu.yaml", "configs/seg25d/tiny_cpu.yaml", "configs/seg3d/tiny_cpu.yaml"]


def build(cfg: dict, batch: int):
    """The config's net and a random input batch of its training shape."""
    import torch

    if cfg["family"] == "seg3d":
        from kaggle_kit.families.seg3d.train import build_net

        return build_net(cfg["model"], cfg["data"], cfg["predict"]), torch.randn(batch, 1, *cfg["data"]["patch"])
    if cfg["family"] == "cls":
        from kaggle_kit.families.cls.train import build_net
    else:
        from kaggle_kit.families.seg25d.train import build_net
    return build_net(cfg["model"], cfg["data"]["k"]), torch.randn(batch, cfg["data"]["k"], *cfg["data"]["size"])


def _loss(out):
    import torch

    outs = out if isinstance(out, (list, tuple)) else [out]
    return sum(o.float().sigmoid().mean() for o in outs if torch.is_tensor(o))


def alternate(fns: dict, rounds: int, reps: int) -> dict:
    """{format: callable} -> {format: seconds}: ``rounds`` rounds, each running every callable ``reps`` times
    in turn, so that machine load hits every format alike."""
    times = dict.fromkeys(fns, 0.0)
    for _ in range(rounds):
        for fmt, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            times[fmt] += time.perf_counter() - t0
    return times


def bench(path: str, steps: int, rounds: int, device: str = "cpu") -> dict:
    import contextlib

    import torch

    from kaggle_kit.config import load_config
    from kaggle_kit.engine.memory_format import channels_last, to_channels_last

    cfg = load_config(ROOT / path)
    torch.manual_seed(0)
    base, x = build(cfg, int(cfg["train"]["batch_size"]))
    if cfg["family"] == "seg3d":
        base.roi = None  # time the net on the patch itself, not the eval-mode sliding window
    cuda = device == "cuda"
    amp = (lambda: torch.autocast("cuda", dtype=torch.float16)) if cuda else contextlib.nullcontext
    nets, opts, xs, scalers = {}, {}, {}, {}
    for fmt in ("nchw", "nhwc"):
        net = copy.deepcopy(base).to(device).train()
        xi = x.clone().to(device)
        if fmt == "nhwc":
            net, xi = to_channels_last(net), channels_last(xi)
        nets[fmt], opts[fmt], xs[fmt] = net, torch.optim.AdamW(net.parameters(), lr=1e-4), xi
        scalers[fmt] = torch.amp.GradScaler("cuda", enabled=cuda)
    with torch.no_grad():
        a, b = nets["nchw"].eval()(xs["nchw"]), nets["nhwc"].eval()(xs["nhwc"])
        a, b = (a[0], b[0]) if isinstance(a, (tuple, list)) else (a, b)
        max_diff = float((a.float() - b.float()).abs().max())

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def step(fmt):
        opts[fmt].zero_grad(set_to_none=True)
        with amp():
            loss = _loss(nets[fmt](xs[fmt]))
        scalers[fmt].scale(loss).backward()
        scalers[fmt].step(opts[fmt])
        scalers[fmt].update()
        sync()

    for fmt in nets:
        nets[fmt].train()
        for _ in range(3 if cuda else 2):
            step(fmt)
    times = alternate({fmt: (lambda f=fmt: step(f)) for fmt in nets}, rounds, steps)
    n = steps * rounds
    res = {"config": path, "device": device, "batch": list(x.shape), "nchw_s_per_step": round(times["nchw"] / n, 4),
           "nhwc_s_per_step": round(times["nhwc"] / n, 4), "ratio_nchw_over_nhwc": round(times["nchw"] / times["nhwc"], 3),
           "eval_max_abs_diff": max_diff}
    # inference at the predict batch size (3D: the sliding-window batch), eval mode
    pb = cfg["predict"].get("batch_size") or cfg["predict"].get("sw_batch_size") or x.shape[0]
    xb = torch.randn(int(pb), *x.shape[1:]).to(device)
    xin = {"nchw": xb, "nhwc": channels_last(xb)}

    def infer(fmt):
        with torch.inference_mode(), amp():
            nets[fmt](xin[fmt])
        sync()

    for fmt in nets:
        nets[fmt].eval()
        infer(fmt)
    itimes = alternate({fmt: (lambda f=fmt: infer(f)) for fmt in nets}, rounds, steps)
    res.update({"infer_batch": list(xb.shape), "nchw_s_per_batch": round(itimes["nchw"] / n, 4),
                "nhwc_s_per_batch": round(itimes["nhwc"] / n, 4),
                "infer_ratio_nchw_over_nhwc": round(itimes["nchw"] / itimes["nhwc"], 3)})
    return res


def bench_predictor(ckpt: str, cache_dir: str, n_cd: int, rounds: int) -> dict:
    import numpy as np

    from kaggle_kit.data.cache import Cache
    from kaggle_kit.engine.checkpoint import load_inference_checkpoint

    _, meta = load_inference_checkpoint(ckpt)
    if meta.get("task") == "cls":
        from kaggle_kit.families.cls.predict import ClsPredictor as P
    else:
        from kaggle_kit.families.seg25d.predict import Predictor25D as P
    cache = Cache(cache_dir)
    cds = cache.case_days("train")[:n_cd]
    preds = {"nchw": P(ckpt, device="cpu", channels_last=False), "nhwc": P(ckpt, device="cpu")}
    outs = {fmt: [p(cache, "train", cd) for cd in cds] for fmt, p in preds.items()}  # warm-up + outputs
    diff = max(float(np.abs(a - b).max()) for a, b in zip(outs["nchw"], outs["nhwc"]))
    t = alternate({fmt: (lambda p=p: [p(cache, "train", cd) for cd in cds]) for fmt, p in preds.items()}, rounds, 1)
    n = rounds * len(cds)
    return {"ckpt": ckpt, "family": meta.get("family"), "case_days": len(cds),
            "slices": int(sum(cache.image("train", cd).shape[0] for cd in cds)),
            "nchw_s_per_case_day": round(t["nchw"] / n, 3), "nhwc_s_per_case_day": round(t["nhwc"] / n, 3),
            "ratio_nchw_over_nhwc": round(t["nchw"] / t["nhwc"], 3), "max_abs_diff": diff}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="*", default=DEFAULT)
    ap.add_argument("--steps", type=int, default=5, help="steps per round and format")
    ap.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    ap.add_argument("--predict", nargs="*", default=[], help="inference checkpoints: time their real predictors")
    ap.add_argument("--cache", default=None, help="prepared cache for --predict")
    ap.add_argument("--case-days", type=int, default=4)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = ap.parse_args()
    if a.predict and not a.cache:
        ap.error("--predict needs --cache")
    from kaggle_kit.env import setup_offline

    setup_offline()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {a.device}")
    print("| config | train batch | NCHW s/step | NHWC s/step | ratio | max |diff| (eval) | infer batch | NCHW s/batch "
          "| NHWC s/batch | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    out = []
    for c in a.configs:
        r = bench(c, a.steps, a.rounds, a.device)
        out.append(r)
        print(f"| {c} | {'x'.join(map(str, r['batch']))} | {r['nchw_s_per_step']} | {r['nhwc_s_per_step']} | "
              f"**{r['ratio_nchw_over_nhwc']}x** | {r['eval_max_abs_diff']:.1e} | {'x'.join(map(str, r['infer_batch']))} "
              f"| {r['nchw_s_per_batch']} | {r['nhwc_s_per_batch']} | **{r['infer_ratio_nchw_over_nhwc']}x** |", flush=True)
    for ck in a.predict:
        r = bench_predictor(ck, a.cache, a.case_days, a.rounds)
        out.append(r)
        print(f"predictor {r['family']} {ck}: {r['case_days']} case-days ({r['slices']} slices): NCHW "
              f"{r['nchw_s_per_case_day']} s vs NHWC {r['nhwc_s_per_case_day']} s per case-day, "
              f"**{r['ratio_nchw_over_nhwc']}x**; max |diff| {r['max_abs_diff']:.1e}", flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
