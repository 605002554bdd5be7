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

import functools
import hashlib
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from kaggle_kit.config import parse_yaml
from kaggle_kit.engine.checkpoint import load_inference_checkpoint
from kaggle_kit.io.probmaps import ProbMapStore
from kaggle_kit.paths import inference_checkpoint
from kaggle_kit.utils import UserError, atomic_write_json, atomic_write_text, staged_dir

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


class BundleOutError(UserError, ValueError):
    """An ``--out`` that building the bundle could destroy: the project, a folder holding the inputs, or a
    non-empty folder that is not a previous bundle."""


def check_bundle_out(out, inputs) -> Path:
    """The resolved ``out``; BundleOutError unless it is new, empty, or a previous bundle (has bundle.json),
    and neither the project root, the current or home folder, nor an input or a folder above one."""
    final = Path(out).resolve()
    for name, danger in (("the project root", ROOT), ("the current folder", Path.cwd()), ("your home folder", Path.home())):
        if final == danger.resolve():
            raise BundleOutError(f"--out {out}: is {name}; building a bundle replaces its --out folder: pass a new "
                                 "folder, e.g. bundle/")
    for src in inputs:
        src = Path(src).resolve()
        if final == src or final in src.parents:
            raise BundleOutError(f"--out {out}: holds the input {src}; pass a new folder outside it")
    if final.exists():
        if not final.is_dir():
            raise BundleOutError(f"--out {out}: is a file; pass a folder")
        if any(final.iterdir()) and not (final / "bundle.json").is_file():
            raise BundleOutError(f"--out {out}: a non-empty folder that is not a previous bundle (no bundle.json); "
                                 "pass a new or empty folder")
    return final


def _staged_out(build):
    """Build into a hidden sibling folder, checked first (``check_bundle_out``); it replaces ``out`` only
    when the whole build succeeded, so a bad input or a kill never costs the user's folder or a good bundle."""
    @functools.wraps(build)
    def wrapper(out, ensemble_yaml, work_root, preds_root, **kw):
        final = check_bundle_out(out, [ensemble_yaml, work_root, preds_root])
        with staged_dir(final) as tmp:
            return build(tmp, ensemble_yaml, work_root, preds_root, **kw)
    return wrapper


@_staged_out
def build_bundle(out, ensemble_yaml, work_root, preds_root, *, python_version: str = "3.11",
                 platform: str = "manylinux2014_x86_64", wheels: bool = True, which: str = "best") -> dict:
    """Assemble the bundle folder; returns its manifest. Every checkpoint is test-loaded (weights_only)."""
    out = Path(out)  # an empty staging folder (_staged_out)
    (out / "checkpoints").mkdir(parents=True)
    ens = parse_yaml(Path(ensemble_yaml).read_text(), str(ensemble_yaml))
    if not isinstance(ens, dict) or not isinstance(ens.get("members"), list):
        raise BundleOutError(f"{ensemble_yaml}: not an ensemble YAML (no members list); pass tools/tune_oof.py's output")
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
