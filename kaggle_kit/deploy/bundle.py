"""The offline bundle a user uploads as a Kaggle dataset.

    <out>/bundle.json      members (name, family, kind, checkpoints, tta, source), dependencies, target,
                           sha256 of every file; a member trained with ``data.crop: boxes`` brings its
                           detector as a member of kind ``boxes`` (not in the ensemble; ``box_params``)
    <out>/ensemble.yaml    the tuned ensemble (members renamed to bundle names are not needed: same exps)
    <out>/checkpoints/<exp>/fold<K>.pth   self-describing inference checkpoints (weights_only loadable)
    <out>/wheels/          kaggle_kit + every runtime dependency beyond torch/torchvision, for the target image
    <out>/kaggle_kit_inference.ipynb      the notebook
    <out>/dataset-metadata.json           Kaggle dataset metadata (title, id, licenses) for the kaggle CLI

The wheels are for a target image (:mod:`kaggle_kit.deploy.wheels`): ``kaggle`` (CPython 3.12, glibc 2.35,
x86_64; the default) or ``local`` (this interpreter). What they must cover is kaggle_kit's own requirements
plus, for each member in the ensemble, its family's ``runtime_deps(model_cfg)`` (an mmseg UPerNet member
brings mmsegmentation, mmengine, mmcv-lite, ftfy and regex), closed over their requirements with the
target's markers. Versions are those installed here; a distribution with no wheel for the target is an
error listing all of them (no fallback), so the notebook can ``pip install --no-index --no-deps`` them.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from kaggle_kit.config import parse_yaml
from kaggle_kit.deploy.wheels import collect_wheels, target as get_target
from kaggle_kit.engine.checkpoint import load_inference_checkpoint
from kaggle_kit.io.boxes import read_boxes_manifest
from kaggle_kit.io.probmaps import ProbMapStore
from kaggle_kit.paths import inference_checkpoint
from kaggle_kit.registry import resolve
from kaggle_kit.utils import UserError, atomic_write_json, atomic_write_text, sha256_file, staged_dir

__all__ = ["build_bundle", "dataset_metadata", "member_runtime_deps"]

ROOT = Path(__file__).resolve().parents[2]
_DATASET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*/[a-z0-9][a-z0-9-]{2,49}$")
# Kaggle's dataset licence names (Kaggle/kaggle-api docs/datasets_metadata.md)
KAGGLE_LICENSES = ("CC0-1.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC-BY-NC-SA-4.0", "GPL-2.0", "ODbL-1.0", "DbCL-1.0",
                   "copyright-authors", "other", "unknown", "CC-BY-4.0", "CC-BY-NC-4.0", "PDDL", "CC-BY-3.0",
                   "CC-BY-3.0-IGO", "US-Government-Works", "CC-BY-NC-SA-3.0-IGO", "CDLA-Permissive-1.0",
                   "CDLA-Sharing-1.0", "CC-BY-ND-4.0", "CC-BY-NC-ND-4.0", "ODC-BY-1.0", "LGPL-3.0", "AGPL-3.0",
                   "FDL-1.3", "EU-ODP-Legal-Notice", "apache-2.0", "GPL-3.0")


def member_runtime_deps(family: str, model_cfg: dict | None) -> tuple[str, ...]:
    """Distribution names a member of ``family`` with this ``model`` section needs at inference, beyond
    torch/torchvision and kaggle_kit's own requirements (the family's ``runtime_deps``)."""
    return tuple(resolve("family", family).runtime_deps(model_cfg or {}))


def dataset_metadata(dataset_id: str | None = None, title: str | None = None, license_name: str = "other") -> dict:
    """Kaggle dataset metadata (``dataset-metadata.json``) for ``kaggle datasets create -p <bundle>``.

    ``dataset_id`` is ``<kaggle user>/<slug>`` (slug: 3-50 of a-z, 0-9, -); default
    ``$KAGGLE_USERNAME/kaggle-kit-bundle`` (``your-kaggle-username`` when unset: edit the file or pass
    ``--dataset-id``). ``title``: 6-50 characters (default from the slug). ``license_name``: one of
    :data:`KAGGLE_LICENSES`, ``other`` by default, the description saying that the wheels keep their own."""
    if dataset_id is None:
        dataset_id = f"{os.environ.get('KAGGLE_USERNAME') or 'your-kaggle-username'}/kaggle-kit-bundle"
    if not _DATASET_ID.match(dataset_id):
        raise ValueError(f"dataset id {dataset_id!r}: expected <kaggle user>/<slug>, slug 3-50 characters of "
                         "a-z, 0-9 and '-' (e.g. alice/kaggle-kit-bundle)")
    title = title or dataset_id.split("/", 1)[1].replace("-", " ")
    if not 6 <= len(title) <= 50:
        raise ValueError(f"dataset title {title!r}: Kaggle wants 6 to 50 characters")
    if license_name not in KAGGLE_LICENSES:
        raise ValueError(f"dataset licence {license_name!r}: Kaggle accepts {list(KAGGLE_LICENSES)}")
    return {"title": title, "id": dataset_id, "licenses": [{"name": license_name}],
            "description": "kaggle_kit offline bundle: inference checkpoints, the tuned ensemble, the notebook, and "
                           "wheels of third-party packages, each under its own licence (see its METADATA)."}


def _detector_entry(exp: str, out: Path, work_root, preds_root, which, requirements: list) -> dict:
    """Bundle entry (kind ``boxes``, not an ensemble member) of the detector experiment whose boxes crop members
    read (``data.boxes_exp`` in their checkpoint meta): the fold models and box post-processing of its test
    boxes (its OOF ones when it predicted no test split), i.e. what ``tools/predict.py`` gave those members."""
    try:
        man = read_boxes_manifest(preds_root, exp, "test")
    except FileNotFoundError:
        man = read_boxes_manifest(preds_root, exp, "oof")
    fam, params = man["family"], man["params"]
    entry = {"name": exp, "exp": exp, "kind": "boxes", "family": fam, **_predictor_entry(man),
             "box_params": params, "checkpoints": []}
    folds = ["all"] if man.get("trained_on_all") else man["folds"]
    _copy_checkpoints(entry, folds, which or params.get("checkpoint") or "best", work_root, out, requirements)
    return entry


def _predictor_entry(man: dict) -> dict:
    """A member's ``tta`` and ``predictor`` (make_predictor's other keyword arguments, which the notebook passes
    as they are) from its manifest's ``predictor``: the family's ``predictor_settings(cfg)`` verbatim, as
    ``predict()`` built its predictors (manifests written before it held ``tta`` give it as their own key)."""
    settings = dict(man.get("predictor") or {})
    tta = settings.pop("tta", man.get("tta") or "none")
    return {"tta": tta, "predictor": settings}


def _copy_checkpoints(entry: dict, folds, which: str, work_root, out: Path, requirements: list) -> list[dict]:
    """Copy the fold checkpoints of ``entry`` (its family and exp) into ``out/checkpoints/<exp>/``, test-loading
    each (weights_only: it fails here, not on Kaggle); fills ``entry["checkpoints"]`` and its runtime deps
    (added to ``requirements``). Returns the checkpoints' metas."""
    fam, exp, metas = entry["family"], entry["exp"], []
    for k in folds:
        src = inference_checkpoint(work_root, fam, exp, k, which)
        _, meta = load_inference_checkpoint(src)
        metas.append(meta)
        entry["runtime_deps"] = list(member_runtime_deps(fam, meta.get("model") or meta.get("model_cfg")))
        requirements += [d for d in entry["runtime_deps"] if d not in requirements]
        dst = out / "checkpoints" / exp / f"fold{k}.pth"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        entry["checkpoints"].append(str(dst.relative_to(out)))
    return metas


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
def build_bundle(out, ensemble_yaml, work_root, preds_root, *, target: str = "kaggle", wheels: bool = True,
                 which: str | None = None, dataset_id: str | None = None, title: str | None = None,
                 license_name: str = "other") -> dict:
    """Assemble the bundle folder; returns its manifest. Every checkpoint is test-loaded (weights_only).

    ``target``: the image the wheels are for (``kaggle`` | ``local``, :mod:`kaggle_kit.deploy.wheels`);
    ``wheels=False`` ships none (an environment that has kaggle_kit). ``dataset_id`` / ``title`` /
    ``license_name``: :func:`dataset_metadata`. Raises WheelError (a RuntimeError) listing every dependency
    with no wheel for the target.

    ``which`` ("best" | "last"): the fold checkpoints to ship; None (default) = the one each member's stored
    maps were predicted with (its OOF manifest's ``checkpoint``), so the notebook runs the models the
    ensemble was tuned on."""
    out = Path(out)  # an empty staging folder (_staged_out)
    (out / "checkpoints").mkdir(parents=True)
    ens = parse_yaml(Path(ensemble_yaml).read_text(), str(ensemble_yaml))
    if not isinstance(ens, dict) or not isinstance(ens.get("members"), list):
        raise BundleOutError(f"{ensemble_yaml}: not an ensemble YAML (no members list); pass tools/tune_oof.py's output")
    store = ProbMapStore(preds_root)
    metadata = dataset_metadata(dataset_id, title, license_name)  # a bad id fails before any work
    members, requirements = [], ["kaggle_kit"]
    detectors: set[str] = set()  # detector experiments whose boxes crop members read
    for m in ens["members"]:
        exp = m["exp"]
        man = store.manifest(exp, "oof")
        fam = man["family"]
        entry = {"name": m.get("name", exp), "exp": exp, "kind": man["kind"], "family": fam,
                 **_predictor_entry(man), "checkpoints": []}
        if fam.endswith("_aux"):  # classifier maps from a pixel member's aux head: no model of its own
            entry["source"] = exp[: -len("_aux")]
            entry["family"] = fam[: -len("_aux")]
            members.append(entry)
            continue
        metas = _copy_checkpoints(entry, man["folds"], which or man.get("checkpoint") or "best", work_root, out,
                                  requirements)
        # a member cropping with detector boxes: the notebook runs that detector first
        detectors.update(m["data"]["boxes_exp"] for m in metas if (m.get("data") or {}).get("crop") == "boxes")
        members.append(entry)
    for exp in sorted(detectors - {m["name"] for m in members}):
        members.append(_detector_entry(exp, out, work_root, preds_root, which, requirements))
    atomic_write_text(out / "ensemble.yaml", yaml.safe_dump(ens, sort_keys=False))
    shutil.copy2(ROOT / "submission" / "kaggle_kit_inference.ipynb", out / "kaggle_kit_inference.ipynb")
    atomic_write_json(out / "dataset-metadata.json", metadata)
    tgt = get_target(target)
    deps = {}
    if wheels:
        # kaggle_kit's own wheel first: its Requires-Dist (pyproject's ranges) roots the closure
        p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(out / "wheels"), str(ROOT)], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"building the kaggle_kit wheel failed: {p.stderr[-1000:]}")
        deps = collect_wheels(requirements, out / "wheels", tgt)
    files = {str(p.relative_to(out)): sha256_file(p) for p in sorted(out.rglob("*")) if p.is_file()}
    manifest = {"format": 2, "ensemble": "ensemble.yaml", "members": members, "requirements": requirements,
                "dependencies": deps, "target": {"name": tgt.name, "python_version": tgt.python_version,
                                                 "platforms": list(tgt.platforms)},
                "sha256": files}
    atomic_write_json(out / "bundle.json", manifest)
    return manifest
