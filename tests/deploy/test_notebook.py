"""The offline notebook: bundle -> nbclient run under `unshare -n` -> valid submission.csv."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, run_tool

NB = ROOT / "submission" / "kaggle_kit_inference.ipynb"
from kaggle_kit.commands.run_notebook import can_unshare, run_notebook as _run_nb  # noqa: E402  (the tool the demo runs)


def run_notebook(python, nb_path, env, tmp_path, ok: bool = True) -> str:
    """Execute the notebook with ``python``'s kernel, with no network at all when unshare is available;
    ``ok``: whether every cell must succeed (False: a cell must raise)."""
    p = _run_nb(env["KK_BUNDLE"], env["KK_DATA"], env["KK_OUT"], offline=can_unshare(), notebook=nb_path,
                debug_case_days=int(env.get("KK_DEBUG_CASE_DAYS", 3)), time_budget_h=env.get("KK_TIME_BUDGET_H"),
                budget_check_after=env.get("KK_BUDGET_CHECK_AFTER"), timeout=900, python=python, cwd=tmp_path,
                extra_env={k: v for k, v in env.items() if not k.startswith("KK_")})
    assert (p.returncode == 0) == ok, p.stdout[-4000:] + p.stderr[-4000:]
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


def _with_broken_member(bundle, tmp_path):
    """A copy of ``bundle`` with a second pixel member 'broken' whose checkpoint file is corrupt."""
    b2 = tmp_path / "bundle_broken"
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
    return b2


def _public_root(synth_root, tmp_path):
    """The public-run situation: an empty test/ and a header-only sample_submission."""
    root = tmp_path / "data"
    shutil.copytree(synth_root, root, ignore=shutil.ignore_patterns("test"))
    (root / "test").mkdir()
    (root / "sample_submission.csv").write_text("id,class,predicted\n")
    return root


def test_hidden_run_drops_broken_member_writes_valid_file_and_names_it(bundle, synth_root, tmp_path):
    """(b) The hidden re-run with a corrupt member: a valid file in sample_submission order, the member named
    in the log and in submission_report.json; the working member's maps are used."""
    b2 = _with_broken_member(bundle, tmp_path)
    out = tmp_path / "submission.csv"
    env = {"KK_BUNDLE": str(b2), "KK_DATA": str(synth_root), "KK_OUT": str(out)}
    text = run_notebook(sys.executable, NB, env, tmp_path)
    assert "mode=test" in text and "FALLBACK" not in text, text[-3000:]
    assert "WARNING member 'broken' dropped" in text
    _validate(out, synth_root)
    from kaggle_kit.commands.run_notebook import summary_of

    summary = summary_of(text)  # the run's summary: per-member inference time per case-day
    assert summary["mode"] == "test" and not summary["strict"]
    assert summary["member_seconds_per_case_day"]["tiny_cpu"] > 0 and "broken" not in summary["members"]
    report = json.loads((tmp_path / "submission_report.json").read_text())
    assert len(report["dropped"]) == 1 and "'broken'" in report["dropped"][0] and report["failures"] == []
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    sample = pd.read_csv(synth_root / "sample_submission.csv", dtype=str, keep_default_na=False)
    assert sub[["id", "class"]].equals(sample[["id", "class"]])  # sample_submission order
    assert (sub["predicted"] != "").any()  # the working member predicted something


def test_public_run_with_broken_member_raises_and_names_it(bundle, synth_root, tmp_path):
    """(a) The public run (debug mode on train case-days) with the same corrupt member fails loudly."""
    root = _public_root(synth_root, tmp_path)
    b2 = _with_broken_member(bundle, tmp_path)
    out = tmp_path / "submission.csv"
    env = {"KK_BUNDLE": str(b2), "KK_DATA": str(root), "KK_OUT": str(out), "KK_DEBUG_CASE_DAYS": "2"}
    text = run_notebook(sys.executable, NB, env, tmp_path, ok=False)
    assert "PUBLIC run" in text and "mode=debug" in text, text[-3000:]
    assert "InferenceError" in text and "member 'broken' dropped" in text, text[-3000:]
    assert "FALLBACK" not in text and not out.exists()  # raised before writing anything


