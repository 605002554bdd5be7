"""Wheels for the Kaggle image (CPython 3.12, glibc 2.35, x86_64): tags, the target's closure, no fallback,
the runtime dependencies of each member, dataset-metadata.json; the real bundle (slow, downloads wheels)."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.utils import parse_wheel_filename

from kaggle_kit.deploy import bundle as bundle_mod
from kaggle_kit.deploy.bundle import dataset_metadata, member_runtime_deps
from kaggle_kit.deploy.wheels import (WheelError, check_wheels, collect_wheels, manylinux_platforms,
                                      read_wheel_metadata, target)

from tests.conftest import ROOT, run_tool

MMSEG = {"mmsegmentation", "mmengine", "mmcv-lite", "ftfy", "regex"}


# --- an explicit, hand-written compatibility rule for CPython 3.12 on manylinux_2_35 x86_64 -------------------
# (independent of packaging.tags: what PEP 425 / 600 / 384 say such an interpreter installs)

def kaggle_accepts(interpreter: str, abi: str, plat: str) -> bool:
    if plat == "any":
        plat_ok = True
    elif plat.startswith("manylinux_2_") and plat.endswith("_x86_64"):
        plat_ok = int(plat[len("manylinux_2_"):-len("_x86_64")]) <= 35
    else:
        plat_ok = plat in ("manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64")
    if not plat_ok:
        return False
    if interpreter == "cp312":
        return abi in ("cp312", "abi3", "none")
    if interpreter.startswith("cp3") and abi == "abi3":  # stable ABI from an older 3.x
        return int(interpreter[3:]) <= 12
    if interpreter == "py3" or (interpreter.startswith("py3") and int(interpreter[3:]) <= 12):
        return abi == "none"
    return False


def wheel_ok_by_hand(filename: str) -> bool:
    """Any of the file name's compressed tag sets (``a.b-c-d.e``) accepted by :func:`kaggle_accepts`."""
    stem = filename[:-len(".whl")]
    interps, abis, plats = stem.split("-")[-3:]
    return any(kaggle_accepts(i, a, p) for i in interps.split(".") for a in abis.split(".") for p in plats.split("."))


def make_wheel(folder: Path, name: str, version: str, tag: str, requires=()) -> Path:
    """A minimal wheel: one module and a dist-info with METADATA (Requires-Dist lines) and WHEEL."""
    dist = name.replace("-", "_")
    p = Path(folder) / f"{dist}-{version}-{tag}.whl"
    meta = "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
        name, version, "".join(f"Requires-Dist: {r}\n" for r in requires))
    with zipfile.ZipFile(p, "w") as z:
        z.writestr(f"{dist}/__init__.py", "")
        z.writestr(f"{dist}-{version}.dist-info/METADATA", meta)
        z.writestr(f"{dist}-{version}.dist-info/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n")
        z.writestr(f"{dist}-{version}.dist-info/RECORD", "")
    return p


def test_manylinux_platforms_newest_first_with_aliases():
    p = manylinux_platforms(35)
    assert p[:2] == ("manylinux_2_35_x86_64", "manylinux_2_34_x86_64")
    assert p[p.index("manylinux_2_17_x86_64") + 1] == "manylinux2014_x86_64"
    assert p[-2:] == ("manylinux_2_5_x86_64", "manylinux1_x86_64")
    assert len(p) == (35 - 5 + 1) + 3 and "manylinux_2_36_x86_64" not in p


@pytest.mark.parametrize("filename", [
    "numpy-2.4.6-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
    "opencv_python_headless-5.0.0.93-cp37-abi3-manylinux_2_28_x86_64.whl",
    "psutil-7.2.2-cp36-abi3-manylinux2010_x86_64.manylinux_2_12_x86_64.manylinux_2_28_x86_64.whl",
    "mmcv_lite-2.1.0-py2.py3-none-any.whl",
    "timm-1.0.31-py3-none-any.whl",
    "x-1.0-cp312-cp312-manylinux_2_35_x86_64.whl",
    "x-1.0-cp312-cp312-manylinux1_x86_64.whl",
    # refused
    "x-1.0-cp312-cp312-manylinux_2_36_x86_64.whl",        # glibc newer than the image's
    "x-1.0-cp311-cp311-manylinux_2_28_x86_64.whl",        # this machine's interpreter, not the image's
    "x-1.0-cp313-cp313-manylinux_2_28_x86_64.whl",
    "x-1.0-cp313-abi3-manylinux_2_28_x86_64.whl",         # stable ABI of a newer Python
    "x-1.0-cp312-cp312-musllinux_1_2_x86_64.whl",
    "x-1.0-cp312-cp312-manylinux_2_28_aarch64.whl",
    "x-1.0-cp312-cp312-linux_x86_64.whl",                  # a local build: not portable
    "x-1.0-cp312-cp312-win_amd64.whl",
    "x-1.0-py2-none-any.whl",
])
def test_kaggle_target_tags_match_the_hand_rule(filename):
    tags = set(target("kaggle").tags())
    assert bool(parse_wheel_filename(filename)[3] & tags) == wheel_ok_by_hand(filename)


