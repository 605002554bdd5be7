"""A wheel install is complete: build the wheel, install it (not editable) into a fresh venv with constraints.txt,
and from a folder outside the checkout run the real path's first commands on tiny synthetic data."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _run(cmd, cwd, env, timeout=900) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_wheel_installs_and_trains_without_the_checkout(tmp_path):
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    # built from a copy of the working tree's files: no build/ left in the checkout, none of its stale files read
    src = tmp_path / "src"
    files = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, env=env).stdout
    for rel in filter(None, files.split("\0")):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, src],
         cwd=tmp_path, env=env)
    (wheel,) = dist.glob("kaggle_kit-*.whl")
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", venv], cwd=tmp_path, env=env)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt"]
    _run([*pip, "torch", "torchvision"], cwd=tmp_path, env=env)  # first, at the constraints' versions (on disk)
    _run([*pip, f"{wheel}[all]"], cwd=tmp_path, env=env)

    env = dict(env, PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", KAGGLE_KIT_HOME=str(tmp_path / "home"),
               KAGGLE_KIT_NO_PROGRESS="1")
    py = venv / "bin" / "python"
    where = json.loads(_run([py, "-c", "import json, sys, kaggle_kit, kaggle_kit.resources as r; print(json.dumps("
                                       "[kaggle_kit.__file__, str(r.config_root()), str(r.notebook_path()), sys.path]))"],
                            cwd=work, env=env).stdout)
    site = str(venv.resolve())
    assert where[0].startswith(site) and where[1].startswith(site) and where[2].startswith(site), where[:3]
    assert Path(where[2]).is_file()  # the notebook ships too
    assert not any(str(ROOT) in p for p in where[3]), "the checkout is on the venv's sys.path"

    kk = venv / "bin" / "kk"
    assert "commands, in pipeline order" in _run([kk, "--help"], cwd=work, env=env).stdout
    assert _run([kk, "cfg", "seg25d"], cwd=work, env=env).stdout == (ROOT / "configs/seg25d/default.yaml").read_text()
    _run([kk, "synth", "data", "--train-cases", 3, "--test-cases", 1, "--size-scale", 0.25, "--max-days", 1],
         cwd=work, env=env)
    _run([kk, "prepare", "--data-root", "data", "--cache", "cache", "--n-folds", 2], cwd=work, env=env)
    paths = ["--cache", "cache", "--work-root", "work_dirs", "--pred-root", "preds"]
    tiny = ["data.size=[32, 32]", "train.epochs=1", "train.batch_size=32", "train.val_batch_size=64",
            "data.augment=none"]
    # a shipped config by name: its _base_ chain (seg25d/default.yaml, base_train.yaml) is package data
    _run([kk, "train", "seg25d/tiny_cpu", "--fold", 0, *paths, *tiny], cwd=work, env=env)
    assert (work / "work_dirs" / "seg25d" / "tiny_cpu" / "fold0" / "done.json").is_file()
    _run([kk, "predict", "seg25d/tiny_cpu", "--split", "oof,test", "--fold", 0, *paths, *tiny,
          "--summary-json", "predict.json"], cwd=work, env=env)
    pred = json.loads((work / "predict.json").read_text())
    assert set(pred) == {"oof", "test"}
    for split in ("oof", "test"):
        assert (work / "preds" / "tiny_cpu" / split / "manifest.json").is_file()
