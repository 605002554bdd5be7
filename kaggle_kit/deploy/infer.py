"""The streaming inference loop of the Kaggle notebook: bundle + competition folder -> submission.csv.

One case-day at a time: read its PNGs, run every member's predictor (fold models averaged), fuse in memory
with the tuned ensemble (``fuse_case_day``: the same code as ``tools/ensemble.py``), RLE-encode, move on.
Nothing per member is written to disk. The notebook must always produce a valid file, so:

- a member that cannot load (missing / corrupt checkpoint) is dropped for the whole run, and a member that
  fails on one case-day is dropped for that case-day; the ensemble renormalises its weights over the rest
  (both logged, and listed in the returned summary);
- a case-day on which every pixel member fails gets empty masks;
- when ``test/`` has no images or ``sample_submission.csv`` is empty (the public run), it runs in debug
  mode on the first ``debug_case_days`` train case-days and scores them against ``train.csv``.

Bundle layout (written by ``tools/bundle.py``): ``bundle.json`` (members: name, family, kind, checkpoints,
tta, batch_size, source), ``ensemble.yaml``, ``checkpoints/``, ``wheels/``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.data.raw import CLASSES, discover_split
from kaggle_kit.data.volumes import load_image_volume

__all__ = ["PngVolumes", "run_inference", "load_bundle_members"]

log = logging.getLogger("kaggle_kit.infer")
KAGGLE_LIMIT_H = 9.0


class PngVolumes:
    """A Cache look-alike over a competition split read from PNGs, one case-day in memory at a time."""

    def __init__(self, data_root, split: str, slices: pd.DataFrame | None = None):
        self.split = split
        self.slices = discover_split(data_root, split) if slices is None else slices
        self._index = self.slices.drop(columns=["path"]).assign(
            depth=self.slices.groupby("case_day")["z"].transform("size"))
        self._cd, self._img = None, None

    def index(self, split: str) -> pd.DataFrame:
        return self._index

    def case_days(self, split: str | None = None) -> list[str]:
        return list(dict.fromkeys(self.slices["case_day"]))

    def image(self, split: str, case_day: str, mmap: bool = True) -> np.ndarray:
        if case_day != self._cd:
            self._img = load_image_volume(self.slices[self.slices["case_day"] == case_day])
            self._cd = case_day
        return self._img

    def fingerprint(self) -> str:
        return ""


@dataclasses.dataclass
class LoadedMember:
    name: str
    kind: str
    predictors: list
    source: str | None = None  # for aux classifier members: the pixel member whose head provides them


def load_bundle_members(bundle: Path, spec: list[dict], device=None) -> tuple[list[LoadedMember], list[str]]:
    """Load every member's predictors; returns (loaded, dropped messages). Never raises for a bad member."""
    from kaggle_kit.registry import resolve

    loaded, dropped = [], []
    for m in spec:
        if m.get("source"):  # e.g. the aux presence head of a 2.5D member: no model of its own
            loaded.append(LoadedMember(m["name"], m["kind"], [], m["source"]))
            continue
        try:
            fam = resolve("family", m["family"])
            kw = {"batch_size": m.get("batch_size", 32), **(m.get("predictor") or {})}  # as predict.py made the maps
            preds = [fam.make_predictor(bundle / ck, tta=m.get("tta", "none"), device=device, **kw)
                     for ck in m["checkpoints"]]
            if not preds:
                raise ValueError("no checkpoints listed")
            loaded.append(LoadedMember(m["name"], m["kind"], preds))
        except Exception as e:  # noqa: BLE001 - any failure drops the member, never the submission
            msg = f"member {m['name']!r} dropped: {type(e).__name__}: {e}"
            log.warning(msg)
            print(f"[kaggle_kit] WARNING {msg}", flush=True)
            dropped.append(msg)
    names = {m.name for m in loaded}
    for m in list(loaded):
        if m.source and m.source not in names:
            loaded.remove(m)
            dropped.append(f"member {m.name!r} dropped: its source {m.source!r} was dropped")
    return loaded, dropped


def _predict_member(m: LoadedMember, vols: PngVolumes, cd: str):
    acc, pres = None, None
    for p in m.predictors:
        out = p(vols, vols.split, cd)
        acc = out if acc is None else acc + out
        lp = getattr(p, "last_presence", None)
        if lp is not None:
            pres = lp if pres is None else pres + lp
    n = len(m.predictors)
    return acc / n, (None if pres is None else pres / n)