def _index(tmp_path, f_tag="cp312-cp312-manylinux_2_28_x86_64", b_version="2.0"):
    """A small wheel index: a (pure) needs b>=2, c only below 3.12, d only from 3.12, e[x] (whose extra x
    pulls f), and torch (the image's: never needed from the bundle)."""
    idx = tmp_path / "index"
    idx.mkdir()
    make_wheel(idx, "a", "1.0", "py3-none-any",
               ["b>=2", 'c; python_version < "3.12"', 'd; python_version >= "3.12"', "e[x]", "torch>=2.1"])
    make_wheel(idx, "b", b_version, "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64")
    make_wheel(idx, "c", "1.0", "py3-none-any")
    make_wheel(idx, "d", "1.0", "cp311-abi3-manylinux_2_28_x86_64")
    make_wheel(idx, "e", "1.0", "py3-none-any", ['f; extra == "x"', 'g; extra == "y"'])
    make_wheel(idx, "f", "1.0", f_tag)
    return idx


def _folder(idx, tmp_path, names):
    out = tmp_path / "wheels"
    out.mkdir(exist_ok=True)
    for p in idx.glob("*.whl"):
        if parse_wheel_filename(p.name)[0] in names:
            shutil.copy(p, out)
    return out


def test_check_wheels_complete_folder_for_312(tmp_path):
    idx = _index(tmp_path)
    w = _folder(idx, tmp_path, {"a", "b", "d", "e", "f"})  # no c (3.11 only), no g (other extra), no torch
    assert check_wheels(w, ["a"], target("kaggle")) == []


def test_check_wheels_names_every_problem(tmp_path):
    idx = _index(tmp_path, f_tag="cp312-cp312-manylinux_2_36_x86_64", b_version="1.5")
    w = _folder(idx, tmp_path, {"a", "b", "e", "f"})  # d missing, f too new a glibc, b too old
    probs = check_wheels(w, ["a"], target("kaggle"))
    assert len(probs) == 3, probs
    assert any(p.startswith("f-1.0-cp312-cp312-manylinux_2_36_x86_64.whl: no tag for kaggle") for p in probs)
    assert any(p.startswith("d: no wheel (required by a)") for p in probs)
    assert any(p.startswith("b 1.5: outside >=2 required by a") for p in probs)


def _fake_pip(idx, calls):
    """A stand-in for `pip download --no-deps`: copies the newest matching wheel of each spec from ``idx``."""
    from packaging.requirements import Requirement

    def download(specs, dest, tgt):
        calls.append(list(specs))
        tags = set(tgt.tags())
        bad = []
        for s in specs:
            r = Requirement(s)
            hits = [p for p in idx.glob("*.whl") if str(parse_wheel_filename(p.name)[0]) == r.name
                    and r.specifier.contains(str(parse_wheel_filename(p.name)[1]))
                    and parse_wheel_filename(p.name)[3] & tags]
            if not hits:
                bad.append(s)
                continue
            shutil.copy(max(hits, key=lambda p: parse_wheel_filename(p.name)[1]), dest)
        return (1, "".join(f"ERROR: No matching distribution found for {s}\n" for s in bad)) if bad else (0, "")
    return download


def test_collect_wheels_follows_target_markers_and_extras(tmp_path):
    idx = _index(tmp_path)
    calls = []
    got = collect_wheels(["a"], tmp_path / "out", target("kaggle"), download=_fake_pip(idx, calls))
    assert got == {"a": "1.0", "b": "2.0", "d": "1.0", "e": "1.0", "f": "1.0"}
    asked = [s for c in calls for s in c]
    assert not any(s.startswith(("torch", "c", "g")) for s in asked), asked  # never torch, nor off-target names
    assert len(calls) == 3  # a; then b, d, e (a's metadata); then f (e's extra x)