def _inprocess(bundle, root, out, **kw):
    from kaggle_kit.deploy.infer import run_inference

    return run_inference(bundle, root, out, device="cpu", **kw)


def test_public_run_passes_above_empty_baseline_and_raises_when_not(bundle, synth_root, tmp_path):
    """The public run's score check: the tiny member beats empty masks; an ensemble that removes every
    component (min_area_2d beyond any slice) scores exactly the empty baseline and raises."""
    from kaggle_kit.deploy.messages import InferenceError

    root = _public_root(synth_root, tmp_path)
    s = _inprocess(bundle, root, tmp_path / "ok.csv", debug_case_days=2)
    assert s["mode"] == "debug" and s["strict"] and s["debug_score"] > s["empty_baseline"]
    b2 = tmp_path / "bundle_empty"
    shutil.copytree(bundle, b2)
    ens = yaml.safe_load((b2 / "ensemble.yaml").read_text())
    (b2 / "ensemble.yaml").write_text(yaml.safe_dump(dict(ens, min_area_2d=10**6)))
    with pytest.raises(InferenceError, match="not above the empty-mask baseline"):
        _inprocess(b2, root, tmp_path / "empty.csv", debug_case_days=2)
    report = json.loads((tmp_path / "empty_report.json").read_text())
    assert report["debug_score"] == report["empty_baseline"]


def test_time_budget_sheds_tta_then_lowest_weight_member(bundle, synth_root, tmp_path):
    """(d) A tiny time budget: after the first case-days it sheds flip TTA, then the lower-weight pixel member
    (never the last one), logs both, and still writes a valid file."""
    b2 = tmp_path / "bundle_budget"
    shutil.copytree(bundle, b2)
    man = json.loads((b2 / "bundle.json").read_text())
    man["members"][0]["tta"] = "hflip"
    man["members"].append(dict(man["members"][0], name="tiny_b", exp="tiny_b"))  # same checkpoint, lower weight
    (b2 / "bundle.json").write_text(json.dumps(man))
    ens = yaml.safe_load((b2 / "ensemble.yaml").read_text())
    ens["members"].append({"exp": "tiny_b", "kind": "pixel", "weight": 0.5})
    (b2 / "ensemble.yaml").write_text(yaml.safe_dump(ens))
    out = tmp_path / "submission.csv"
    env = {"KK_BUNDLE": str(b2), "KK_DATA": str(synth_root), "KK_OUT": str(out), "KK_TIME_BUDGET_H": "1e-6",
           "KK_BUDGET_CHECK_AFTER": "1"}
    text = run_notebook(sys.executable, NB, env, tmp_path)
    from kaggle_kit.commands.run_notebook import summary_of

    shed = summary_of(text)["shed"]
    assert len(shed) == 3, shed
    assert shed[0].startswith("after 1 case-days") and "TTA off (tiny_b, tiny_cpu)" in shed[0]
    assert "member 'tiny_b' dropped (lowest weight)" in shed[1]
    assert "nothing left to shed" in shed[2]  # tiny_cpu is the last pixel member: kept
    assert all(f"TIME BUDGET: {s}" in text for s in shed)
    assert json.loads((tmp_path / "submission_report.json").read_text())["shed"] == shed
    assert summary_of(text)["members"] == ["tiny_cpu", "tiny_cpu_aux"]
    _validate(out, synth_root)


def test_notebook_total_failure_still_writes_file(synth_root, tmp_path):
    """The hidden run with no bundle at all: empty masks, a valid file, and the report says why."""
    out = tmp_path / "submission.csv"
    env = {"KK_BUNDLE": str(tmp_path / "no_bundle"), "KK_DATA": str(synth_root), "KK_OUT": str(out)}
    text = run_notebook(sys.executable, NB, env, tmp_path)
    assert "FALLBACK" in text
    _validate(out, synth_root)
    report = json.loads((tmp_path / "submission_report.json").read_text())
    assert report["mode"] == "fallback" and "bundle.json" in report["error"]


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


