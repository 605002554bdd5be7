"""``kk run --budget`` and the ensemble's floor (the preset's ``min_pixel_members``): a budget whose first plan
cannot keep the preset's pixel members stops before any training with one ``error:`` line (exit 2) naming the
budget, the device, the members it would drop and the smallest budget that keeps them; nothing trains.

The calibration, the cache and the tools are stand-ins (fake step times): no model trains here."""
from __future__ import annotations

import json
import math
import types

import pandas as pd
import pytest

from kaggle_kit.pipeline import budget as B
from kaggle_kit.plan import FoldDone, MemberCost, make_plan

N_TRAIN, N_TEST, N_CD = 300, 60, 10  # slices of the fake cache's train and test splits, train case-days
# per family: (unit, seconds per unit, units per epoch, fold overhead s, maps s per slice)
FAKE = {"det_yolo": ("epoch", 30.0, 1, 10.0, 0.01), "seg25d": ("iter", 0.5, 200, 15.0, 0.02),
        "seg3d": ("iter", 2.0, 50, 15.0, 0.03)}


class _FakeCache:
    def __init__(self, root):
        pass

    def index(self, split="train"):
        n = N_TRAIN if split == "train" else N_TEST
        return pd.DataFrame({"case_day": [f"cd{i % N_CD}" for i in range(n)], "height": 100, "width": 100})

    def case_days(self, split="train"):
        return [f"cd{i}" for i in range(N_CD)] if split == "train" else ["t0"]


class _Stop(Exception):
    pass


class _FakeRunner:
    """Records every tool the job would run; the first ``kk train`` stops the job (training would start)."""
    calls: list = []

    def __init__(self, ctx):
        self.ctx = ctx

    def run(self, name, sub, args, summary=None, tag=None):
        _FakeRunner.calls.append(name)
        if sub == "train":
            raise _Stop(name)
        raise AssertionError(f"unexpected tool before training: {name}")


def _fake_calibration(ctx, r, member, cfg, exp):
    unit, sec, per_epoch, over, per_slice = FAKE[cfg["family"]]
    return B.Calibration(exp, cfg["family"], unit, sec, per_epoch, over, per_slice, 2.0, 0.0)


@pytest.fixture
def job(tmp_path, monkeypatch):
    """``kk run`` (through the CLI's error path) with the data stage, the tools, the cache and the calibration
    faked; returns a function argv -> (exit code, stderr, stdout, WORK)."""
    from kaggle_kit.cli import run
    from kaggle_kit.commands import run_all
    from kaggle_kit.data import cache
    from kaggle_kit.pipeline import stages

    for k in ("KAGGLE_KIT_HOME", "KAGGLE_KIT_NO_PROGRESS"):  # setup() sets them: restored after the test
        monkeypatch.setenv(k, "1")
    monkeypatch.setattr(stages, "Runner", _FakeRunner)
    monkeypatch.setattr(stages, "stage_data", lambda ctx, r: None)
    monkeypatch.setattr(cache, "Cache", _FakeCache)
    monkeypatch.setattr(B, "calibrate_member", _fake_calibration)
    monkeypatch.setattr(B, "device_label", lambda torch_module=None: "cpu, 2 cores")
    _FakeRunner.calls = []
    work = tmp_path / "work"

    def go(capsys, *argv):
        code = None
        try:
            run(run_all.main, ["--work", str(work), "--preset", "tiny", *argv])
        except SystemExit as e:
            code = e.code
        except _Stop:
            code = "training started"
        out = capsys.readouterr()
        return code, out.err, out.out, work
    return go


def _minimum_s(family, n_folds=3, min_epochs=1.0):
    """By hand: the member's folds at its minimum length, each fold's overhead, its OOF and test maps."""
    unit, sec, per_epoch, over, per_slice = FAKE[family]
    maps = per_slice * (N_TRAIN / n_folds + N_TEST) * n_folds
    return (math.ceil(min_epochs * per_epoch) * sec + over) * n_folds + maps


def _fixed_s():
    cals = [B.Calibration(f, f, *FAKE[f][:4], FAKE[f][4], 2.0, 0.0) for f in FAKE]
    return sum(B.fixed_costs(cals, 3, N_TRAIN * 100 * 100, N_CD, N_TEST).values())


def test_a_budget_that_cannot_keep_the_ensemble_stops_before_training(job, capsys):
    code, err, out, work = job(capsys, "--budget", "10m")
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --budget 10m cannot train the preset's ensemble")
    msg = lines[0]
    assert "on this device (cpu, 2 cores)" in msg and "under the floor of 2 (the preset's min_pixel_members)" in msg
    rec = json.loads((work / "pipeline" / "plan.json").read_text())
    first = rec["plans"][0]
    assert first["when"] == "before training" and len(first["pixel_kept"]) < 2
    lost = {e: f for e, f in (("seg25d_tiny_cpu_boxes", "seg25d"), ("seg3d_tiny", "seg3d"))
            if e not in first["pixel_kept"]}
    assert lost and rec["refused"]["would_drop"] == list(lost)
    # every member the plan drops is named with its minimum (minutes), then what keeping two costs, by hand: the
    # detector the 2.5D crops need, the 2.5D and 3D members at one epoch, the fixed stages and the (tiny) time
    # spent so far, rounded up to a minute
    for exp, fam in lost.items():
        assert f"{exp} ({_minimum_s(fam) / 60:.1f} min at its minimum)" in msg
    assert (f"at their minimum seg25d_tiny_cpu_boxes {_minimum_s('seg25d') / 60:.1f}, seg3d_tiny "
            f"{_minimum_s('seg3d') / 60:.1f} and det_tiny_cpu {_minimum_s('det_yolo') / 60:.1f}, which they need"
            ) in msg
    need = _minimum_s("det_yolo") + _minimum_s("seg25d") + _minimum_s("seg3d") + _fixed_s()
    assert 14 * 60 < need < 15 * 60 - 10  # the hand numbers put it in the 15th minute, with room for spent time
    assert "give --budget 15m or more, or --min-pixel-members 1" in msg
    # nothing trained, nothing predicted; the refusal is recorded in plan.json
    assert not any(c.startswith(("train", "predict")) for c in _FakeRunner.calls)
    assert rec["refused"]["message"] == msg[len("error: "):]
    assert rec["refused"]["suggested_budget"] == "15m" and rec["refused"]["device"] == "cpu, 2 cores"
    assert rec["refused"]["floor_budget_s"] == pytest.approx(need, abs=5)
    assert not (work / "pipeline" / "members.json").exists()