def test_collect_wheels_no_fallback_lists_everything_missing(tmp_path):
    idx = _index(tmp_path, f_tag="cp311-cp311-manylinux_2_28_x86_64")  # f: only a 3.11 wheel
    (idx / "d-1.0-cp311-abi3-manylinux_2_28_x86_64.whl").unlink()
    with pytest.raises(WheelError) as e:
        collect_wheels(["a"], tmp_path / "out", target("kaggle"), download=_fake_pip(idx, []))
    lines = str(e.value).splitlines()
    assert "2 distribution(s)" in lines[0], lines
    assert [ln.split()[0] for ln in lines[1:]] == ["d", "f"], lines  # both, though f is found one round later
    assert not any(p.name.startswith("f-") for p in (tmp_path / "out").glob("*.whl"))  # no 3.11 wheel slipped in


def test_member_runtime_deps_follow_the_model_config():
    assert MMSEG <= set(member_runtime_deps("seg25d", {"backend": "mmseg", "encoder_name": "convnext_tiny"}))
    smp = set(member_runtime_deps("seg25d", {"backend": "smp"}))
    assert "segmentation-models-pytorch" in smp and not (MMSEG & smp)
    assert "monai" in member_runtime_deps("seg3d", {})
    assert "ultralytics" in member_runtime_deps("det_yolo", {})
    for fam in ("seg25d", "seg3d", "cls", "det_yolo"):
        assert not {"torch", "torchvision"} & set(member_runtime_deps(fam, {}))


def test_mmseg_closure_on_the_target_from_installed_metadata():
    """What a bundle with an mmseg member must carry, resolved for 3.12 from the metadata installed here."""
    from kaggle_kit.deploy.wheels import _installed, closure

    need = closure(list(member_runtime_deps("seg25d", {"backend": "mmseg"})), target("kaggle"), _installed)
    assert MMSEG <= set(need) and "torch" not in need and "torchvision" not in need
    assert "numpy" in need and "mmsegmentation" in need["numpy"].parents  # followed through mmseg's own metadata


def test_dataset_metadata():
    m = dataset_metadata("alice/kaggle-kit-bundle")
    assert {k: m[k] for k in ("title", "id", "licenses")} == {
        "title": "kaggle kit bundle", "id": "alice/kaggle-kit-bundle", "licenses": [{"name": "other"}]}
    assert "own licence" in m["description"]  # Kaggle's `other` wants the licence in the description
    assert dataset_metadata("bob/kkb", title="my bundle")["title"] == "my bundle"  # slugs of 3 are fine
    for bad in ("kaggle-kit-bundle", "alice/Kaggle_Kit", "alice/kk", "a/b/c"):
        with pytest.raises(ValueError, match="dataset id"):
            dataset_metadata(bad)
    with pytest.raises(ValueError, match="title"):
        dataset_metadata("bob/kkb")  # "kkb": shorter than Kaggle's 6
    with pytest.raises(ValueError, match="licence"):
        dataset_metadata("alice/kaggle-kit-bundle", license_name="MIT")


# --- bundles of trained tiny members ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mmseg_member(trained_seg25d, tmp_path_factory):
    """The tiny seg25d member plus an mmseg UPerNet member (convnext_atto, untrained weights) with its own
    exported checkpoint and a copy of the OOF manifest: a real, loadable UPerNet checkpoint."""
    from kaggle_kit.engine.checkpoint import load_inference_checkpoint, save_inference_checkpoint
    from kaggle_kit.families.seg25d.train import build_net
    from kaggle_kit.paths import inference_checkpoint

    tmp = tmp_path_factory.mktemp("mm")
    work, preds = tmp / "work", tmp / "preds"
    shutil.copytree(trained_seg25d["work_root"], work)
    shutil.copytree(trained_seg25d["pred_root"], preds)
    _, meta = load_inference_checkpoint(inference_checkpoint(work, "seg25d", "tiny_cpu", 0, "best"))
    model = dict(meta["model"], backend="mmseg", encoder_name="convnext_atto", extra={"channels": 32})
    net = build_net(model, meta["in_channels"], load_weights=False)
    meta = dict(meta, model=model, exp="tiny_mm")
    for which in ("best", "last"):
        save_inference_checkpoint(inference_checkpoint(work, "seg25d", "tiny_mm", 0, which), net.state_dict(), meta)
    shutil.copytree(preds / "tiny_cpu", preds / "tiny_mm")
    man_p = preds / "tiny_mm" / "oof" / "manifest.json"
    man = json.loads(man_p.read_text())
    man_p.write_text(json.dumps(dict(man, exp="tiny_mm")))
    ens = tmp / "ensemble.yaml"
    ens.write_text(yaml.safe_dump({"members": [{"exp": "tiny_cpu", "kind": "pixel", "weight": 1.0},
                                               {"exp": "tiny_mm", "kind": "pixel", "weight": 1.0}],
                                   "threshold": 0.5}))
    return {"work_root": work, "pred_root": preds, "ensemble": ens}