# ------------------------------------------------------------------------------------- crop members
@pytest.fixture(scope="module")
def crop_bundle(synth_cache, tmp_path_factory):
    """A tiny detector (1 epoch at 32 px) and a tiny 2.5D member trained with ``data.crop: boxes`` on its
    boxes, both predicted on test (the 2.5D member by tools/predict.py), then bundled. The detector predicts
    with conf 0 and a negative margin, so every slice gets a box smaller than the image: the crop crops."""
    from kaggle_kit.config import load_config
    from kaggle_kit.registry import resolve

    from tests.conftest import TINY_SEG

    tmp = tmp_path_factory.mktemp("crop")
    common = [f"cache={synth_cache}", f"work_root={tmp / 'work'}", f"pred_root={tmp / 'preds'}"]
    det_cfg = load_config(ROOT / "configs/det_yolo/tiny_cpu.yaml",
                          [*common, "model.imgsz=32", "train.epochs=1", "predict.conf=0.0", "predict.margin=-0.2"])
    det = resolve("family", "det_yolo")
    det.train(det_cfg, 0, "det_nb")
    for split in ("oof", "test"):
        det.predict(det_cfg, "det_nb", split, folds=[0])
    seg = ROOT / "configs/seg25d/tiny_cpu.yaml"
    ov = [*common, "exp=seg_crop", "data.crop=boxes", "data.boxes_exp=det_nb", *TINY_SEG]
    run_tool("train.py", seg, "--fold", 0, *ov)
    run_tool("predict.py", seg, "--split", "oof,test", "--folds", "0", *ov)
    ens = tmp / "ensemble.yaml"
    ens.write_text(yaml.safe_dump({"members": [{"exp": "seg_crop", "kind": "pixel", "weight": 1.0},
                                               {"exp": "seg_crop_aux", "kind": "classifier", "weight": 1.0}],
                                   "threshold": 0.5}))
    run_tool("bundle.py", "--out", tmp / "bundle", "--ensemble", ens, "--work-root", tmp / "work",
             "--preds", tmp / "preds", "--no-wheels")
    return {"bundle": tmp / "bundle", "preds": tmp / "preds"}


def test_crop_member_notebook_path_equals_predict_tool(crop_bundle, synth_root):
    """(c) The bundle carries the detector a crop member needs; the notebook's member path (detector first,
    its boxes fed to the crop member) on the decoded test PNGs gives the maps tools/predict.py stored."""
    import numpy as np

    from kaggle_kit.data.png_volumes import PngVolumes
    from kaggle_kit.deploy.members import load_bundle_members, predict_case_day
    from kaggle_kit.io.boxes import BOX_COLUMNS, load_boxes
    from kaggle_kit.io.probmaps import ProbMapStore, to_uint8

    b, preds = crop_bundle["bundle"], crop_bundle["preds"]
    man = json.loads((b / "bundle.json").read_text())
    det_entry = next(m for m in man["members"] if m["name"] == "det_nb")
    assert det_entry["kind"] == "boxes" and det_entry["box_params"]["margin"] == -0.2  # the predict-time params
    members, dropped, _ = load_bundle_members(b, man["members"], device="cpu")
    assert dropped == [] and {m.name: m.boxes_from for m in members}["seg_crop"] == "det_nb"
    vols = PngVolumes(synth_root, "test")
    store = ProbMapStore(preds)
    boxes = load_boxes(preds, "det_nb", "test")
    smaller = 0
    for cd in vols.case_days():
        maps, failures = predict_case_day(members, vols, cd)
        assert failures == []
        np.testing.assert_array_equal(to_uint8(maps["seg_crop"]), store.read("seg_crop", "test", cd))
        np.testing.assert_array_equal(to_uint8(maps["seg_crop_aux"]), store.read("seg_crop_aux", "test", cd))
        H, W = maps["seg_crop"].shape[2:]
        for z, (y0, y1, x0, x1) in enumerate(boxes.loc[cd][BOX_COLUMNS].to_numpy()):
            outside = np.ones((H, W), bool)
            outside[y0:y1, x0:x1] = False
            assert not maps["seg_crop"][z][:, outside].any()  # pasted back inside the detector's box only
            smaller += int(outside.any())
    assert smaller > 0  # the boxes really crop


