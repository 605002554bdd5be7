"""The offline notebook: bundle -> nbclient run under `unshare -n` -> valid submission.csv."""
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from .conftest import ROOT, run_tool

NB = ROOT / "submission" / "kaggle_kit_inference.ipynb"
sys.path.insert(0, str(ROOT / "tools"))
from run_notebook import can_unshare, run_notebook as _run_nb  # noqa: E402  (the tool the demo runs)


def run_notebook(python, nb_path, env, tmp_path) -> str:
    """Execute the notebook with ``python``'s kernel, with no network at all when unshare is available."""
    p = _run_nb(env["KK_BUNDLE"], env["KK_DATA"], env["KK_OUT"], offline=can_unshare(), notebook=nb_path,
                debug_case_days=int(env.get("KK_DEBUG_CASE_DAYS", 3)), timeout=900, python=python, cwd=tmp_path,
                extra_env={k: v for k, v in env.items() if not k.startswith("KK_")})
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    return p.stdout


@pytest.fixture(scope="module")
def bundle(trained_seg25d, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bundle")
    ens = tmp / "ensemble.yaml"
    ens.write_text(yaml.safe_dump({
        "members": [{"exp": "tiny_cpu", "kind": "pixel", "weight": 1.0},
                    {"exp": "tiny_cpu_aux", "kind": "classifier", "weight": 1.0}],
        "threshold": 0.5, "gating": {"prob": 0.05}, "min_area_2d": 2}))
    out = tmp / "bundle"
    run_tool("bundle.py", "--out", out, "--ensemble", ens, "--work-root", trained_seg25d["work_root"],
             "--preds", trained_seg25d["pred_root"], "--no-wheels")
    return out


def _validate(sub, root, split="test"):
    run_tool("validate_submission.py", sub, "--data-root", root, "--split", split)


def test_bundle_manifest(bundle):
    man = json.loads((bundle / "bundle.json").read_text())
    names = {m["name"]: m for m in man["members"]}
    assert names["tiny_cpu"]["checkpoints"] == ["checkpoints/tiny_cpu/fold0.pth"]
    assert names["tiny_cpu_aux"]["source"] == "tiny_cpu"
    assert all(len(h) == 64 for h in man["sha256"].values())
    assert "checkpoints/tiny_cpu/fold0.pth" in man["sha256"]


def test_notebook_real_path_offline(bundle, synth_root, tmp_path):
    out = tmp_path / "submission.csv"
    env = {"KK_BUNDLE": str(bundle), "KK_DATA": str(synth_root), "KK_OUT": str(out)}
    text = run_notebook(sys.executable, NB, env, tmp_path)
    assert "mode=test" in text and "FALLBACK" not in text, text[-3000:]
    _validate(out, synth_root)
    from run_notebook import summary_of

    summary = summary_of(text)  # the run's summary: per-member inference time per case-day
    assert summary["mode"] == "test" and summary["member_seconds_per_case_day"]["tiny_cpu"] > 0
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    sample = pd.read_csv(synth_root / "sample_submission.csv", dtype=str, keep_default_na=False)
    assert sub[["id", "class"]].equals(sample[["id", "class"]])  # sample_submission order


def test_notebook_debug_mode_and_broken_member(bundle, synth_root, tmp_path):
    # public-run situation: an empty test/ and a header-only sample_submission
    root = tmp_path / "data"
    shutil.copytree(synth_root, root, ignore=shutil.ignore_patterns("test"))
    (root / "test").mkdir()
    (root / "sample_submission.csv").write_text("id,class,predicted\n")
    # a second pixel member whose checkpoint is corrupt
    b2 = tmp_path / "bundle"
    shutil.copytree(bundle, b2)
    man = json.loads((b2 / "bundle.json").read_text())
    bad = dict(man["members"][0], name="broken", exp="broken", checkpoints=["checkpoints/broken/fold0.pth"])
    (b2 / "checkpoints/broken").mkdir()
    (b2 / "checkpoints/broken/fold0.pth").write_bytes(b"not a checkpoint")
    man["members"].append(bad)
    (b2 / "bundle.json").write_text(json.dumps(man))
    ens = yaml.safe_load((b2 / "ensemble.yaml").read_text())
    ens["members"].append({"exp": "broken", "kind": "pixel", "weight": 1.0})
    (b2 / "ensemble.yaml").write_text(yaml.safe_dump(ens))
    out = tmp_path / "submission.csv"
    env = {"KK_BUNDLE": str(b2), "KK_DATA": str(root), "KK_OUT": str(out), "KK_DEBUG_CASE_DAYS": "2"}
    text = run_notebook(sys.executable, NB, env, tmp_path)
    assert "mode=debug" in text and "member 'broken' dropped" in text, text[-3000:]
    assert '"debug_score"' in text
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    from kaggle_kit.data.raw import discover_split

    cds = list(dict.fromkeys(discover_split(root, "train")["case_day"]))[:2]
    assert sub["id"].str.rsplit("_slice", n=1).str[0].isin(cds).all() and len(sub) > 0


def test_notebook_total_failure_still_writes_file(synth_root, tmp_path):
    out = tmp_path / "submission.csv"
    env = {"KK_BUNDLE": str(tmp_path / "no_bundle"), "KK_DATA": str(synth_root), "KK_OUT": str(out)}
    text = run_notebook(sys.executable, NB, env, tmp_path)
    assert "FALLBACK" in text
    _validate(out, synth_root)


@pytest.mark.slow
def test_fresh_venv_installs_bundle_offline(trained_seg25d, synth_root, tmp_path):
    """The Kaggle situation: a Python with torch/torchvision only; the notebook installs kaggle_kit and its
    dependencies from the bundle's wheels with --no-index, then runs with no network at all."""
    ens = tmp_path / "ensemble.yaml"
    ens.write_text(yaml.safe_dump({"members": [{"exp": "tiny_cpu", "kind": "pixel", "weight": 1.0}],
                                   "threshold": 0.5}))
    b = tmp_path / "bundle"
    run_tool("bundle.py", "--out", b, "--ensemble", ens, "--work-root", trained_seg25d["work_root"],
             "--preds", trained_seg25d["pred_root"], "--target", "local")  # wheels for this interpreter's venv
    assert any(p.name.startswith("kaggle_kit-") for p in (b / "wheels").glob("*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # torch/torchvision from this machine's disk (as preinstalled on Kaggle), plus the notebook runner
    subprocess.run([str(py), "-m", "pip", "install", "-q", "torch==2.14.1", "torchvision==0.29.1",
                    "nbclient==0.11.0", "nbformat==5.11.1", "ipykernel==7.4.0"], check=True)
    probe = subprocess.run([str(py), "-c", "import importlib.util as u; print(u.find_spec('kaggle_kit'))"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert probe.stdout.strip() == "None"  # nothing of ours before the notebook installs it
    out = tmp_path / "submission.csv"
    env = {"KK_BUNDLE": str(b), "KK_DATA": str(synth_root), "KK_OUT": str(out), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    text = run_notebook(py, b / "kaggle_kit_inference.ipynb", env, tmp_path)
    assert "installed" in text and "mode=test" in text and "FALLBACK" not in text, text[-3000:]
    _validate(out, synth_root)