def run_inference(bundle, data_root, out_csv, debug_case_days: int = 3, device=None,
                  time_limit_h: float = KAGGLE_LIMIT_H) -> dict:
    """Write ``out_csv`` (validated) and return a summary dict (mode, case-days, dropped members, timing,
    and the debug-mode score when run on train case-days)."""
    from kaggle_kit.env import setup_offline
    from kaggle_kit.post.ensemble import load_ensemble_config, fuse_case_day
    from kaggle_kit.post.kernels import rle_encode_planes
    from kaggle_kit.io.submission import expected_rows, rows_from_slices, validate_submission, write_submission
    from kaggle_kit.utils import progress

    setup_offline()
    bundle, data_root, out_csv = Path(bundle), Path(data_root), Path(out_csv)
    manifest = json.loads((bundle / "bundle.json").read_text())
    cfg = load_ensemble_config(bundle / manifest.get("ensemble", "ensemble.yaml"))
    test_slices = discover_split(data_root, "test")
    sample = data_root / "sample_submission.csv"
    sample_empty = not sample.is_file() or pd.read_csv(sample).empty
    if test_slices.empty or sample_empty:
        mode, split = "debug", "train"
        slices = discover_split(data_root, "train")
        keep = list(dict.fromkeys(slices["case_day"]))[:debug_case_days]
        slices = slices[slices["case_day"].isin(keep)].reset_index(drop=True)
        rows = rows_from_slices(slices)
    else:
        mode, split, slices = "test", "test", test_slices
        rows = expected_rows(data_root, "test")
    print(f"[kaggle_kit] mode={mode}: {slices['case_day'].nunique()} case-days, {len(rows)} rows", flush=True)
    vols = PngVolumes(data_root, split, slices)
    members, dropped = load_bundle_members(bundle, manifest["members"], device)
    rle: dict[tuple[str, str], str] = {}
    case_days = vols.case_days()
    t0 = time.time()
    failures: list[str] = []
    member_s: dict[str, float] = {}  # inference seconds per member (all its folds), summed over case-days
    bar = progress(case_days, desc="inference", unit="case-day")
    for i, cd in enumerate(bar):
        g = slices[slices["case_day"] == cd]
        shape = (len(g), int(g["height"].iloc[0]), int(g["width"].iloc[0]))
        maps, aux = {}, {}
        for m in members:
            if m.source:
                continue
            try:
                tm = time.perf_counter()
                p, pres = _predict_member(m, vols, cd)
                member_s[m.name] = member_s.get(m.name, 0.0) + time.perf_counter() - tm
                maps[m.name] = p
                if pres is not None:
                    aux[m.name] = pres
            except Exception as e:  # noqa: BLE001
                failures.append(f"{cd}: member {m.name!r} failed ({type(e).__name__}: {e}); renormalised over the rest")
                print(f"[kaggle_kit] WARNING {failures[-1]}", flush=True)
        for m in members:
            if m.source and m.source in aux:
                maps[m.name] = aux[m.source]
        present = {m.name for m in cfg.members if m.name in maps}
        sub_cfg = dataclasses.replace(cfg, members=tuple(m for m in cfg.members if m.name in present))
        try:
            if not sub_cfg.of_kind("pixel"):
                raise RuntimeError("no pixel member left")
            bits, _ = fuse_case_day(sub_cfg, {k: v for k, v in maps.items() if k in present}, cd, shape)
        except Exception as e:  # noqa: BLE001
            failures.append(f"{cd}: ensemble failed ({type(e).__name__}: {e}); empty masks written")
            print(f"[kaggle_kit] WARNING {failures[-1]}", flush=True)
            bits = np.zeros(shape, np.uint8)
        planes = rle_encode_planes(bits, len(CLASSES))
        for z, id_ in enumerate(g["id"]):
            for c, cls in enumerate(CLASSES):
                rle[(id_, cls)] = planes[z * len(CLASSES) + c]
        elapsed = time.time() - t0
        proj_h = elapsed / (i + 1) * len(case_days) / 3600
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(f"projected {proj_h:.2f} h of {time_limit_h:.0f} h")
        if i == 0 or (i + 1) % 10 == 0 or i + 1 == len(case_days):
            print(f"[kaggle_kit] {i + 1}/{len(case_days)} case-days, {elapsed:.0f} s elapsed, "
                  f"projected total {proj_h:.2f} h (limit {time_limit_h:.0f} h)", flush=True)
    predicted = [rle.get((i, c), "") for i, c in zip(rows["id"], rows["class"])]
    write_submission(out_csv, rows, predicted)
    validate_submission(out_csv, data_root, split, slices=slices, rows=rows)
    summary = {"mode": mode, "case_days": len(case_days), "rows": len(rows), "dropped": dropped,
               "failures": failures, "seconds": round(time.time() - t0, 1),
               "seconds_per_case_day": round((time.time() - t0) / max(len(case_days), 1), 2),
               "members": [m.name for m in members], "submission": str(out_csv),
               "member_seconds_per_case_day": {k: round(v / max(len(case_days), 1), 3) for k, v in member_s.items()}}
    if mode == "debug":
        from kaggle_kit.metric.files import score_files

        scorer, _ = score_files(data_root / "train.csv", out_csv, data_root, "train", only_pred_case_days=True,
                                progress_bar=False)
        summary["debug_score"] = scorer.result()["score"]
    print(f"[kaggle_kit] wrote {out_csv} ({len(rows)} rows, validated)", flush=True)
    return summary
