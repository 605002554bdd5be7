"""The bundle's members loaded for the notebook, and every member run on one case-day (detectors first: their
boxes feed the members trained with ``data.crop: boxes``; fold models averaged)."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.deploy.messages import say
from kaggle_kit.families.det_yolo.predict import case_day_boxes
from kaggle_kit.registry import resolve
from kaggle_kit.utils import sha256_file

__all__ = ["LoadedMember", "TTA_PASSES", "check_checkpoint", "load_bundle_members", "predict_case_day"]

TTA_PASSES = {"hflip": 2, "gamma": 3}  # forward passes per input of each TTA (others: 2, as a flip)


@dataclasses.dataclass
class LoadedMember:
    name: str
    kind: str  # pixel | classifier | boxes
    predictors: list
    source: str | None = None  # for aux classifier members: the pixel member whose head provides them
    boxes_from: str | None = None  # crop members: the detector member whose boxes they read
    box_params: dict | None = None  # detector members: smoothing / margin / fallback (boxes.json params)

    @property
    def tta(self) -> list[str]:
        return sorted({getattr(p, "tta", "none") for p in self.predictors} - {"none"})

    @property
    def tta_passes(self) -> int:
        """Forward passes per input under its TTA: 2 for flips (hflip), 3 for the 2.5D gamma TTA, 1 without."""
        return max([TTA_PASSES.get(t, 2) for t in self.tta] or [1])


def _crop_detector(predictors) -> str | None:
    """The detector experiment a member's checkpoints crop with (``data.crop: boxes`` in their meta)."""
    for p in predictors:
        d = (getattr(p, "meta", None) or {}).get("data") or {}
        if d.get("crop") == "boxes":
            return d.get("boxes_exp") or "?"
    return None


def check_checkpoint(bundle: Path, rel: str, sha256: dict | None) -> str | None:
    """Why the checkpoint ``rel`` of the bundle may not be used, or None: missing, or its bytes differ from
    the sha256 ``bundle.json`` records for it (``sha256``: its ``sha256`` map; None: an old bundle without
    one, nothing to check against)."""
    path = Path(bundle) / rel
    if not path.is_file():
        return f"{path}: file missing from the bundle"
    if sha256 is None:
        return None
    want = sha256.get(rel)
    if want is None:
        return f"{path}: bundle.json records no sha256 for it (a file added after the bundle was built)"
    got = sha256_file(path)
    if got != want:
        return (f"{path}: sha256 {got[:12]}... differs from the {want[:12]}... bundle.json records "
                "(altered or replaced after the bundle was built)")
    return None


def load_bundle_members(bundle: Path, spec: list[dict], device=None, sha256: dict | None = None
                        ) -> tuple[list[LoadedMember], list[str], list[dict]]:
    """Load every member's fold models; returns (loaded, dropped messages, dropped units). Never raises for
    a bad member or fold.

    Each checkpoint is checked first (:func:`check_checkpoint`: present, its sha256 the one ``bundle.json``
    records); a fold that is missing, altered or fails to load is dropped and its member averages the folds
    left; a member with no fold left is dropped. The units are dicts ``{"unit": "fold" | "member", "name",
    "reason"}``. A member whose checkpoints say ``data.crop: boxes`` is wired to the detector member of that
    experiment (``boxes_from``); when the bundle has no such detector, or it did not load, the member is
    dropped."""
    bundle = Path(bundle)
    loaded, dropped, units = [], [], []

    def drop(name, why, unit="member"):
        msg = f"{unit} {name!r} dropped: {why}"
        say(msg, warn=True)
        dropped.append(msg)
        units.append({"unit": unit, "name": name, "reason": why})

    for m in spec:
        if m.get("source"):  # e.g. the aux presence head of a 2.5D member: no model of its own
            loaded.append(LoadedMember(m["name"], m["kind"], [], m["source"]))
            continue
        try:
            fam = resolve("family", m["family"])
            kw = {"batch_size": m.get("batch_size", 32), **(m.get("predictor") or {})}  # as predict.py made the maps
            cks = list(m["checkpoints"])
            if not cks:
                raise ValueError("no checkpoints listed")
        except Exception as e:  # noqa: BLE001 - any failure drops the member, never the submission
            drop(m["name"], f"{type(e).__name__}: {e}")
            continue
        preds, bad = [], []
        for ck in cks:
            why = check_checkpoint(bundle, ck, sha256)
            if why is None:
                try:
                    preds.append(fam.make_predictor(bundle / ck, tta=m.get("tta", "none"), device=device, **kw))
                    continue
                except Exception as e:  # noqa: BLE001
                    why = f"{bundle / ck}: {type(e).__name__}: {e}"
            bad.append((ck, why))
        if not preds:
            drop(m["name"], "no fold left: " + "; ".join(why for _, why in bad))
            continue
        for ck, why in bad:
            drop(f"{m['name']}:{ck}", f"{why}; {m['name']!r} averages its {len(preds)} other fold(s)", unit="fold")
        loaded.append(LoadedMember(m["name"], m["kind"], preds, box_params=m.get("box_params"),
                                   boxes_from=_crop_detector(preds)))
    detectors = {m.name for m in loaded if m.kind == "boxes"}
    for m in list(loaded):
        if m.boxes_from and m.boxes_from not in detectors:
            loaded.remove(m)
            was = {s["name"] for s in spec}
            drop(m.name, f"it crops with the boxes of detector {m.boxes_from!r}, which "
                         f"{'did not load' if m.boxes_from in was else 'the bundle lacks'}")
    names = {m.name for m in loaded}
    for m in list(loaded):
        if m.source and m.source not in names:
            loaded.remove(m)
            drop(m.name, f"its source {m.source!r} was dropped")
    return loaded, dropped, units


