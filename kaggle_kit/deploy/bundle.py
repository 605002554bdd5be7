"""The offline bundle a user uploads as a Kaggle dataset.

    <out>/bundle.json      members (name, family, kind, checkpoints, tta, source), sha256 of every file
    <out>/ensemble.yaml    the tuned ensemble (members renamed to bundle names are not needed: same exps)
    <out>/checkpoints/<exp>/fold<K>.pth   self-describing inference checkpoints (weights_only loadable)
    <out>/wheels/          kaggle_kit + every runtime dependency beyond torch/torchvision
    <out>/kaggle_kit_inference.ipynb      the notebook

The dependency closure is read from this environment's installed distributions (exact versions) and
fetched with ``pip download --no-deps`` for a chosen Python version and platform, so the notebook can
``pip install --no-index --no-deps`` them with nothing else.
"""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from kaggle_kit.engine.checkpoint import load_inference_checkpoint
from kaggle_kit.io.probmaps import ProbMapStore
from kaggle_kit.paths import inference_checkpoint
from kaggle_kit.utils import atomic_write_json, atomic_write_text

__all__ = ["RUNTIME_ROOTS", "dependency_closure", "build_bundle"]

ROOT = Path(__file__).resolve().parents[2]
# What the notebook imports at inference time (per family), beyond torch/torchvision.
RUNTIME_ROOTS = {
    "base": ["numpy", "pandas", "scipy", "numba", "opencv-python-headless", "pyyaml", "tqdm"],
    "seg25d": ["segmentation-models-pytorch", "timm"],
    "cls": ["timm"],
    "seg3d": ["monai"],
    "det_yolo": ["ultralytics"],
}
# Provided by the Kaggle image / installed separately: never bundled.
EXCLUDE = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*|setuptools|pip|wheel)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_closure(roots: list[str]) -> dict[str, str]:
    """{distribution: version} of ``roots`` and everything they require (markers evaluated here, no
    extras), from the installed distributions; excluded names (torch & co.) are cut with their subtree."""
    from packaging.requirements import Requirement

    out: dict[str, str] = {}
    todo = [_norm(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in out or EXCLUDE.match(name):
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise RuntimeError(f"{name} is not installed here; run `make install` first") from None
        out[name] = dist.version
        for r in dist.requires or []:
            req = Requirement(r)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            todo.append(_norm(req.name))
    return dict(sorted(out.items()))


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download_wheels(dists: dict[str, str], dest: Path, python_version: str, platform: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    specs = [f"{n}=={v}" for n, v in dists.items()]
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest)]
    plat = ["--only-binary=:all:", "--python-version", python_version, "--platform", platform,
            "--implementation", "cp"]
    p = subprocess.run(base + plat + specs, capture_output=True, text=True)
    if p.returncode == 0:
        return
    # One at a time, so a pure-python sdist-only package can be built into a wheel locally instead.
    for spec in specs:
        p = subprocess.run(base + plat + [spec], capture_output=True, text=True)
        if p.returncode != 0:
            w = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest), spec],
                               capture_output=True, text=True)
            if w.returncode != 0:
                raise RuntimeError(f"could not get a wheel for {spec}: {p.stderr[-500:]} {w.stderr[-500:]}")


def build_bundle(out, ensemble_yaml, work_root, preds_root, *, python_version: str = "3.11",
                 platform: str = "manylinux2014_x86_64", wheels: bool = True, which: str = "best") -> dict:
    """Assemble the bundle folder; returns its manifest. Every checkpoint is test-loaded (weights_only)."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    (out / "checkpoints").mkdir(parents=True)
    ens = yaml.safe_load(Path(ensemble_yaml).read_text())
    store = ProbMapStore(preds_root)
    members, families = [], set()
    for m in ens["members"]:
        exp = m["exp"]
        man = store.manifest(exp, "oof")
        fam = man["family"]
        entry = {"name": m.get("name", exp), "exp": exp, "kind": man["kind"], "family": fam,
                 "tta": man.get("tta") or "none", "predictor": man.get("predictor") or {}, "checkpoints": []}
        if fam.endswith("_aux"):  # classifier maps from a pixel member's aux head: no model of its own
            entry["source"] = exp[: -len("_aux")]
            entry["family"] = fam[: -len("_aux")]
            members.append(entry)
            continue
        families.add(fam)
        for k in man["folds"]:
            src = inference_checkpoint(work_root, fam, exp, k, which)
            load_inference_checkpoint(src)  # fails here, not on Kaggle, if it is not loadable
            dst = out / "checkpoints" / exp / f"fold{k}.pth"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            entry["checkpoints"].append(str(dst.relative_to(out)))
        members.append(entry)
    atomic_write_text(out / "ensemble.yaml", yaml.safe_dump(ens, sort_keys=False))
    shutil.copy2(ROOT / "submission" / "kaggle_kit_inference.ipynb", out / "kaggle_kit_inference.ipynb")
    deps = {}
    if wheels:
        roots = RUNTIME_ROOTS["base"] + [r for f in sorted(families) for r in RUNTIME_ROOTS.get(f, [])]
        deps = dependency_closure(roots)
        _download_wheels(deps, out / "wheels", python_version, platform)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(out / "wheels"), str(ROOT)], check=True, capture_output=True)
    files = {str(p.relative_to(out)): _sha256(p) for p in sorted(out.rglob("*")) if p.is_file()}
    manifest = {"format": 1, "ensemble": "ensemble.yaml", "members": members, "dependencies": deps,
                "python_version": python_version, "platform": platform, "sha256": files}
    atomic_write_json(out / "bundle.json", manifest)
    return manifest
