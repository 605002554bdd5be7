"""The streaming inference loop of the Kaggle notebook: bundle + competition folder -> submission.csv.

One case-day at a time: read its PNGs, run the detector members first (their boxes feed the members trained
with ``data.crop: boxes``, as ``tools/predict.py`` feeds them the detector's box table), then every pixel
and classifier member (fold models averaged), fuse in memory with the tuned ensemble (``fuse_case_day``: the
same code as ``tools/ensemble.py``), RLE-encode, move on. Nothing per member is written to disk.

Two runs, two policies:

- **public run** (``test/`` has no images or ``sample_submission.csv`` no rows): debug mode on the first
  ``debug_case_days`` train case-days, scored against ``train.csv``. It is *strict*: a member that fails to
  load or to run, a crop member whose detector is missing, or a score not above the empty-mask baseline
  raises :class:`InferenceError` naming the cause. That is the run a person watches when saving a version.
- **hidden re-run** (``test/`` has images): always writes a valid file with every ``sample_submission.csv``
  row in order, and a fault costs only the smallest unit it touches:

  - a *slice* (missing from the numbering, an unreadable PNG, a name that does not parse, another size):
    empty rows for that slice; the members see it as a copy of its nearest usable slice, so a neighbour's
    stack that reaches into it gets the nearest real slice, as stacks are clamped at a volume's ends
    (``data/png_volumes.py``);
  - an *id* of the sample with no image: empty rows for it;
  - a *case-day* that cannot be read or fused: empty rows for that case-day;
  - a *fold* (its file missing, its sha256 not the one ``bundle.json`` records, failing to load, or raising
    on a case-day): the member averages its other folds;
  - a *member* (no fold left, or failing on a case-day): the ensemble renormalises its weights over the
    members present (``EnsembleConfig.weights`` normalises per kind over the members it is given);
  - a *row* whose prediction does not validate: emptied, the others kept (``io.submission.bad_rows``).

  Every unit dropped is logged and listed in ``<out stem>_report.json`` (``contained``: unit, name,
  reason, rows emptied and their share of the file).

Time budget (``time_budget_h``, default 8 h of Kaggle's 9): after ``budget_check_after`` case-days, and after
every case-day from then on, the total run time is projected from the case-days measured since the last
change. Over budget, work is shed in the order of ``kaggle_kit.deploy.budget.SHED_ORDER`` until the estimate (from each member's
measured seconds) fits: TTA off (flips, the 2.5D gamma TTA), then members of lowest ensemble weight (never the last pixel member;
a pixel member's aux classifier goes with it; a detector nobody needs any more stops running). Each step is
logged and listed in the summary's ``shed``.

Where the parts live: ``deploy/device.py`` (which device), ``deploy/members.py`` (loading the bundle's members,
running them on a case-day), ``deploy/budget.py`` (the time budget), ``data/png_volumes.py`` (the PNG reader),
this module (the run loop).

Bundle layout (written by ``tools/bundle.py``): ``bundle.json`` (members: name, family, kind, checkpoints,
tta, predictor, source; detector members: kind ``boxes`` and ``box_params``; ``sha256``: every file's
digest, checked for each checkpoint before it loads), ``ensemble.yaml``,
``checkpoints/``, ``wheels/``.
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.data.png_volumes import PngVolumes, scan_split
from kaggle_kit.data.raw import CLASSES, discover_split
from kaggle_kit.deploy.budget import Budget, merge_seconds
from kaggle_kit.deploy.device import pick_device
from kaggle_kit.deploy.members import load_bundle_members, predict_case_day
from kaggle_kit.deploy.messages import InferenceError, say
from kaggle_kit.env import setup_offline
from kaggle_kit.io.submission import (attach_geometry, bad_rows, expected_rows, rows_from_slices, validate_submission,
                                      write_submission)
from kaggle_kit.metric.score_csv import score_files
from kaggle_kit.post.ensemble import fuse_case_day, load_ensemble_config
from kaggle_kit.post.kernels import rle_encode_planes
from kaggle_kit.utils import atomic_write_json, progress

__all__ = ["report_path", "run_inference"]


def report_path(out_csv) -> Path:
    """``submission.csv`` -> ``submission_report.json`` (what the run dropped, shed and scored)."""
    out_csv = Path(out_csv)
    return out_csv.with_name(out_csv.stem + "_report.json")


def _debug_scores(data_root: Path, out_csv: Path, rows: pd.DataFrame) -> tuple[float, float]:
    """(score of ``out_csv``, score of empty masks on the same rows) on the debug train case-days."""
    score = score_files(data_root / "train.csv", out_csv, data_root, "train", only_pred_case_days=True,
                        progress_bar=False)[0].result()["score"]
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.csv"
        write_submission(empty, rows, [""] * len(rows))
        base = score_files(data_root / "train.csv", empty, data_root, "train", only_pred_case_days=True,
                           progress_bar=False)[0].result()["score"]
    return float(score), float(base)


def _fuse_present(cfg, maps: dict, cd: str, shape, strict: bool) -> np.ndarray:
    """The ensemble over the members that gave maps for this case-day (weights renormalised over them);
    bits uint8 (D, H, W). Raises (InferenceError when ``strict``) when it cannot: the hidden run's caller
    then empties the case-day."""
    present = {m.name for m in cfg.members if m.name in maps}
    sub_cfg = dataclasses.replace(cfg, members=tuple(m for m in cfg.members if m.name in present))
    try:
        if not sub_cfg.of_kind("pixel"):
            raise RuntimeError("no pixel member left")
        bits, _ = fuse_case_day(sub_cfg, {k: v for k, v in maps.items() if k in present}, cd, shape)
        return bits
    except Exception as e:  # noqa: BLE001
        if strict:
            raise InferenceError(f"public run: the ensemble failed on {cd}: {type(e).__name__}: {e}") from e
        raise RuntimeError(f"the ensemble failed ({type(e).__name__}: {e})") from e


def _has_test_images(data_root: Path) -> bool:
    return next((data_root / "test").glob("*/*/scans/*.png"), None) is not None


def _rows_to_predict(data_root: Path, debug_case_days: int, strict: bool | None):
    """(mode, split, slices, rows, problems, strict): the test split in sample order, or, when test/ has
    no image or the sample no row (Kaggle's public run), debug mode on the first ``debug_case_days`` train
    case-days. ``strict`` None: True in debug mode. Strict: ``discover_split`` (raises on any odd slice) and
    every row must have an image; else the tolerant :func:`scan_split` and its problems."""
    sample = data_root / "sample_submission.csv"
    sample_empty = not sample.is_file() or pd.read_csv(sample).empty
    mode = "debug" if sample_empty or not _has_test_images(data_root) else "test"
    strict = (mode == "debug") if strict is None else strict
    split = "train" if mode == "debug" else "test"
    slices, problems = (discover_split(data_root, split), []) if strict else scan_split(data_root, split)
    if mode == "debug":
        keep = list(dict.fromkeys(slices["case_day"]))[:debug_case_days]
        slices = slices[slices["case_day"].isin(keep)].reset_index(drop=True)
        return mode, split, slices, rows_from_slices(slices), problems, strict
    usable = slices if "hole" not in slices else slices[slices["hole"].isna()]
    rows = expected_rows(data_root, "test", usable)
    if strict:
        attach_geometry(rows, slices, "the expected rows")  # an id with no image raises, naming its row
    return mode, split, slices, rows, problems, strict


class _Units:
    """The units the hidden run dropped: ``{"unit", "name", "reason", "rows_emptied", "share"}`` each."""

    def __init__(self, n_rows: int):
        self.n_rows, self.items = max(n_rows, 1), []

    def add(self, unit: str, name: str, reason: str, rows_emptied: int = 0, warn: bool = True) -> None:
        self.items.append({"unit": unit, "name": name, "reason": reason, "rows_emptied": int(rows_emptied),
                           "share": round(rows_emptied / self.n_rows, 6)})
        if warn:
            say(f"{unit} {name} dropped ({reason}): {rows_emptied} row(s) empty", warn=True)


def _case_day_of(ids: pd.Series) -> pd.Series:
    return ids.str.rsplit("_slice_", n=1).str[0]


def _no_image_rows(rows: pd.DataFrame, slices: pd.DataFrame, units: _Units) -> None:
    """Name every sample id without an image: by case-day when the case-day has none, else by slice."""
    missing = rows[~rows["id"].isin(set(slices["id"]))]  # a hole's rows are named with its slice
    known_cd = set(slices["case_day"])
    for cd, g in missing.groupby(_case_day_of(missing["id"]), sort=False):
        if cd in known_cd:
            for id_, gi in g.groupby("id", sort=False):
                units.add("slice", id_, "in sample_submission.csv, no image under test/", len(gi))
        else:
            units.add("case_day", cd, f"in sample_submission.csv ({g['id'].nunique()} ids), no image folder "
                                      "under test/", len(g))


def run_inference(bundle, data_root, out_csv, debug_case_days: int = 3, device=None,
                  time_budget_h: float = 8.0, budget_check_after: int = 2, clock_start: float | None = None,
                  strict: bool | None = None) -> dict:
    """Write ``out_csv`` (validated) and return a summary dict (mode, case-days, dropped members and folds,
    failures, the units contained, shed steps, timing, and in debug mode the score and the empty-mask
    baseline).

    ``device``: None picks one with :func:`pick_device`. ``time_budget_h``: the wall time the whole run may
    take, counted from ``clock_start`` (``time.time()`` at the notebook's start; default: now).
    ``strict``: raise on any fault (a member or fold that fails to load, is missing or altered, or fails to
    run; an odd slice; an id with no image) and on a score not above the empty baseline; default: True in
    debug mode (the public run), False on the test split (the hidden run, see the module docstring).
    """
    setup_offline()
    t_start = clock_start if clock_start is not None else time.time()
    bundle, data_root, out_csv = Path(bundle), Path(data_root), Path(out_csv)
    manifest = json.loads((bundle / "bundle.json").read_text())
    cfg = load_ensemble_config(bundle / manifest.get("ensemble", "ensemble.yaml"))
    mode, split, slices, rows, problems, strict = _rows_to_predict(data_root, debug_case_days, strict)
    say(f"mode={mode}: {slices['case_day'].nunique()} case-days, {len(rows)} rows; "
        f"{'strict: any fault raises' if strict else 'faults are contained to their unit and reported'}")
    units = _Units(len(rows))
    if device is None:
        device, _ = pick_device()
    members, dropped, member_units = load_bundle_members(bundle, manifest["members"], device,
                                                         sha256=manifest.get("sha256"))
    for u in member_units:
        units.add(u["unit"], u["name"], u["reason"], warn=False)
    listed = {m["name"] for m in manifest["members"]}
    for m in cfg.members:
        if m.name not in listed:
            dropped.append(f"member {m.name!r} dropped: in the ensemble but not in bundle.json")
            units.add("member", m.name, "in the ensemble but not in bundle.json", warn=False)
            say(dropped[-1], warn=True)
    if strict and dropped:
        raise InferenceError(f"public run: {len(dropped)} member(s) or fold(s) could not be used, the hidden run "
                             f"would silently lose them: " + "; ".join(dropped))
    rows_cd = _case_day_of(rows["id"])
    n_rows_of = rows["id"].value_counts().to_dict()
    if not strict:
        _no_image_rows(rows, slices, units)
        for p in problems:
            if p["unit"] in ("folder", "file"):  # their ids (if any) are named above as rows without image
                units.add(p["unit"], p["name"], p["reason"], 0)
    vols = PngVolumes(data_root, split, slices, tolerant=not strict)
    rle: dict[tuple[str, str], str] = {}
    case_days = vols.case_days()
    t0 = time.time()
    failures: list[str] = []
    shed: list[str] = []
    seconds: dict[str, float] = {}  # inference seconds per member (all its folds), summed over case-days
    window = (0, time.time(), {})  # measurements since the last shedding: (first case-day, start, seconds)
    budget = Budget(cfg, t_start, t0, time_budget_h, budget_check_after)
    bar = progress(case_days, desc="inference", unit="case-day")
    for i, cd in enumerate(bar):
        g = slices[slices["case_day"] == cd]
        try:
            bits = _case_day_bits(cfg, members, vols, cd, g, window[2], strict, failures, units, n_rows_of)
        except InferenceError:
            raise
        except Exception as e:  # noqa: BLE001 - the case-day is the unit: its rows stay empty
            if strict:
                raise
            units.add("case_day", cd, f"{type(e).__name__}: {e}", int((rows_cd == cd).sum()))
            bits = None
        if bits is not None:
            planes = rle_encode_planes(bits, len(CLASSES))
            for z, id_ in enumerate(g["id"]):
                for c, cls in enumerate(CLASSES):
                    rle[(id_, cls)] = planes[z * len(CLASSES) + c]
        members, window = budget.after(i + 1, len(case_days) - i - 1, members, window, bar, seconds, shed)
    merge_seconds(seconds, window[2])
    predicted = [rle.get((i, c), "") for i, c in zip(rows["id"], rows["class"])]
    if not strict:  # row by row: a prediction that does not validate is emptied, the others kept
        usable = slices if "hole" not in slices else slices[slices["hole"].isna()]
        for j, why in sorted(bad_rows(rows, predicted, usable).items()):
            predicted[j] = ""
            units.add("row", f"{rows['id'].iloc[j]},{rows['class'].iloc[j]}", why, 1)
    write_submission(out_csv, rows, predicted)
    validate_submission(out_csv, data_root, split, slices=slices, rows=rows, no_image_ok=not strict)
    n = max(len(case_days), 1)
    emptied = sum(u["rows_emptied"] for u in units.items)
    summary = {"mode": mode, "strict": strict, "device": str(device), "case_days": len(case_days),
               "rows": len(rows), "dropped": dropped, "failures": failures, "shed": shed,
               "contained": units.items, "rows_emptied": emptied, "share_emptied": round(emptied / max(len(rows), 1), 6),
               "seconds": round(time.time() - t0, 1), "seconds_per_case_day": round((time.time() - t0) / n, 2),
               "members": [m.name for m in members], "submission": str(out_csv),
               "member_seconds_per_case_day": {k: round(v / n, 3) for k, v in seconds.items()}}
    say(f"wrote {out_csv} ({len(rows)} rows, validated)")
    if mode == "debug":
        score, base = _debug_scores(data_root, out_csv, rows)
        summary.update(debug_score=score, empty_baseline=base)
        say(f"debug score on {len(case_days)} train case-days: {score:.4f} (empty masks: {base:.4f})")
    atomic_write_json(report_path(out_csv), summary)
    if dropped or failures or shed or units.items:
        say(f"the run dropped or shed work: see {report_path(out_csv)}", warn=True)
    if strict and mode == "debug" and not summary["debug_score"] > summary["empty_baseline"]:
        raise InferenceError(f"public run: debug score {summary['debug_score']:.4f} is not above the empty-mask "
                             f"baseline {summary['empty_baseline']:.4f}: the ensemble predicts nothing useful")
    return summary


def _case_day_bits(cfg, members, vols, cd: str, g: pd.DataFrame, seconds: dict, strict: bool, failures: list,
                   units: _Units, n_rows_of: dict) -> np.ndarray | None:
    """The fused bits uint8 (D, H, W) of one case-day, holes empty (None: no usable slice)."""
    shape = (len(g), int(g["height"].iloc[0]), int(g["width"].iloc[0]))
    vols.image(vols.split, cd)  # reads it: an unreadable PNG raises when strict, becomes a hole when not
    holes = vols.holes(cd) if not strict else {}
    ids = g.sort_values("slice")["id"].tolist()
    for z, why in holes.items():
        units.add("slice", ids[z], why, n_rows_of.get(ids[z], 0))
    if len(holes) == len(g):
        failures.append(f"{cd}: no usable slice; empty masks written")
        return None
    fold_fails: list = []
    maps, fails = predict_case_day(members, vols, cd, seconds, strict, fold_fails)
    for name, k, msg in fold_fails:
        failures.append(f"{cd}: member {name!r} fold {k} failed ({msg}); its other folds averaged")
        say(failures[-1], warn=True)
    for name, msg in fails:
        if strict:
            raise InferenceError(f"public run: member {name!r} failed on {cd}: {msg}")
        failures.append(f"{cd}: member {name!r} failed ({msg}); renormalised over the rest")
        say(failures[-1], warn=True)
    bits = _fuse_present(cfg, maps, cd, shape, strict)
    for z in holes:
        bits[z] = 0
    return bits