def test_the_suggested_budget_passes_and_the_override_lowers_the_floor(job, capsys):
    code, err, out, work = job(capsys, "--budget", "15m")
    assert code == "training started", err  # the floor holds: the first fold starts
    first = json.loads((work / "pipeline" / "plan.json").read_text())["plans"][0]
    assert first["pixel_kept"] == ["seg25d_tiny_cpu_boxes", "seg3d_tiny"] and first["min_pixel_members"] == 2
    assert first["projected_total_s"] <= 15 * 60

    _FakeRunner.calls = []
    code, err, out, work = job(capsys, "--budget", "10m", "--min-pixel-members", "1")
    assert code == "training started", err
    first = json.loads((work / "pipeline" / "plan.json").read_text())["plans"][-1]
    assert len(first["pixel_kept"]) >= 1 and first["min_pixel_members"] == 1


@pytest.mark.parametrize("argv, match", [
    (["--min-pixel-members", "1"], "give --budget too"),
    (["--budget", "10m", "--min-pixel-members", "3"], "expected 0 to 2"),
    (["--budget", "10m", "--min-pixel-members", "-1"], "expected 0 to 2"),
])
def test_a_bad_floor_flag_is_an_error_line(job, capsys, argv, match):
    code, err, _, _ = job(capsys, *argv)
    assert code == 2 and err.startswith("error: --min-pixel-members") and match in err
    assert not _FakeRunner.calls


def test_a_preset_floor_is_read_defaulted_and_checked(tmp_path):
    from kaggle_kit.pipeline import PresetError, load_preset

    assert {load_preset(n).min_pixel_members for n in ("tiny", "tiny_all", "gpu", "gpu_smoke")} == {2}
    assert [m.kind for m in load_preset("tiny").members] == ["boxes", "pixel", "pixel"]
    head = "n_folds: 3\nsearch: ensemble/search_default.yaml\n"
    one = "members:\n  - config: seg3d/tiny_cpu.yaml\n    why: x\n"
    two = one + "  - config: seg25d/tiny_cpu.yaml\n    why: y\n  - config: det_yolo/tiny_cpu.yaml\n    why: z\n"
    p = tmp_path / "p.yaml"
    for body, floor in ((head + one, 1), (head + two, 2), (head + "min_pixel_members: 0\n" + two, 0)):
        p.write_text(body)
        assert load_preset(p).min_pixel_members == floor  # default: 2, or as many pixel members as there are
    for bad in ("3", "-1", "true", "1.5"):
        p.write_text(head + f"min_pixel_members: {bad}\n" + two)
        with pytest.raises(PresetError, match="min_pixel_members: expected an int from 0 to 2"):
            load_preset(p)
    p.write_text(head + "min_pixel_members: 2\n" + one.replace("why: x", "why: x\n    share: 0") +
                 "  - config: seg25d/tiny_cpu.yaml\n    why: y\n")
    with pytest.raises(PresetError, match="from 0 to 1"):  # a member with share 0 never trains
        load_preset(p)


def test_device_label_names_the_gpu_or_the_cpu_cores():
    gpu = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: True,
                                                           get_device_name=lambda i: "NVIDIA H100"))
    cpu = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: False))
    assert B.device_label(gpu) == "cuda: NVIDIA H100"
    assert B.device_label(cpu).startswith("cpu, ") and B.device_label(cpu).endswith(("core", "cores"))


def test_a_re_plan_drop_says_after_which_fold_and_what_it_threw_away(capsys):
    """A fold that ran slow leaves no room for a started member's minimum: the drop is told apart in its reason
    (the report and result.json print it), with the floor it broke."""
    a = MemberCost("a", 1.0, sec_per_iter=1.0, iters_per_epoch=100, pixel=True)
    b = MemberCost("b", 1.0, sec_per_iter=1.0, iters_per_epoch=100, pixel=True)
    done = [FoldDone("a", 0, 200, 460.0)]
    plan = make_plan(1200, [a, b], 3, spent_s=460.0, done=done, min_pixel=2)
    told: set = set()
    dropped = B._note_drops(plan, set(), told, "after a fold 0", done, 3)
    (name, why), = dropped
    assert name == "a" and told == {"a"}
    assert "re-plan after a fold 0: 1 of its 3 folds trained, thrown away" in why
    assert "1 pixel member left, under the floor of 2" in why
    assert f"member a dropped: {why}" in capsys.readouterr().out
    # told once: a later plan that carries the same drop does not repeat it
    again = make_plan(1200, [a, b], 3, spent_s=500.0, done=done, dropped=dropped, min_pixel=2)
    assert B._note_drops(again, {"a"}, told, "later", done, 3) == dropped
