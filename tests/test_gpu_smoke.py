"""The GPU preset end to end on this CPU: ``gpu_smoke`` (the five GPU configs shrunk in canvas, batch and patch;
same architectures and code paths) through every stage on a budget, to a validated notebook submission."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a 20-minute budget, over the suite's 900 s default
def test_gpu_preset_smoke_runs_every_stage_on_a_budget(tmp_path):
    work = tmp_path / "run"
    env = dict(os.environ, KAGGLE_KIT_NO_PROGRESS="1")
    p = subprocess.run([sys.executable, "-m", "kaggle_kit", "run", "--preset", "gpu_smoke", "--budget", "20m",
                        "--train-cases", "4", "--test-cases", "2", "--size-scale", "0.3", "--work", str(work)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    res = json.loads((work / "pipeline" / "result.json").read_text())
    assert summary["submission"] and (work / "submission.csv").is_file()
    assert json.loads((work / "pipeline" / "tools" / "validate.json").read_text())  # kk validate ran and passed
    b = res["budget"]
    trained = {m["exp"] for m in res["members"]}
    dropped = {d["member"] for d in b["dropped"]}
    # every one of the five GPU configs either trained all its folds or was dropped whole, named with a reason
    assert len(trained | dropped) == 5 and not trained & dropped and trained
    assert all(len(m["trained_folds"]) + len(m["reused_folds"]) == 2 for m in res["members"])
    stages = {s["stage"] for s in b["stages"]}
    assert {"calibrate", "tune", "bundle", "notebook"} <= stages
    assert b["actual_total_s"] <= b["budget_s"] * 1.15  # lands on its budget (CPU timing jitters; see docs)
    print(json.dumps(b["stages"]))  # time per stage, for the record (pytest -s)