def test_bundle_of_an_mmseg_member_asks_for_mmseg(mmseg_member, tmp_path, monkeypatch):
    asked = {}

    def fake_collect(requirements, dest, tgt, **kw):
        asked.update(requirements=list(requirements), target=tgt.name)
        return {}

    monkeypatch.setattr(bundle_mod, "collect_wheels", fake_collect)
    man = bundle_mod.build_bundle(tmp_path / "b", mmseg_member["ensemble"], mmseg_member["work_root"],
                                  mmseg_member["pred_root"], dataset_id="alice/kaggle-kit-bundle")
    assert asked["target"] == "kaggle" and asked["requirements"][0] == "kaggle_kit"
    assert MMSEG <= set(asked["requirements"]) and "segmentation-models-pytorch" in asked["requirements"]
    members = {m["name"]: m for m in man["members"]}
    assert MMSEG <= set(members["tiny_mm"]["runtime_deps"])
    assert not MMSEG & set(members["tiny_cpu"]["runtime_deps"])
    meta = json.loads((tmp_path / "b" / "dataset-metadata.json").read_text())
    assert meta["id"] == "alice/kaggle-kit-bundle" and "dataset-metadata.json" in man["sha256"]
    # the kaggle_kit wheel (built for real) carries the mmcv.ops stand-in
    kk = [p for p in (tmp_path / "b" / "wheels").glob("kaggle_kit-*.whl")]
    assert len(kk) == 1 and "kaggle_kit/_compat/mmcv_ops.py" in zipfile.ZipFile(kk[0]).namelist()
    assert parse_wheel_filename(kk[0].name)[3] & set(target("kaggle").tags())


def _pip_resolves_offline(wheels: Path, requirements: list[str], tmp_path: Path) -> dict:
    """pip itself (not our resolver) installs ``requirements`` for CPython 3.12 / manylinux_2_35 x86_64 from
    ``wheels`` alone (--no-index, no pip config), torch/torchvision answered by empty stand-in wheels at the
    image's versions; returns pip's --report."""
    stubs = tmp_path / "image_provides"
    stubs.mkdir()
    make_wheel(stubs, "torch", "2.14.1", "py3-none-any")
    make_wheel(stubs, "torchvision", "0.29.1", "py3-none-any")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    plats = [a for p in target("kaggle").platforms for a in ("--platform", p)]
    report = tmp_path / "report.json"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-index",
                        "--find-links", str(wheels), "--find-links", str(stubs), "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", *plats,
                        "--target", str(tmp_path / "t"), "--report", str(report), "-q", *requirements],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(report.read_text())


