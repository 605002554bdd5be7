"""Training of the crop detector on one fold (or ``fold="all"``): ultralytics YOLO from a yaml, from scratch.

Offline by construction: the model is built from a yaml name shipped inside ultralytics (``yolov8n.yaml``,
``yolo11s.yaml``...; never a ``.pt`` name, which would download), ``pretrained=False``, ``plots=False`` by
default, and :func:`kaggle_kit.env.setup_offline` runs first (``YOLO_OFFLINE``, a local font for the
dataset check). ``train.precision``: ``fp32`` (amp=False), ``bf16`` (amp="bf16": ultralytics skips its AMP
check) or ``fp16`` (amp=True: ultralytics' AMP check wants ``yolo26n.pt``; offline it is skipped with a
warning, online it would DOWNLOAD it, so the configs here use bf16 on GPU).

Outputs in ``<work_root>/det_yolo/<exp>/fold<K>/``: ``train.txt``/``val.txt``/``data.yaml``, ultralytics'
run folder ``yolo/`` (``weights/{best,last}.pt`` training checkpoints, ``results.csv``, ``args.yaml``) and
the exported inference checkpoints ``best.pth``/``last.pth``: the state dict plus plain meta (the
ultralytics model dict, image size, the data section, default post-processing), loaded with
``torch.load(weights_only=True)``. ultralytics' own ``.pt`` files unpickle code (``weights_only=False``):
they are read here only right after this run wrote them, and are not meant to be shipped or downloaded.
For the same reason ``--resume`` is refused for the detector (naming its ``last.pt``): resuming would load a
file left in the work folder by an earlier run, or put there by anyone; the fold trains again instead.
"""
from __future__ import annotations

from pathlib import Path

from kaggle_kit.data.cache import Cache
from kaggle_kit.paths import work_dir as make_work_dir
from kaggle_kit.families.det_yolo.dataset import dataset_root, write_fold_lists, write_yolo_dataset
from kaggle_kit.engine.checkpoint import CheckpointError, save_inference_checkpoint
from kaggle_kit.env import setup_offline

__all__ = ["FAMILY", "PRECISION", "export_checkpoints", "train", "ultralytics_args"]

FAMILY = "det_yolo"
PRECISION = {"fp32": False, "bf16": "bf16", "fp16": True}


def ultralytics_args(cfg: dict, data_yaml: Path, wd: Path, has_val: bool) -> dict:
    """The keyword arguments of ``YOLO.train`` from the config (``train.overrides`` last)."""
    t, m = cfg["train"], cfg["model"]
    if t["precision"] not in PRECISION:
        raise KeyError(f"unknown precision {t['precision']!r}; options: {sorted(PRECISION)}")
    device = t["device"]
    if device is None:
        import torch

        device = "0" if torch.cuda.is_available() else "cpu"
    args = {
        "data": str(data_yaml), "epochs": int(t["epochs"]), "imgsz": int(m["imgsz"]), "batch": int(t["batch_size"]),
        "device": device, "workers": int(t["num_workers"]), "amp": PRECISION[t["precision"]],
        "plots": bool(t["plots"]), "project": str(wd.resolve()), "name": "yolo", "exist_ok": True,
        "pretrained": False, "val": has_val, "seed": int(t["seed"]), "deterministic": bool(t["deterministic"]),
        "optimizer": t["optimizer"], "lr0": float(t["lr"]), "patience": int(t["patience"]),
        "close_mosaic": int(t["close_mosaic"]), "single_cls": True, "cache": t["cache_images"],
        "verbose": bool(t["verbose"]), "warmup_epochs": float(t["warmup_epochs"]),
        # the three channels are neighbouring slices, not colours: no hue/saturation jitter
        "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": float(t["hsv_v"]), "mosaic": float(t["mosaic"]),
        "fliplr": float(t["fliplr"]), "degrees": float(t["degrees"]), "translate": float(t["translate"]),
        "scale": float(t["scale"]),
    }
    if t.get("time_h") is not None:  # a time budget's plan: ultralytics fits its epochs and schedule to it
        args["time"] = float(t["time_h"])
    args.update(t.get("overrides") or {})
    return args


def export_checkpoints(wd: Path, meta: dict) -> list[Path]:
    """``yolo/weights/{best,last}.pt`` -> ``best.pth``/``last.pth`` (state dict + plain meta); returns them.

    ``best.pt`` missing (no validation) -> ``best.pth`` is the final weights.
    """
    import torch

    weights = Path(wd) / "yolo" / "weights"
    out = []
    for name in ("last", "best"):
        src = weights / f"{name}.pt"
        if not src.is_file():
            src = weights / "last.pt"
        if not src.is_file():
            raise FileNotFoundError(f"{weights}: no ultralytics checkpoint to export")
        # our own run's file, just written: ultralytics pickles modules, so weights_only=False is needed here
        ck = torch.load(src, map_location="cpu", weights_only=False)
        model = ck["ema"] if ck.get("ema") is not None else ck["model"]
        sd = {k: v for k, v in model.float().state_dict().items()}
        m = dict(meta, model_cfg=model.yaml, epoch=int(ck.get("epoch", -1)),
                 val={k: float(v) for k, v in (ck.get("train_metrics") or {}).items()
                      if isinstance(v, (int, float))})
        out.append(save_inference_checkpoint(Path(wd) / f"{name}.pth", sd, m))
    return out


def train(cfg: dict, fold, exp: str, resume: bool = False) -> Path:
    """Write the YOLO dataset (once per exp), train one fold, export best.pth/last.pth; returns the work dir."""
    setup_offline()
    from ultralytics import YOLO

    cache = Cache(cfg["cache"])
    wd = make_work_dir(cfg["work_root"], FAMILY, exp, fold)
    last = wd / "yolo" / "weights" / "last.pt"
    if resume and last.is_file():
        raise CheckpointError(f"{last}: --resume refused for the detector: ultralytics' training checkpoints are "
                              "pickled models and loading one runs code from the file; train this fold again "
                              "without --resume")
    if resume:
        print(f"no {last} to resume from: training from scratch")
    wd.mkdir(parents=True, exist_ok=True)
    root = dataset_root(cfg["work_root"], exp)
    meta_ds = write_yolo_dataset(cache, root, cfg["data"])
    data_yaml = write_fold_lists(cache, root, wd, fold, meta_ds)
    name = cfg["model"]["yaml"]
    if not str(name).endswith((".yaml", ".yml")):
        raise ValueError(f"model.yaml={name!r}: give a model yaml (e.g. yolov8n.yaml); a .pt name downloads weights")
    YOLO(name, task="detect").train(**ultralytics_args(cfg, data_yaml, wd, has_val=fold != "all"))
    meta = {"family": FAMILY, "exp": exp, "fold": fold, "task": "det", "nc": 1, "names": ["roi"],
            "model_yaml": cfg["model"]["yaml"], "imgsz": int(cfg["model"]["imgsz"]), "data": cfg["data"],
            "predict": cfg["predict"], "fingerprint": cache.fingerprint()}
    export_checkpoints(wd, meta)
    return wd