def test_crop_member_without_its_detector_is_dropped(crop_bundle, synth_root, tmp_path):
    """A bundle that lost the detector: the crop member (and its aux head) is dropped by name; the public
    run raises before predicting anything."""
    from kaggle_kit.deploy.members import load_bundle_members
    from kaggle_kit.deploy.messages import InferenceError

    b2 = tmp_path / "bundle"
    shutil.copytree(crop_bundle["bundle"], b2)
    man = json.loads((b2 / "bundle.json").read_text())
    man["members"] = [m for m in man["members"] if m["name"] != "det_nb"]
    (b2 / "bundle.json").write_text(json.dumps(man))
    members, dropped, _ = load_bundle_members(b2, man["members"], device="cpu")
    assert members == []
    assert "'seg_crop' dropped" in dropped[0] and "detector 'det_nb', which the bundle lacks" in dropped[0]
    assert "'seg_crop_aux' dropped: its source 'seg_crop'" in dropped[1]
    with pytest.raises(InferenceError, match="det_nb"):
        _inprocess(b2, _public_root(synth_root, tmp_path), tmp_path / "sub.csv", debug_case_days=1)
    assert not (tmp_path / "sub.csv").exists()


# ------------------------------------------------------------------------------------------ device
class _FakeCuda:
    def __init__(self, cap, arch, available=True):
        self.cap, self.arch, self.available = cap, arch, available

    def is_available(self):
        return self.available

    def get_device_capability(self, i=0):
        return self.cap

    def get_arch_list(self):
        return list(self.arch)

    def get_device_name(self, i=0):
        return "Tesla P100-PCIE-16GB" if self.cap == (6, 0) else "Fake GPU"


def _fake_torch(cap, arch, available=True, kernel_error=None):
    from types import SimpleNamespace

    import numpy as np

    calls = []

    def ones(n, device=None):
        calls.append(device)
        if kernel_error:
            raise RuntimeError(kernel_error)
        return np.ones(n)

    t = SimpleNamespace(__version__="2.14.1+fake", version=SimpleNamespace(cuda="12.8"),
                        cuda=_FakeCuda(cap, arch, available), ones=ones)
    return t, calls


RECENT = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]  # no sm_60, like torch 2.8+


def test_pick_device_unsupported_capability_falls_back_to_cpu(capsys):
    """(e) A P100 (sm_60) that CUDA reports as available, with a torch built without sm_60 kernels: CPU,
    with a warning that names the capability and says why; no kernel is even tried."""
    from kaggle_kit.deploy.device import pick_device

    t, calls = _fake_torch((6, 0), RECENT)
    dev, info = pick_device(t)
    out = capsys.readouterr().out
    assert dev == "cpu" and info["torch_supports_device"] is False and info["capability"] == "6.0"
    assert calls == []
    warn = [line for line in out.splitlines() if "WARNING" in line]
    assert len(warn) == 1 and "sm_60" in warn[0] and "NOT using the GPU" in warn[0] and "CPU" in warn[0]
    assert "Tesla P100-PCIE-16GB: compute capability 6.0" in out and "NO" in out


def test_pick_device_supported_gpu_and_failing_kernel(capsys):
    from kaggle_kit.deploy.device import pick_device

    t, calls = _fake_torch((9, 0), RECENT)
    assert pick_device(t)[0] == "cuda" and calls == ["cuda"]
    assert "WARNING" not in capsys.readouterr().out
    t, _ = _fake_torch((7, 5), RECENT, kernel_error="CUDA error: no kernel image is available for execution")
    dev, info = pick_device(t)
    assert dev == "cpu" and info["torch_supports_device"] is False
    assert "no kernel image" in capsys.readouterr().out
    t, calls = _fake_torch((8, 0), RECENT, available=False)
    assert pick_device(t)[0] == "cpu" and calls == []