def _predict_member(m: LoadedMember, vols, cd: str, boxes=None, strict: bool = True, fold_failures=None):
    """Mean over the member's fold models: (map float32, aux presence (D, C) or None). Not ``strict``: a
    fold that raises is left out of this case-day's mean (``fold_failures`` gets (fold index, message));
    the member fails only when every fold does."""
    acc, pres, n = None, None, 0
    kw = {} if boxes is None else {"boxes": boxes}
    err = None
    for k, p in enumerate(m.predictors):
        try:
            out = p(vols, vols.split, cd, **kw)
        except Exception as e:  # noqa: BLE001
            if strict:
                raise
            err = e
            if fold_failures is not None:
                fold_failures.append((k, f"{type(e).__name__}: {e}"))
            continue
        acc = out if acc is None else acc + out
        n += 1
        lp = getattr(p, "last_presence", None)
        if lp is not None:
            pres = lp if pres is None else pres + lp
    if n == 0:
        raise err
    return acc / n, (None if pres is None else pres / n)


def _detector_boxes(m: LoadedMember, vols, cd: str) -> pd.DataFrame:
    """The detector member's box table of one case-day, indexed by (case_day, z) as ``load_boxes`` gives it
    to ``tools/predict.py`` (fold models combined like ``predict_boxes`` does for the test split)."""
    params = m.box_params or m.predictors[0].meta["predict"]
    return case_day_boxes(m.predictors, vols, vols.split, cd, params).set_index(["case_day", "z"])


def predict_case_day(members: list[LoadedMember], vols, cd: str, seconds: dict | None = None,
                     strict: bool = True, fold_failures: list | None = None
                     ) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """Every member on one case-day: (maps name -> float32 (D, C, H, W) pixel / (D, C) classifier, failures
    [(member name, message)]). Detectors run first; a crop member gets its detector's boxes, and fails when
    they failed. ``seconds``: accumulates each member's wall time (detectors included). Not ``strict``: a
    fold model that raises is left out of its member's mean for this case-day and listed in
    ``fold_failures`` as (member name, fold index, message)."""
    maps, aux, boxes, failures = {}, {}, {}, []
    seconds = {} if seconds is None else seconds
    needed = {m.boxes_from for m in members if m.boxes_from}
    for m in members:
        if m.kind == "boxes" and m.name in needed:
            try:
                t = time.perf_counter()
                boxes[m.name] = _detector_boxes(m, vols, cd)
                seconds[m.name] = seconds.get(m.name, 0.0) + time.perf_counter() - t
            except Exception as e:  # noqa: BLE001
                failures.append((m.name, f"{type(e).__name__}: {e}"))
    for m in members:
        if m.source or m.kind == "boxes":
            continue
        if m.boxes_from and m.boxes_from not in boxes:
            failures.append((m.name, f"no boxes: detector {m.boxes_from!r} failed"))
            continue
        try:
            t = time.perf_counter()
            folds: list = []
            try:
                p, pres = _predict_member(m, vols, cd, boxes.get(m.boxes_from), strict, folds)
            finally:
                if fold_failures is not None:
                    fold_failures += [(m.name, k, msg) for k, msg in folds]
            seconds[m.name] = seconds.get(m.name, 0.0) + time.perf_counter() - t
            maps[m.name] = p
            if pres is not None:
                aux[m.name] = pres
        except Exception as e:  # noqa: BLE001
            failures.append((m.name, f"{type(e).__name__}: {e}"))
    for m in members:
        if m.source and m.source in aux:
            maps[m.name] = aux[m.source]
    return maps, failures

