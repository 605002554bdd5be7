"""Training to a planned length: ``train.iters`` N runs N iterations (rounded to whole epochs of equal size),
the learning-rate schedule ends where they end, and ``timing.json`` records every step."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from kaggle_kit.engine.runner import training_length
from tests.conftest import ROOT, TINY_SEG, run_tool


@pytest.mark.parametrize("n,bs,iters,expect", [
    (100, 16, None, (5, 6)),   # iters null: the config's epochs of full passes (100 // 16 = 6 iterations)
    (100, 16, 3, (1, 3)),      # under one pass: one epoch of a 3-batch subset
    (100, 16, 40, (7, 6)),     # round(40 / 6) = 7 epochs of ceil(40 / 7) = 6 (full) iterations
    (1000, 16, 7, (1, 7)),
    (64, 16, 1000, (250, 4)),  # more than the epochs: whole passes, as many as the plan buys
    (5, 16, 2, (2, 1)),        # fewer samples than a batch: one iteration a pass, two passes
])
def test_training_length_by_hand(n, bs, iters, expect):
    t = {"epochs": 5, "batch_size": bs, "iters": iters}
    epochs, per = training_length(n, t)
    assert (epochs, per) == expect
    if iters is not None:  # never fewer iterations than planned, at most one per epoch more
        assert iters <= epochs * per or per == max(1, n // bs)
        assert epochs * per - iters < epochs or per == max(1, n // bs)


def test_training_length_rejects_zero():
    with pytest.raises(ValueError, match="train.iters"):
        training_length(100, {"epochs": 1, "batch_size": 4, "iters": 0})


def test_planned_iterations_run_and_the_schedule_ends_with_them(synth_cache, tmp_path):
    """A tiny 2.5D fold at batch 4 with train.iters=6: exactly the planned steps ran (timing.json, metrics.csv),
    and the cosine schedule reached its floor (lr * 0.01) at the last step, not somewhere later."""
    cfg = ROOT / "configs/seg25d/tiny_cpu.yaml"
    ov = [f"cache={synth_cache}", f"work_root={tmp_path / 'work'}", f"pred_root={tmp_path / 'preds'}",
          *[o for o in TINY_SEG if not o.startswith("train.batch_size")], "train.batch_size=4",
          "train.iters=6", "train.warmup_iters=1", "train.log_interval=1", "train.lr=0.01"]
    run_tool("train.py", cfg, "--fold", 0, *ov)
    wd = tmp_path / "work/seg25d/tiny_cpu/fold0"
    timing = json.loads((wd / "timing.json").read_text())
    epochs, per = training_length(10**9, {"epochs": 1, "batch_size": 4, "iters": 6})  # data >> plan: 1 x 6
    assert timing["iters"] == epochs * per == 6 and len(timing["iter_seconds"]) == 6
    assert timing["batch_size"] == 4 and timing["samples"] > 6 * 4  # the fold's whole training set, not the subset
    assert all(s > 0 for s in timing["iter_seconds"]) and timing["train_seconds"] >= sum(timing["iter_seconds"])
    lrs = timing["iter_lr"]
    assert len(lrs) == 6 and max(lrs) <= 0.01 + 1e-9
    # a cosine over the 6 planned steps is near its floor at the last one (a schedule over the config's full
    # epoch, ~tens of steps on this cache, would still be at ~0.98 of its peak after 6)
    assert lrs[-1] < 0.2 * max(lrs)
    assert all(b <= a + 1e-12 for a, b in zip(lrs[1:], lrs[2:]))  # decreasing after the 1-step warm-up
    assert list(pd.read_csv(wd / "metrics.csv")["epoch"]) == [1]


def test_an_epoch_is_whole_batches(synth_cache, tmp_path):
    """A full pass runs samples // batch steps, the partial last batch dropped: the length the planner counts,
    and no batch of one sample (batch norm behind UPerNet's 1x1 pyramid pooling cannot train on one)."""
    cfg = ROOT / "configs/seg25d/tiny_cpu.yaml"
    bs = 7
    ov = [f"cache={synth_cache}", f"work_root={tmp_path / 'work'}", f"pred_root={tmp_path / 'preds'}",
          *[o for o in TINY_SEG if not o.startswith(("train.batch_size", "train.epochs"))],
          f"train.batch_size={bs}", "train.epochs=1", "train.iters=null", "train.log_interval=1"]
    run_tool("train.py", cfg, "--fold", 0, *ov)
    timing = json.loads((tmp_path / "work/seg25d/tiny_cpu/fold0/timing.json").read_text())
    n = timing["samples"]
    assert n % bs, f"the fold's {n} samples must leave a partial batch of {bs} for this test to mean anything"
    planned = training_length(n, {"epochs": 1, "batch_size": bs, "iters": None})[1]
    assert timing["iters"] == len(timing["iter_seconds"]) == n // bs == planned