@pytest.mark.parametrize("cap, arch, ok", [
    ((6, 0), RECENT, False),                         # P100 on a recent torch
    ((6, 0), ["sm_50", "sm_60", "sm_70"], True),     # older torch with sm_60 kernels
    ((8, 6), ["sm_80"], True),                       # cubins run on a higher minor of the same major
    ((8, 9), ["sm_90"], False),                      # ... never across majors or downwards
    ((7, 0), ["sm_75"], False),
    ((12, 1), ["sm_90", "compute_90"], True),        # PTX JIT-compiles for any newer device
    ((8, 0), ["sm_90", "compute_90"], False),        # ... never for an older one
    ((9, 0), ["sm_90a"], True),                      # arch-specific cubins: exactly that device
    ((10, 0), ["sm_90a"], False),
    ((10, 3), ["sm_100"], True),                     # three-digit arch names: 10.0
    ((7, 5), [], False),
])
def test_arch_supported(cap, arch, ok):
    from kaggle_kit.deploy.device import arch_supported

    assert arch_supported(cap, arch)[0] is ok


# ------------------------------------------------------------------------------------------ install
def _wheel(path, name, requires=()):
    """A minimal pure-python wheel (a package with an empty __init__) at ``path``."""
    import zipfile

    dist = f"{name}-1.0.dist-info"
    files = {f"{name}/__init__.py": "",
             f"{dist}/METADATA": "Metadata-Version: 2.1\nName: {}\nVersion: 1.0\n".format(name)
             + "".join(f"Requires-Dist: {r}\n" for r in requires),
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist}/RECORD"] = "".join(f"{k},,\n" for k in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for k, v in files.items():
            z.writestr(k, v)


