"""GPU check: a CUDA training step with AMP for every family and inference throughput, in one run.

    python benchmarks/bench_gpu.py --work /tmp/gpu_bench --out gpu_bench.json      # on a CUDA machine
    python benchmarks/bench_gpu.py --work /tmp/gpu_smoke --smoke                    # CPU smoke (tiny sizes)

Two parts, each family failing on its own without stopping the rest:

1. Model level, per GPU config: the family's own builder, channels_last, fp16 autocast + GradScaler (what
   mmengine's AmpOptimWrapper does), ``--steps`` timed training steps at the config's batch and canvas
   after warm-up, then eval-mode inference images/s at the predict batch size; peak CUDA memory for each.
2. End to end, through the same tools a user runs: synthetic data at full size -> prepare -> for every GPU
   config ``tools/train.py --fold 0`` for one short epoch (the real Runner: AMP, EMA, checkpoints, metric)
   then ``tools/predict.py --split oof --folds 0``; wall times and seconds per case-day of prediction.

Writes a JSON with every number (``--out``) and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = {
    "seg25d_unetpp_convnext_512": "configs/seg25d/unetpp_convnext_512.yaml",
    "seg25d_upernet_mmseg_convnext_448": "configs/seg25d/upernet_mmseg_convnext_448.yaml",
    "cls_effnet_b2": "configs/cls/gpu_effnet_b2.yaml",
    "seg3d_segresnet": "configs/seg3d/gpu_segresnet.yaml",
    "det_yolov8s": "configs/det_yolo/gpu_yolov8s.yaml",
}


def _sync(dev):
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _tensors(out):
    import torch
    if torch.is_tensor(out):
        return [out]
    vals = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else []
    return [t for v in vals for t in _tensors(v)]


def model_level(name: str, cfg: dict, dev, steps: int, smoke: bool) -> dict:
    """Timed AMP training steps and inference throughput of one config's network."""
    import torch
    fam = cfg["family"]
    d, t, p = cfg["data"], cfg["train"], cfg["predict"]
    if fam == "det_yolo":
        from ultralytics.nn.tasks import DetectionModel
        net = DetectionModel(cfg["model"]["yaml"], ch=3, nc=1, verbose=False)
        size = 64 if smoke else int(cfg["model"]["imgsz"])
        shape = (3, size, size)

        def loss_of(out):  # training-mode heads return nested lists/dicts of tensors
            return sum(o.float().mean() for o in _tensors(out))
    elif fam == "seg3d":
        from kaggle_kit.families.seg3d.model import build_net
        net = build_net(cfg["model"], d, p)
        shape = (1, *([16, 32, 32] if smoke else d["patch"]))

        def loss_of(out):
            return out.float().sigmoid().mean()
    else:
        if fam == "cls":
            from kaggle_kit.families.cls.train import build_net
        else:
            from kaggle_kit.families.seg25d.train import build_net
        net = build_net(cfg["model"], d["k"])
        shape = (d["k"], *([64, 64] if smoke else d["size"]))

        def loss_of(out):
            outs = out if isinstance(out, (list, tuple)) else [out]
            return sum(o.float().sigmoid().mean() for o in outs if torch.is_tensor(o))
    bs = 2 if smoke else int(t["batch_size"])
    pbs = 2 if smoke else int(p.get("batch_size", p.get("sw_batch_size", bs)) or bs)
    cl = dev.type == "cuda" and len(shape) == 3
    net = net.to(dev)
    if cl:
        net = net.to(memory_format=torch.channels_last)
    params = sum(x.numel() for x in net.parameters())
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    x = torch.randn(bs, *shape, device=dev)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
            loss = loss_of(net(x))
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    for _ in range(3):
        step()
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    _sync(dev)
    dt_train = (time.perf_counter() - t0) / steps
    assert torch.isfinite(loss.detach().float()), f"{name}: non-finite loss under AMP"
    mem_train = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else None
    opt = scaler = None  # free optimizer state before measuring inference
    net.eval()
    xi = torch.randn(pbs, *shape, device=dev)
    if cl:
        xi = xi.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
        for _ in range(3):
            net(xi)
        _sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(steps):
            net(xi)
        _sync(dev)
    dt_inf = (time.perf_counter() - t0) / steps
    mem_inf = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else None
    net = x = xi = None
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return {"params_M": round(params / 1e6, 2), "input": list(shape), "train_batch": bs,
            "train_step_s": round(dt_train, 4), "train_samples_per_s": round(bs / dt_train, 1),
            "train_peak_gib": None if mem_train is None else round(mem_train, 2), "infer_batch": pbs,
            "infer_samples_per_s": round(pbs / dt_inf, 1),
            "infer_peak_gib": None if mem_inf is None else round(mem_inf, 2), "amp_fp16": amp,
            "channels_last": cl}


