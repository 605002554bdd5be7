"""Build and run mmengine's Runner for one fold of a torch family.

Families provide the pieces (net, loss, datasets, validation metric, checkpoint meta); this module maps
the family config's ``train`` section onto the Runner: AMP (``AmpOptimWrapper``) on CUDA, bf16 autocast on a
CPU that has it natively (``train.cpu_bf16``), channels_last (NHWC for 2D nets, NDHWC for 3D ones; on CPU
too, see ``benchmarks/bench_channels_last.py``), EMA, checkpoints every epoch as plain data (``resume=True``
loads them with ``weights_only=True``), TensorBoard + JSON + CSV logs, DDP when launched by ``torchrun``
(gloo on CPU, nccl on CUDA).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from kaggle_kit.config import CONFIG_ROOT, parse_yaml
from kaggle_kit.engine.checkpoint import enable_resume_loader
from kaggle_kit.engine.hooks import CSVLogHook, ExportHook, PlainStateHook, StepTimerHook
from kaggle_kit.engine.model import TaskModel

__all__ = ["build_runner", "dist_launcher", "optim_wrapper_type", "seed_init", "train_defaults", "training_length"]


def train_defaults() -> dict:
    """The ``train:`` section every torch family's config starts from: ``configs/base_train.yaml``, the one
    place its keys, types and defaults are declared."""
    path = CONFIG_ROOT / "base_train.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the engine's train defaults are missing; train from a checkout of "
                                "the project (configs/ beside kaggle_kit/)")
    return parse_yaml(path.read_text(), str(path))["train"]


def seed_init(train_cfg: dict) -> int:
    """Seed python, numpy and torch (CUDA too) with ``train.seed`` before a family builds its net: the Runner
    seeds only when it starts, after the net's random init, which followed whatever ran earlier in the process
    (another fold, a test). Returns the seed."""
    import random

    import numpy as np
    import torch

    seed = int(train_cfg["seed"])  # every loaded config has it (configs/base_train.yaml)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def optim_wrapper_type(t: dict, cuda: bool) -> str:
    """mmengine optimiser wrapper for a resolved ``train`` section: AMP on CUDA (``amp``), bf16 autocast on a
    CPU with native bf16 (``cpu_bf16``; see ``kaggle_kit.engine.cpu_amp``), else plain fp32."""
    if cuda:
        return "AmpOptimWrapper" if t["amp"] else "OptimWrapper"
    if t.get("cpu_bf16"):
        from kaggle_kit.engine.cpu_amp import cpu_bf16_native, register_cpu_bf16_wrapper

        if cpu_bf16_native():
            print("[train] train.cpu_bf16: bf16 autocast for the training steps (native bf16 on this CPU)", flush=True)
            return register_cpu_bf16_wrapper()
        print("[train] train.cpu_bf16: this CPU has no native bf16 (AVX512-BF16/AMX); training in fp32", flush=True)
    return "OptimWrapper"


def dist_launcher() -> str:
    return "pytorch" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "none"


def training_length(n_samples: int, t: dict) -> tuple[int, int]:
    """(epochs, iterations per epoch) of a resolved ``train`` section on ``n_samples`` training samples.

    ``train.iters`` null: ``train.epochs`` full epochs. ``train.iters`` N (what a time budget plans): N
    iterations in all, as ``round(N / full epoch)`` epochs (at least 1) of ``ceil(N / epochs)`` iterations each,
    each epoch a fresh random subset when that is less than a full pass; warm-up and cosine end at N."""
    full = max(1, n_samples // max(1, int(t["batch_size"])))
    n = t.get("iters")
    if n is None:
        return int(t["epochs"]), full
    n = int(n)
    if n < 1:
        raise ValueError(f"train.iters must be >= 1 (or null for train.epochs), got {n}")
    epochs = max(1, round(n / full))
    return epochs, min(full, -(-n // epochs))


def _subset_sampler(dataset, samples: int, seed: int):
    """mmengine's DefaultSampler (shuffled, DDP-aware, reseeded per epoch) cut to ``samples`` per epoch over all
    ranks: an epoch of the planned length that still sees a new random subset each time."""
    import itertools

    from mmengine.dataset import DefaultSampler

    class _Subset(DefaultSampler):
        def __init__(self):
            super().__init__(dataset, shuffle=True, seed=seed)
            self.num_samples = min(self.num_samples, -(-samples // self.world_size))

        def __iter__(self):
            return itertools.islice(super().__iter__(), self.num_samples)

        def __len__(self):
            return self.num_samples

    return _Subset()


def _collate(batch):
    from mmengine.dataset import default_collate

    return default_collate(batch)


def build_runner(*, net, loss_fn, task: str, train_ds, val_ds, val_metric, train_cfg: dict, work_dir,
                 meta: dict, resume: bool = False, aux_weight: float = 0.0, experiment_name: str | None = None):
    import torch
    from mmengine.evaluator import Evaluator
    from mmengine.runner import Runner

    t = dict(train_defaults(), **{k: v for k, v in train_cfg.items() if v is not None or k == "grad_clip"})
    cuda = torch.cuda.is_available()
    launcher = dist_launcher()
    model = TaskModel(net, loss_fn, task=task, aux_weight=aux_weight, channels_last=bool(t["channels_last"]))
    if t["optimizer"] == "adamw":
        optimizer = dict(type="AdamW", lr=t["lr"], weight_decay=t["weight_decay"])
    elif t["optimizer"] == "sgd":
        optimizer = dict(type="SGD", lr=t["lr"], momentum=0.9, weight_decay=t["weight_decay"], nesterov=True)
    else:
        raise KeyError(f"unknown optimizer {t['optimizer']!r}; options: ['adamw', 'sgd']")
    optim_wrapper = dict(type=optim_wrapper_type(t, cuda), optimizer=optimizer)
    if t["grad_clip"]:
        optim_wrapper["clip_grad"] = dict(max_norm=float(t["grad_clip"]))
    epochs, per_epoch = training_length(len(train_ds), t)
    warm = min(int(t["warmup_iters"]), max(1, per_epoch * epochs // 4))
    sched = [dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=max(warm, 1))]
    if t["scheduler"] == "cosine":  # ends where the training ends: a shorter plan is a shorter schedule
        sched.append(dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end=epochs, T_max=epochs,
                          eta_min=t["lr"] * 0.01, convert_to_iter_based=True))
    elif t["scheduler"] != "constant":
        raise KeyError(f"unknown scheduler {t['scheduler']!r}; options: ['cosine', 'constant']")
    nw = int(t["num_workers"])
    n_full = max(1, len(train_ds) // max(1, t["batch_size"]))
    sampler = dict(type="DefaultSampler", shuffle=True) if per_epoch >= n_full else \
        _subset_sampler(train_ds, per_epoch * int(t["batch_size"]), int(t["seed"]))
    loader = dict(batch_size=t["batch_size"], num_workers=nw, persistent_workers=nw > 0,
                  sampler=sampler, collate_fn=_collate, pin_memory=cuda)
    # whole batches only (an epoch is n_full steps, as planned): a last batch of one sample breaks batch norm
    # behind a 1x1 pooling (UPerNet's pyramid pooling) in training; kept when the data is under one batch
    train_loader = dict(loader, drop_last=len(train_ds) >= int(t["batch_size"]))
    has_val = val_ds is not None and len(val_ds) > 0
    custom_hooks = [ExportHook(meta), CSVLogHook(), StepTimerHook(), PlainStateHook()]
    if t["ema"]:
        custom_hooks.insert(0, dict(type="EMAHook", momentum=float(t["ema_momentum"]), update_buffers=True))
    if launcher == "pytorch" and not cuda:
        # mmengine's init_dist calls torch.cuda.set_device unconditionally; on CPU start the gloo process
        # group ourselves (torchrun's env:// variables) so the Runner finds it initialised.
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="gloo")
    enable_resume_loader()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if experiment_name is None:  # unique per fold: mmengine keys its logger on this name (several folds per process)
        experiment_name = f"{work_dir.parent.name}_{work_dir.name}_{time.strftime('%Y%m%d_%H%M%S')}"
    runner = Runner(
        model=model,
        work_dir=str(work_dir),
        experiment_name=experiment_name,
        train_dataloader=dict(dataset=train_ds, **train_loader),
        val_dataloader=dict(dataset=val_ds, **dict(loader, batch_size=t["val_batch_size"],
                                                    sampler=dict(type="DefaultSampler", shuffle=False))) if has_val else None,
        val_evaluator=Evaluator([val_metric]) if has_val else None,
        # a planned length (train.iters) validates once, at its end: the OOF maps come from the last weights
        train_cfg=dict(by_epoch=True, max_epochs=epochs,
                       val_interval=epochs if t.get("iters") is not None else min(int(t["val_interval"]), epochs)),
        val_cfg=dict() if has_val else None,
        optim_wrapper=optim_wrapper,
        param_scheduler=sched,
        default_hooks=dict(
            checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=int(t["max_keep_ckpts"]), save_last=True),
            logger=dict(type="LoggerHook", interval=int(t["log_interval"])),
        ),
        custom_hooks=custom_hooks,
        visualizer=dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend"),
                                                         dict(type="TensorboardVisBackend")]),
        launcher=launcher,
        env_cfg=dict(cudnn_benchmark=cuda, dist_cfg=dict(backend="nccl" if cuda else "gloo")),
        randomness=dict(seed=int(t["seed"])),
        resume=resume,
        default_scope="mmengine",
        log_processor=dict(by_epoch=True),
        # on CPU, DDP must not be given device_ids (mmengine defaults them to [LOCAL_RANK]); the Runner
        # reads its wrapper settings from `cfg`
        cfg=None if (cuda or launcher == "none") else dict(model_wrapper_cfg=dict(
            type="MMDistributedDataParallel", broadcast_buffers=False, device_ids=None)),
    )
    return runner
