"""Resume never runs code from a checkpoint: training checkpoints are plain data, loaded with
``torch.load(weights_only=True)``; anything else is refused by name, and a genuine run still resumes."""
import csv

import numpy as np
import pytest

from kaggle_kit.engine.checkpoint import CheckpointError, training_state_from_plain, training_state_to_plain

from tests.conftest import ROOT, TINY_SEG


class _RunsCode:
    """Unpickling this runs ``exec`` (what a crafted checkpoint does)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _crafted(path, marker):
    import torch

    torch.save({"meta": {"epoch": 1, "iter": 3}, "state_dict": {}, "message_hub": _RunsCode(marker)}, path)
    return path


def test_crafted_training_checkpoint_is_refused_and_runs_nothing(tmp_path):
    from mmengine.runner.checkpoint import CheckpointLoader

    from kaggle_kit.engine.checkpoint import enable_resume_loader

    marker = tmp_path / "ran"
    ck = _crafted(tmp_path / "epoch_1.pth", marker)
    enable_resume_loader()  # what build_runner does before a resume
    with pytest.raises(CheckpointError, match=rf"{ck}: training checkpoint refused for resuming: it holds pickled"):
        CheckpointLoader.load_checkpoint(str(ck), map_location="cpu")
    assert not marker.exists()


def test_training_state_round_trips_through_weights_only(tmp_path):
    """mmengine's message hub (HistoryBuffers of numpy arrays), numpy values and nested containers -> plain data
    a weights_only load reads -> the same objects back."""
    from collections import OrderedDict

    import torch
    from mmengine.logging import HistoryBuffer

    hb = HistoryBuffer([0.5, 0.25, 0.125], [1, 2, 1], max_length=7)
    state = {"meta": {"epoch": 2, "seed": np.int64(5), "lr": np.float32(0.5), "eta": np.float64(1.5)},
             "message_hub": {"log_scalars": OrderedDict([("train/loss", hb)]),
                             "runtime_info": OrderedDict([("keep_ckpt_ids", [1, 2]), ("hist", np.arange(4.0))]),
                             "resumed_keys": OrderedDict([("train/loss", True)])},
             "optimizer": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 0.1, "betas": (0.9, 0.99)}]}}
    torch.save(training_state_to_plain(state), tmp_path / "s.pth")
    back = training_state_from_plain(torch.load(tmp_path / "s.pth", weights_only=True))
    got = back["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(got, HistoryBuffer) and got.max_length == 7
    for a, b in zip(got.data, hb.data):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert type(back["message_hub"]["runtime_info"]) is OrderedDict
    np.testing.assert_array_equal(back["message_hub"]["runtime_info"]["hist"], np.arange(4.0))
    assert back["meta"] == {"epoch": 2, "seed": 5, "lr": 0.5, "eta": 1.5}
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.99)
    with pytest.raises(TypeError, match=r"checkpoint\['meta'\]\['x'\]: a builtins.set in the training state"):
        training_state_to_plain({"meta": {"x": {1}}})


def test_resume_continues_a_genuine_run_and_refuses_a_crafted_one(synth_cache, tmp_path):
    """kk train one epoch (with EMA: its state is in the checkpoint too), then --resume to two: the run continues from epoch 1 (its message hub history
    carried over) and every training checkpoint loads with weights_only=True. A crafted last checkpoint is
    refused naming the file, and its code never runs."""
    import torch

    from kaggle_kit.commands.train import main

    cfg = ROOT / "configs/seg25d/tiny_cpu.yaml"
    ov = [f"cache={synth_cache}", f"work_root={tmp_path / 'work'}", f"pred_root={tmp_path / 'preds'}", *TINY_SEG,
          "train.ema=true", "train.log_interval=1"]
    wd = tmp_path / "work" / "seg25d" / "tiny_cpu" / "fold0"
    assert main([str(cfg), "--fold", "0", *ov]) == 0
    first = torch.load(wd / "epoch_1.pth", weights_only=True)
    n1 = len(first["message_hub"]["log_scalars"]["train/loss"]["log_history"])
    assert first["meta"]["epoch"] == 1 and n1 >= 1
    assert main([str(cfg), "--fold", "0", "--resume", *ov, "train.epochs=2"]) == 0  # the later override wins
    second = torch.load(wd / "epoch_2.pth", weights_only=True)
    assert second["meta"]["epoch"] == 2 and second["meta"]["iter"] == 2 * first["meta"]["iter"]
    assert len(second["message_hub"]["log_scalars"]["train/loss"]["log_history"]) == 2 * n1  # history resumed
    with open(wd / "metrics.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]
    marker = tmp_path / "ran"
    _crafted(wd / "epoch_2.pth", marker)
    (wd / "last_checkpoint").write_text(str(wd / "epoch_2.pth"))
    with pytest.raises(CheckpointError, match=rf"{wd / 'epoch_2.pth'}: training checkpoint refused"):
        main([str(cfg), "--fold", "0", "--resume", *ov, "train.epochs=3"])
    assert not marker.exists()