def test_install_cell_names_failing_wheels_and_raises_in_public_run(tmp_path):
    """The install cell in a Python without kaggle_kit: a corrupt wheel is named, so is a requirement no
    wheel of the bundle provides (with the wheel that needs it), the import check fails, and the public run
    raises."""
    wheels = tmp_path / "bundle" / "wheels"
    wheels.mkdir(parents=True)
    (wheels / "zz_bad-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    _wheel(wheels / "tinydep-1.0-py3-none-any.whl", "tinydep", ["not-bundled-dep>=1"])
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    cells = [c for c in json.loads(NB.read_text())["cells"] if c["cell_type"] == "code"]
    script = tmp_path / "cells.py"
    script.write_text("".join(cells[0]["source"]) + "\n" + "".join(cells[1]["source"]) + "\n")
    env = dict(os.environ, KK_BUNDLE=str(tmp_path / "bundle"), KK_DATA=str(tmp_path / "no_data"))
    p = subprocess.run([str(venv / "bin" / "python"), str(script)], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    text = p.stdout + p.stderr
    assert p.returncode != 0 and "PUBLIC run" in text, text[-3000:]
    assert "FAILED wheel zz_bad-1.0-py3-none-any.whl" in text
    assert "not-bundled-dep>=1 (needed by tinydep)" in text
    assert "RuntimeError: install failed" in text and "No module named 'kaggle_kit'" in text


def test_shed_plan_counts_each_tta_by_its_passes():
    """Turning TTA off saves 1/2 of a flip member's time and 2/3 of a gamma member's (3 passes); the member
    drop after it is costed at one pass. Hand-checked numbers."""
    from types import SimpleNamespace

    from kaggle_kit.deploy.budget import shed_plan
    from kaggle_kit.deploy.members import LoadedMember
    from kaggle_kit.post.ensemble import parse_ensemble_config

    cfg = parse_ensemble_config({"members": [{"exp": "a", "kind": "pixel", "weight": 1.0},
                                             {"exp": "b", "kind": "pixel", "weight": 0.5}], "threshold": 0.5})
    ms = [LoadedMember("a", "pixel", [SimpleNamespace(tta="hflip")]),
          LoadedMember("b", "pixel", [SimpleNamespace(tta="gamma")])]
    assert [m.tta_passes for m in ms] == [2, 3]
    steps = shed_plan(ms, cfg, {"a": 40.0, "b": 60.0}, n_done=2)  # 20 s and 30 s per case-day
    assert steps[0][:2] == ("tta", "a, b") and steps[0][2] == pytest.approx(20 / 2 + 30 * 2 / 3)
    assert steps[1][:2] == ("lowest_weight_member", "b") and steps[1][2] == pytest.approx(30 / 3)
    assert len(steps) == 2  # a is the last pixel member: never dropped



def test_hidden_run_with_typed_settings_writes_the_file(bundle, synth_root, tmp_path):
    """The hidden re-run with settings as a person types them (``8h``, the KAGGLE_KIT_ spelling) and one
    that does not parse: every setting read, the bad one at its default with a warning naming it, and the
    file written with predictions (not the fallback)."""
    out = tmp_path / "submission.csv"
    env = {"KK_BUNDLE": str(bundle), "KK_DATA": str(synth_root), "KK_OUT": str(out), "KK_TIME_BUDGET_H": "8h",
           "KAGGLE_KIT_BUDGET_CHECK_AFTER": "two"}
    text = run_notebook(sys.executable, NB, env, tmp_path)
    assert "FALLBACK" not in text and "mode=test" in text, text[-3000:]
    assert "WARNING setting: KAGGLE_KIT_BUDGET_CHECK_AFTER='two'" in text and "the default 2 is used" in text
    assert "KK_TIME_BUDGET_H=8.0" in text
    _validate(out, synth_root)
    assert (pd.read_csv(out, dtype=str, keep_default_na=False)["predicted"] != "").any()


def test_public_run_with_a_bad_setting_raises_naming_it(synth_root, tmp_path):
    root = _public_root(synth_root, tmp_path)
    out = tmp_path / "submission.csv"
    env = {"KK_BUNDLE": str(tmp_path / "no_bundle"), "KK_DATA": str(root), "KK_OUT": str(out),
           "KK_TIME_BUDGET_H": "8 hours please"}
    text = run_notebook(sys.executable, NB, env, tmp_path, ok=False)
    assert "ValueError" in text and "KK_TIME_BUDGET_H='8 hours please'" in text and not out.exists()


# ------------------------------------------------------------------------------------------ kill
def _descendants(pid: int) -> dict[int, str]:
    """{pid: command line} of every live process below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = {}, [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            try:
                out[c] = (Path("/proc") / str(c) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            todo.append(c)
    return out


def _has_torch(pid: int) -> bool:
    try:
        return "libtorch" in (Path("/proc") / str(pid) / "maps").read_text()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in (Path("/proc") / str(pid) / "status").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_killed_run_notebook_leaves_nothing_that_writes(bundle, synth_root, tmp_path, sig):
    """``kill -9`` (or SIGTERM) of tools/run_notebook.py while its kernel runs the notebook: the runner and
    the kernel are gone at once, and no submission appears at --out in the 10 s after the kill (the
    unkilled run writes it a few seconds after the kernel has imported torch)."""
    import signal
    import time

    out = tmp_path / "submission.csv"
    p = subprocess.Popen([sys.executable, str(ROOT / "tools" / "run_notebook.py"), "--bundle", str(bundle),
                          "--data-root", str(synth_root), "--out", str(out)], cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kernel, t0 = None, time.time()
    while kernel is None and time.time() - t0 < 120:  # the kernel is up and in the notebook's first cells
        kernel = next((k for k, cmd in _descendants(p.pid).items() if "ipykernel" in cmd and _has_torch(k)), None)
        time.sleep(0.05)
    assert kernel is not None and p.poll() is None and not out.exists()
    tree = _descendants(p.pid)
    p.send_signal(getattr(signal, sig))
    p.wait(timeout=30)
    t_kill = time.time()
    while time.time() - t_kill < 10:
        assert not out.exists(), f"{out} written {time.time() - t_kill:.1f} s after the kill"
        time.sleep(0.1)
    alive = [k for k in tree if _alive(k)]
    assert alive == [], {k: tree[k] for k in alive}
    assert not out.exists() and not list(tmp_path.glob(".submission.csv.*.tmp"))
