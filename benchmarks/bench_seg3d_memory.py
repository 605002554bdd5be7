"""Peak memory (and time) of training and inference per 3D architecture at the GPU config's sizes, batch 1.

Training step: AdamW, forward, BCE + Dice, backward, step on one ``data.patch`` crop (GPU config: 80 x 160 x
160). Inference: the Gaussian sliding window (window = patch, ``predict.overlap``) over the largest raw
geometry at 1.5 mm/px (360 x 310 x 144, i.e. (144, 310, 360)), inference mode.

Every measurement runs in a fresh subprocess. On CUDA: ``torch.cuda.max_memory_allocated`` after a reset.
On CPU: the process's peak resident set (VmHWM, reset through /proc/self/clear_refs after the model, the
optimiser and the inputs exist) minus the resident set at that point, i.e. the memory the step itself needs
(activations, gradients, optimiser state, oneDNN buffers, sliding-window accumulators). CPU numbers are not
GPU numbers (no cuDNN workspaces, other conv algorithms) but rank the architectures alike.

Full-size CPU runs of the heavier nets take minutes each on 2 cores, so ``--scales`` measures each net on
in-plane-shrunk sizes and extrapolates linearly in voxel count (activation memory is linear in voxels for
fully convolutional nets); ``--full`` also measures the full size directly for the named archs, which checks
the extrapolation. Inference on CPU stops after ``--windows`` windows: the peak is reached once the
accumulators exist and one window has run (``--windows 0`` runs the whole volume).

    python benchmarks/bench_seg3d_memory.py [--archs segresnet unet dynunet capsnet] [--scales 0.25 0.5]
        [--full segresnet unet dynunet] [--json out.json]

Measured on this 2-core CPU (fp32, 2 threads, torch 2.14.1, MONAI 1.6.1; other jobs were running, so the
seconds are only comparable within a column). GPU-config widths: SegResNet init_filters 32 (group norm), UNet
channels 32-256 with 2 residual units, DynUNet filters 32-256 (instance norm), capsnet 16 atoms, kernel 5
(the published plan); 4 levels each. Training: one 80 x 160 x 160 patch, batch 1, AdamW. Inference: the
144 x 310 x 360 volume, window 80 x 160 x 160, overlap 0.5 (36 windows)::

    arch       params   train peak GiB   train step s    infer peak GiB   infer s (first 2 windows)
    segresnet  18.8 M        4.70             131             1.63             76
    unet        4.7 M        1.47              23             0.65             14 (all 36 windows: 0.69 GiB, 51 s)
    dynunet     5.6 M        6.76             134             1.90             39
    capsnet     7.4 M      ~15.1 (extrap.)    54 at 80x80x80  4.73             88

capsnet training was not run at full size (an estimated 15 GiB on a shared 23 GiB machine): the number is the
linear fit through 80x40x40 (1.34 GiB) and 80x80x80 (4.10 GiB); the same fit predicted the measured full-size
training peaks of the others within -5 % (segresnet), -3 % (dynunet) and +15 % (unet). Inference after 2
windows vs the whole volume (unet): 0.65 vs 0.69 GiB (+7 %). The capsule net's "tenth of the memory of a UNet"
(Avesta et al.) does not hold here: dynamic routing keeps votes of (types_in x types_out x atoms) channels at
full and half resolution for each of 3 iterations for the backward pass, ~10x the UNet's activations.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "seg3d" / "gpu_segresnet.yaml"
INFER_RAW = (144, 310, 360)  # the largest real geometry; at 1.5 mm/px its training shape is the same
WIDTH = {"segresnet": 32, "unet": 32, "dynunet": 32, "capsnet": 16}  # capsnet: atoms (the published 16)
KWARGS = {"capsnet": {"kernel": 5}}
# SegResNet as the GPU config (group norm); UNet/DynUNet with instance norm (MONAI's UNet cannot group-normalise
# its 3-channel top layer; nnU-Net uses instance norm); capsnet has no norm layers
NORM = {"segresnet": None, "unet": "instance", "dynunet": "instance", "capsnet": "instance"}


class _Stop(Exception):
    pass


def _status() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def child(arch: str, mode: str, patch, volume, overlap: float, windows: int, threads: int) -> dict:
    import torch

    from kaggle_kit.env import setup_offline

    setup_offline()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    from kaggle_kit.config import load_config
    from kaggle_kit.families.seg3d.model import build_net3d
    from kaggle_kit.losses import build_loss

    cfg = load_config(CONFIG)
    m = cfg["model"]
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    net = build_net3d(arch, filters=WIDTH[arch], levels=m["levels"], norm=NORM[arch] or m["norm"], dropout=m["dropout"],
                      roi=tuple(patch), overlap=overlap, sw_batch_size=1, **KWARGS.get(arch, {})).to(dev)
    params = sum(p.numel() for p in net.parameters())
    res = {"arch": arch, "mode": mode, "params": params, "device": "cuda" if cuda else "cpu", "threads": threads}
    if mode == "train":
        net.train()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        loss_fn = build_loss(cfg["loss"])
        x = torch.randn(1, 1, *patch, device=dev)
        y = (torch.rand(1, 3, *patch, device=dev) > 0.9).float()
        res["shape"] = list(patch)
    else:
        net.eval()
        x = torch.randn(1, 1, *volume, device=dev)
        res["shape"] = list(volume)
        res["window"] = list(patch)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _status()["VmRSS"]
        _reset_peak()
    t0 = time.perf_counter()
    if mode == "train":
        with torch.autocast(dev.type, enabled=cuda):
            out = net(x)
        loss = loss_fn(out.float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
    else:
        calls = [0]
        fwd = net.forward_padded

        def counted(t):
            calls[0] += 1
            if windows and calls[0] > windows:
                raise _Stop
            return fwd(t)

        net.forward_padded = counted
        try:
            with torch.inference_mode(), torch.autocast(dev.type, enabled=cuda):
                torch.sigmoid(net.sliding_window(x).float())
            res["complete"] = True
        except _Stop:
            res["complete"] = False
        res["windows_run"] = min(calls[0], windows) if windows else calls[0]
    if cuda:
        torch.cuda.synchronize()
        res["peak_bytes"] = torch.cuda.max_memory_allocated() - base
    else:
        res["peak_bytes"] = _status()["VmHWM"] - base
    res["seconds"] = time.perf_counter() - t0
    return res


def _run_child(arch, mode, patch, volume, a) -> dict:
    cmd = [sys.executable, __file__, "--child", arch, mode, json.dumps([list(patch), list(volume)]),
           "--overlap", str(a.overlap), "--windows", str(a.windows), "--threads", str(a.threads)]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        return {"arch": arch, "mode": mode, "error": p.stderr.strip().splitlines()[-1] if p.stderr else str(p.returncode)}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _scaled(shape, s: float, div: int = 8):
    d, h, w = shape
    return d, max(div, round(h * s / div) * div), max(div, round(w * s / div) * div)


def _voxels(shape) -> int:
    return int(shape[0]) * int(shape[1]) * int(shape[2])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=["segresnet", "unet", "dynunet", "capsnet"])
    ap.add_argument("--scales", nargs="*", type=float, default=[0.25, 0.5],
                    help="in-plane shrink factors measured and extrapolated to full size (none: full only)")
    ap.add_argument("--full", nargs="*", default=[], help="archs also measured directly at full size")
    ap.add_argument("--modes", nargs="+", default=["train", "infer"])
    ap.add_argument("--patch", nargs=3, type=int, default=None, help="d h w; default: the GPU config's data.patch")
    ap.add_argument("--overlap", type=float, default=None, help="default: the GPU config's predict.overlap")
    ap.add_argument("--windows", type=int, default=2, help="CPU inference: stop after N windows (0 = all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        patch, volume = json.loads(a.child[2])
        print(json.dumps(child(a.child[0], a.child[1], patch, volume, a.overlap, a.windows, a.threads)))
        return 0
    os.environ.setdefault("KAGGLE_KIT_NO_PROGRESS", "1")
    sys.path.insert(0, str(ROOT))
    from kaggle_kit.config import load_config

    cfg = load_config(CONFIG)
    patch = tuple(a.patch or cfg["data"]["patch"])
    a.overlap = cfg["predict"]["overlap"] if a.overlap is None else a.overlap
    rows = []
    print(f"patch {patch}, inference volume {INFER_RAW}, overlap {a.overlap}, batch 1", flush=True)
    for arch in a.archs:
        for mode in a.modes:
            full = (patch, INFER_RAW)
            pts = []
            for s in a.scales:
                shp = (_scaled(patch, s), _scaled(INFER_RAW, s))
                r = _run_child(arch, mode, *shp, a)
                rows.append(dict(r, scale=s))
                if "error" not in r:
                    pts.append((_voxels(shp[0 if mode == "train" else 1]), r["peak_bytes"]))
                print(json.dumps(rows[-1]), flush=True)
            est = None
            if len(pts) >= 2:
                (v0, m0), (v1, m1) = pts[0], pts[-1]
                slope = (m1 - m0) / max(v1 - v0, 1)
                nv = _voxels(full[0 if mode == "train" else 1])
                est = m1 + slope * (nv - v1)
                rows.append({"arch": arch, "mode": mode, "scale": 1.0, "extrapolated": True, "peak_bytes": est})
                print(json.dumps(rows[-1]), flush=True)
            if arch in a.full:
                r = _run_child(arch, mode, *full, a)
                rows.append(dict(r, scale=1.0))
                print(json.dumps(rows[-1]), flush=True)
    print("\narch       mode   size                 peak GiB  (how)            seconds  params")
    for r in rows:
        if "error" in r:
            print(f"{r['arch']:10s} {r['mode']:6s} error: {r['error']}")
            continue
        how = "extrapolated" if r.get("extrapolated") else f"measured x{r['scale']}"
        shape = "x".join(map(str, r.get("shape", ["full"])))
        print(f"{r['arch']:10s} {r['mode']:6s} {shape:20s} {r['peak_bytes'] / 2**30:8.2f}  {how:16s} "
              f"{r.get('seconds', float('nan')):8.1f}  {r.get('params', '')}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