@pytest.mark.slow
def test_real_bundle_for_kaggle_installs_on_312(mmseg_member, tmp_path):
    """Downloads the cp312 wheels (~200 MB from the package index) for a bundle of a trained smp member and an
    mmseg UPerNet member, then checks every wheel by the hand rule and resolves with pip for 3.12."""
    b = tmp_path / "bundle"
    run_tool("bundle.py", "--out", b, "--ensemble", mmseg_member["ensemble"], "--work-root",
             mmseg_member["work_root"], "--preds", mmseg_member["pred_root"], "--dataset-id", "alice/kaggle-kit-bundle")
    man = json.loads((b / "bundle.json").read_text())
    assert man["target"]["python_version"] == "3.12"
    wheels = sorted((b / "wheels").glob("*.whl"))
    bad = [w.name for w in wheels if not wheel_ok_by_hand(w.name)]
    assert not bad, bad
    names = {str(parse_wheel_filename(w.name)[0]) for w in wheels}
    assert MMSEG | {"kaggle-kit", "segmentation-models-pytorch", "timm", "numpy", "numba"} <= names
    assert not names & {"torch", "torchvision", "triton"} and not any(n.startswith("nvidia") for n in names)
    assert set(man["dependencies"]) == names
    reqs = man["requirements"]
    rep = _pip_resolves_offline(b / "wheels", reqs, tmp_path)
    installed = {str(parse_wheel_filename(Path(i["download_info"]["url"]).name)[0]) for i in rep["install"]}
    assert installed - {"torch", "torchvision"} <= names and MMSEG <= installed
    # kaggle_kit's own requirements (every extra a member asked for) resolve too: per wheel METADATA
    assert read_wheel_metadata(next(w for w in wheels if w.name.startswith("kaggle_kit-"))).version == "0.1.0"


@pytest.mark.slow
def test_real_bundle_wheels_import_on_python312(mmseg_member, tmp_path):
    """Where a CPython 3.12 is on this machine (pyenv): the bundle's wheels install into a fresh 3.12 venv with
    --no-index --no-deps (as the notebook does) and the torch-free modules import."""
    cands = [*sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12")), shutil.which("python3.12")]
    py312 = next((str(c) for c in cands if c and subprocess.run([str(c), "-V"], capture_output=True).returncode == 0),
                  None)
    if py312 is None:
        pytest.skip("no CPython 3.12 here")
    b = tmp_path / "bundle"
    run_tool("bundle.py", "--out", b, "--ensemble", mmseg_member["ensemble"], "--work-root",
             mmseg_member["work_root"], "--preds", mmseg_member["pred_root"], "--dataset-id", "alice/kaggle-kit-bundle")
    venv = tmp_path / "venv312"
    subprocess.run([py312, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    p = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "--no-index", "--no-deps", "-q",
                        *map(str, sorted((b / "wheels").glob("*.whl")))], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    code = ("import sys, numpy, scipy, pandas, numba, cv2, yaml, regex, ftfy; import kaggle_kit.post.kernels, "
            "kaggle_kit.io.submission; assert sys.version_info[:2] == (3, 12); print(numpy.__version__)")
    p = subprocess.run([str(venv / "bin/python"), "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-3000:]


def test_pyproject_ranges_and_constraints_agree():
    """pyproject.toml: ranges only (no exact pins), no upper bound on Python; constraints.txt pins every one of
    them (torch / torchvision at the releases on this disk) inside its range, so `make install` is exact."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert proj["requires-python"] == ">=3.11"
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    reqs = list(proj["dependencies"]) + [r for rs in proj["optional-dependencies"].values() for r in rs]
    for r in map(Requirement, reqs):
        name = canonicalize_name(r.name)
        if name == "kaggle-kit":
            continue  # the `all` extra
        assert not any(s.operator == "==" for s in r.specifier), f"{r}: exact pins belong in constraints.txt"
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert r.specifier.contains(pins[name]), f"{name}=={pins[name]} outside {r.specifier}"


def test_member_predictor_entry_from_the_manifest():
    """bundle.json's member ``tta`` / ``predictor`` (the notebook passes predictor as make_predictor's keyword
    arguments, tta on its own) come from the manifest's ``predictor``, the family's predictor_settings verbatim;
    a manifest written before ``predictor`` held ``tta`` gives it as its own key."""
    from kaggle_kit.deploy.bundle import _predictor_entry

    now = {"tta": "none", "predictor": {"tta": "hflip", "batch_size": 5, "strides": [1, 2]}}
    assert _predictor_entry(now) == {"tta": "hflip", "predictor": {"batch_size": 5, "strides": [1, 2]}}
    assert now["predictor"]["tta"] == "hflip"  # the manifest is not changed
    older = {"tta": "axes", "predictor": {"overlap": 0.6, "window": None, "batch_size": 2}}
    assert _predictor_entry(older) == {"tta": "axes", "predictor": {"overlap": 0.6, "window": None, "batch_size": 2}}
    assert _predictor_entry({"tta": None}) == {"tta": "none", "predictor": {}}
