"""Hooks: export of self-describing inference checkpoints, plain-data training checkpoints, a CSV metrics log
and the step timer."""
from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from kaggle_kit.utils import atomic_path
from kaggle_kit.engine.checkpoint import save_inference_checkpoint, training_state_from_plain, training_state_to_plain

__all__ = ["CSVLogHook", "ExportHook", "PlainStateHook", "StepTimerHook", "ema_net", "unwrap_net"]


def unwrap_net(runner):
    model = runner.model
    model = getattr(model, "module", model)  # DDP wrapper
    return model.net


def ema_net(runner):
    """The averaged net of an EMAHook, if the run has one."""
    for h in runner.hooks:
        if type(h).__name__ == "EMAHook" and hasattr(h, "ema_model"):
            return h.ema_model.module.net
    return None


class ExportHook(Hook):
    """Writes ``best.pth`` (best validation ``key``) and ``last.pth`` inference checkpoints.

    Priority ABOVE_NORMAL: after validation it runs before EMAHook swaps the averaged weights back, so
    with EMA the exported weights are the averaged ones that were just validated.
    """

    priority = "ABOVE_NORMAL"

    def __init__(self, meta: dict, key: str = "val/score"):
        self.meta = meta
        self.key = key
        self.best = -math.inf

    def _state(self, runner) -> Path:
        return Path(runner.work_dir) / "best.json"

    def before_train(self, runner) -> None:
        p = self._state(runner)
        if p.is_file():  # resumed run: keep the best score of the interrupted one
            self.best = json.loads(p.read_text()).get("score", -math.inf)

    def _export(self, runner, name: str, metrics: dict | None, net=None) -> None:
        meta = dict(self.meta, epoch=runner.epoch, iter=runner.iter,
                    val={k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))})
        save_inference_checkpoint(Path(runner.work_dir) / name, (net or unwrap_net(runner)).state_dict(), meta)

    def after_val_epoch(self, runner, metrics=None) -> None:
        if not is_main_process() or not metrics:
            return
        score = float(metrics.get(self.key, -math.inf))
        self._export(runner, "last.pth", metrics)
        if score > self.best:
            self.best = score
            self._export(runner, "best.pth", metrics)
            self._state(runner).write_text(json.dumps({"score": score, "epoch": runner.epoch}))
            runner.logger.info(f"exported best.pth ({self.key}={score:.4f}, epoch {runner.epoch})")

    def after_train(self, runner) -> None:
        if not is_main_process():
            return
        if self.best == -math.inf:  # no validation (fold=all): export the final (EMA) weights
            net = ema_net(runner)
            self._export(runner, "last.pth", None, net)
            self._export(runner, "best.pth", None, net)
            runner.logger.info("exported best.pth/last.pth (final weights, no validation)")


class PlainStateHook(Hook):
    """Training checkpoints as plain data (``torch.load(weights_only=True)`` reads them, see
    :mod:`kaggle_kit.engine.checkpoint`): converts the checkpoint dict just before mmengine saves it, and back
    right after a resume loaded it. Priority VERY_LOW: the last to touch a checkpoint being saved (after
    EMAHook adds its state)."""

    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        plain_state = training_state_to_plain(checkpoint)
        checkpoint.clear()
        checkpoint.update(plain_state)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        restored = training_state_from_plain(checkpoint)
        checkpoint.clear()
        checkpoint.update(restored)


class CSVLogHook(Hook):
    """Appends one row per epoch to ``metrics.csv``: epoch, mean train loss, lr, validation metrics."""
    priority = "BELOW_NORMAL"

    def __init__(self):
        self._loss_sum = 0.0
        self._n = 0
        self._pending: dict | None = None

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if outputs and "loss" in outputs:
            v = outputs["loss"]
            self._loss_sum += float(v.detach() if hasattr(v, "detach") else v)
            self._n += 1

    def after_train_epoch(self, runner) -> None:
        lr = runner.optim_wrapper.get_lr()
        lr = float(next(iter(lr.values()))[0]) if isinstance(lr, dict) else float("nan")
        # runner.epoch counts finished epochs only after this hook: +1 gives the 1-based epoch just done
        self._pending = {"epoch": runner.epoch + 1, "train_loss": self._loss_sum / max(self._n, 1), "lr": lr}
        self._loss_sum, self._n = 0.0, 0
        # mmengine validates every val_interval epochs from val_begin, and always after the last epoch
        ep, loop = runner.epoch + 1, runner.train_loop
        val_int, val_begin = max(getattr(loop, "val_interval", 1), 1), getattr(loop, "val_begin", 1)
        will_val = runner.val_loop is not None and ep >= val_begin and (
            ep % val_int == 0 or ep == getattr(loop, "max_epochs", None))
        if not will_val:
            self._write(runner, {})

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._write(runner, metrics or {})

    def _write(self, runner, metrics: dict) -> None:
        if not is_main_process() or self._pending is None:
            return
        row = dict(self._pending, **{k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
        self._pending = None
        p = Path(runner.work_dir) / "metrics.csv"
        rows: list[dict] = []
        if p.is_file():
            with open(p, newline="") as f:
                rows = list(csv.DictReader(f))
        keys = list(dict.fromkeys([k for r in rows for k in r] + list(row)))
        if rows and set(row) <= set(rows[0]):  # same columns: append
            with open(p, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=list(rows[0]), restval="").writerow(row)
            return
        # new columns (the first validation after epochs without one): rewrite with the union, atomically
        with atomic_path(p) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys, restval="")
            w.writeheader()
            w.writerows(rows + [row])


class StepTimerHook(Hook):
    """Wall seconds (and the learning rate) of every training iteration and of the whole training, written to ``timing.json`` in the
    work folder when training ends: what a time budget's calibration and re-plan read (``kaggle_kit.plan``)."""

    priority = "VERY_LOW"

    def __init__(self):
        self.steps: list[float] = []
        self.lrs: list[float] = []
        self._t = self._t0 = None

    def before_train(self, runner) -> None:
        self._t0 = time.perf_counter()

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        lr = runner.optim_wrapper.get_lr()
        self.lrs.append(float(next(iter(lr.values()))[0]) if isinstance(lr, dict) else float("nan"))
        self._t = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.steps.append(time.perf_counter() - self._t)

    def after_train(self, runner) -> None:
        if not is_main_process():
            return
        total = time.perf_counter() - self._t0
        dl = runner.train_dataloader
        out = {"iters": len(self.steps), "train_seconds": round(total, 3), "samples": len(dl.dataset),
               "batch_size": int(dl.batch_size or 1),
               "iter_seconds": [round(s, 5) for s in self.steps], "iter_lr": [float(f"{v:.6g}") for v in self.lrs]}
        path = Path(runner.work_dir) / "timing.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(out))
        tmp.replace(path)