def _last_json(log: Path) -> dict:
    for line in reversed(Path(log).read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return {}
    return {}


def run(cmd, log, env=None, timeout=None) -> tuple[int, float]:
    t0 = time.time()
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(map(str, cmd))}\n")
        fh.flush()
        rc = subprocess.run([str(c) for c in cmd], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                            env=dict(os.environ, **(env or {})), timeout=timeout).returncode
    return rc, time.time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/gpu_bench")
    ap.add_argument("--out", default=None, help="JSON with every number (default WORK/gpu_bench.json)")
    ap.add_argument("--log", default=None, help="log of the end-to-end tool runs (default WORK/e2e.log)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cases", type=int, default=4, help="synthetic train cases for the end-to-end part")
    ap.add_argument("--max-days", type=int, default=2, help="scan days per synthetic case")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on CPU: checks this script, no numbers")
    ap.add_argument("--only", nargs="*", default=None, help="subset of config names")
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--e2e-only", nargs="*", default=None, help="subset of the configs for the end-to-end part")
    a = ap.parse_args()
    from kaggle_kit.env import setup_offline
    setup_offline()
    import torch

    from kaggle_kit.config import load_config
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = Path(a.out) if a.out else work / "gpu_bench.json"
    log = Path(a.log) if a.log else work / "e2e.log"
    dev = torch.device("cuda" if torch.cuda.is_available() and not a.smoke else "cpu")
    res = {"device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu", "torch": torch.__version__,
           "model": {}, "e2e": {}}

    def save():
        out.write_text(json.dumps(res, indent=1))

    names = a.only or list(CONFIGS)
    for n in names:
        try:
            cfg = load_config(ROOT / CONFIGS[n])
            res["model"][n] = model_level(n, cfg, dev, 3 if a.smoke else a.steps, a.smoke)
        except Exception as e:  # one family failing does not hide the others
            res["model"][n] = {"error": f"{type(e).__name__}: {e}", "tb": traceback.format_exc()[-1500:]}
        print(n, json.dumps({k: v for k, v in res["model"][n].items() if k != "tb"}), flush=True)
        save()

    if not a.skip_e2e:
        data, cache = work / "data", work / "cache"
        scale = "0.25" if a.smoke else "1.0"
        py = sys.executable
        env = {"KAGGLE_KIT_NO_PROGRESS": "1"}
        rc, dt = run([py, "tools/make_synthetic.py", data, "--train-cases", a.cases, "--test-cases", 1,
                      "--size-scale", scale, "--max-days", a.max_days, "--overwrite"], log, env)
        res["e2e"]["make_synthetic_s"] = round(dt, 1)
        rc2, dt2 = run([py, "tools/prepare.py", "--data-root", data, "--cache", cache, "--folds", 2], log, env)
        res["e2e"]["prepare_s"] = round(dt2, 1)
        if rc or rc2:
            res["e2e"]["error"] = f"data stage failed ({rc}, {rc2}); see {log}"
            save()
            return 1
        for n in a.e2e_only or names:
            cfg = CONFIGS[n]
            common = [f"exp=gpu_{n}", f"cache={cache}", f"work_root={work / 'work_dirs'}",
                      f"pred_root={work / 'preds'}", "train.epochs=1", "train.num_workers=4"]
            fam = n.split("_")[0]
            if fam == "seg3d":
                common.append("train.val_interval=1")
            if a.smoke:
                common += {"seg3d": ["data.patch=[16,32,32]", "train.batch_size=1"],
                           "det": ["model.imgsz=64", "train.batch_size=4", "predict.batch_size=4", "train.precision=fp32"],
                           }.get(fam, ["data.size=[64,64]", "train.batch_size=2", "train.val_batch_size=2",
                                       "predict.batch_size=2"])
            r: dict = {}
            rc, dt = run([py, "tools/train.py", cfg, "--fold", 0, *common], log, env)
            r["train_rc"], r["train_1epoch_s"] = rc, round(dt, 1)
            if rc == 0:
                rc, dt = run([py, "tools/predict.py", cfg, "--split", "oof", "--folds", 0, *common], log, env)
                r["predict_rc"], r["predict_oof_s"] = rc, round(dt, 1)
                n_oof = _last_json(log).get("case_days")  # predict.py's last line names what it wrote
                if rc == 0 and n_oof:
                    r["oof_case_days"] = n_oof
                    r["predict_s_per_case_day_incl_startup"] = round(dt / n_oof, 2)
            res["e2e"][n] = r
            print(n, json.dumps(r), flush=True)
            save()
    save()
    print("\n| config | train step (s) | train samples/s | train peak GiB | infer samples/s | infer peak GiB |")
    print("|---|---|---|---|---|---|")
    for n, m in res["model"].items():
        if "error" in m:
            print(f"| {n} | error: {m['error'][:80]} | | | | |")
        else:
            print(f"| {n} | {m['train_step_s']} | {m['train_samples_per_s']} | {m['train_peak_gib']} | "
                  f"{m['infer_samples_per_s']} | {m['infer_peak_gib']} |")
    print(json.dumps({k: v for k, v in res.items() if k != "model"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
