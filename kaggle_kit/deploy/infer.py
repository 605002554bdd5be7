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
- **hidden re-run** (``test/`` has images): always writes a valid file. A member that cannot load is dropped
  for the whole run, a member that fails on one case-day is dropped for that case-day, the ensemble
  renormalises its weights over the members present (``EnsembleConfig.weights`` normalises per kind over
  the members it is given); a case-day on which every pixel member fails gets empty masks. What was dropped
  is logged and written to ``<out stem>_report.json`` next to the submission.

Time budget (``time_budget_h``, default 8 h of Kaggle's 9): after ``budget_check_after`` case-days, and after
every case-day from then on, the total run time is projected from the case-days measured since the last
change. Over budget, work is shed in the order of :data:`SHED_ORDER` until the estimate (from each member's
measured seconds) fits: TTA off (flips, the 2.5D gamma TTA), then members of lowest ensemble weight (never the last pixel member;
a pixel member's aux classifier goes with it; a detector nobody needs any more stops running). Each step is
logged and listed in the summary's ``shed``.

Device: :func:`pick_device` uses CUDA only when the installed torch carries kernels for the GPU's compute
capability (a P100, sm_60, with a recent torch does not); otherwise the CPU, with a warning saying why.

Bundle layout (written by ``tools/bundle.py``): ``bundle.json`` (members: name, family, kind, checkpoints,
tta, predictor, source; detector members: kind ``boxes`` and ``box_params``), ``ensemble.yaml``,
``checkpoints/``, ``wheels/``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.data.raw import CLASSES, discover_split
from kaggle_kit.data.volumes import load_image_volume
from kaggle_kit.env import setup_offline
from kaggle_kit.families.det_yolo.predict import case_day_boxes
from kaggle_kit.io.submission import expected_rows, rows_from_slices, validate_submission, write_submission
from kaggle_kit.metric.files import score_files
from kaggle_kit.post.ensemble import fuse_case_day, load_ensemble_config
from kaggle_kit.post.kernels import rle_encode_planes
from kaggle_kit.registry import resolve
from kaggle_kit.utils import atomic_write_json, progress

__all__ = ["InferenceError", "LoadedMember", "PngVolumes", "SHED_ORDER", "arch_supported", "load_bundle_members",
           "pick_device", "predict_case_day", "report_path", "run_inference"]

log = logging.getLogger("kaggle_kit.infer")
KAGGLE_LIMIT_H = 9.0
#: what the time budget sheds, in this order
SHED_ORDER = ("tta", "lowest_weight_member")
TTA_PASSES = {"hflip": 2, "gamma": 3}  # forward passes per input of each TTA (others: 2, as a flip)


class InferenceError(RuntimeError):
    """A failure the public (debug) run must not hide: a member that did not load or run, a missing
    detector, a score not above the empty-mask baseline."""


def _say(msg: str, warn: bool = False) -> None:
    (log.warning if warn else log.info)(msg)
    print(f"[kaggle_kit] {'WARNING ' if warn else ''}{msg}", flush=True)


# ------------------------------------------------------------------------------------------------ device
_ARCH = re.compile(r"^(sm|compute)_(\d+)([a-z]?)$")


def _arch_version(num: str) -> tuple[int, int]:
    """'60' -> (6, 0), '120' -> (12, 0): the last digit is the minor version."""
    return int(num[:-1]), int(num[-1])


def arch_supported(capability: tuple[int, int], arch_list) -> tuple[bool, str]:
    """Can a torch built for ``arch_list`` (``torch.cuda.get_arch_list()``, e.g. ['sm_70', 'sm_80',
    'compute_80']) run kernels on a device of ``capability`` (major, minor)? Returns (ok, why).

    A cubin ``sm_XY`` runs on devices of the same major version X and minor >= Y (``sm_XYa`` only on
    exactly X.Y); PTX ``compute_XY`` is JIT-compiled for any device of capability >= X.Y."""
    cap = (int(capability[0]), int(capability[1]))
    for a in arch_list or []:
        m = _ARCH.match(str(a))
        if not m:
            continue
        kind, ver, suffix = m.group(1), _arch_version(m.group(2)), m.group(3)
        if kind == "sm" and (ver == cap if suffix == "a" else (ver[0] == cap[0] and ver[1] <= cap[1])):
            return True, f"binary kernels {a}"
        if kind == "compute" and not suffix and ver <= cap:
            return True, f"PTX {a} (JIT-compiled for sm_{cap[0]}{cap[1]})"
    return False, f"no sm_{cap[0]}{cap[1]} kernels and no PTX at or below it in {list(arch_list or [])}"


def pick_device(torch_module=None, smoke: bool = True) -> tuple[str, dict]:
    """Print the environment and choose the device: ("cuda" | "cpu", info dict).

    CUDA is used only when it is available, torch was built for the device's compute capability
    (:func:`arch_supported`) and, with ``smoke``, a tiny kernel runs on it; otherwise the CPU, with a
    WARNING line that says why. ``torch_module``: a stand-in for tests (default: ``import torch``, lazily:
    torch is heavy)."""
    if torch_module is None:
        import torch as torch_module
    t = torch_module
    info = {"python": platform.python_version(), "torch": getattr(t, "__version__", "?"),
            "cuda_build": getattr(getattr(t, "version", None), "cuda", None), "device": "cpu",
            "device_name": None, "capability": None, "arch_list": None, "torch_supports_device": None}
    _say(f"Python {info['python']} ({sys.platform}), torch {info['torch']} (CUDA build {info['cuda_build']})")
    if not t.cuda.is_available():
        _say("no CUDA device: running on the CPU")
        return "cpu", info
    cap = tuple(int(v) for v in t.cuda.get_device_capability(0))
    arch = list(t.cuda.get_arch_list())
    ok, why = arch_supported(cap, arch)
    info.update(device_name=t.cuda.get_device_name(0), capability=f"{cap[0]}.{cap[1]}", arch_list=arch,
                torch_supports_device=ok)
    _say(f"GPU {info['device_name']}: compute capability {cap[0]}.{cap[1]}; torch built for {arch}: "
         f"{'yes, ' + why if ok else 'NO'}")
    if not ok:
        _say(f"torch {info['torch']} cannot run on {info['device_name']} (sm_{cap[0]}{cap[1]}): {why}. "
             f"NOT using the GPU: running on the CPU instead (much slower; attach a newer GPU, e.g. T4 x2)",
             warn=True)
        return "cpu", info
    if smoke:
        try:
            x = t.ones(8, device="cuda")
            float((x * 2).sum().item())
        except Exception as e:  # noqa: BLE001 - any kernel failure means the GPU is unusable
            info["torch_supports_device"] = False
            _say(f"a test kernel failed on {info['device_name']} ({type(e).__name__}: {e}); NOT using the GPU: "
                 f"running on the CPU instead", warn=True)
            return "cpu", info
    info["device"] = "cuda"
    return "cuda", info


# ------------------------------------------------------------------------------------------- volumes
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


# ------------------------------------------------------------------------------------------- members
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


def load_bundle_members(bundle: Path, spec: list[dict], device=None) -> tuple[list[LoadedMember], list[str]]:
    """Load every member's predictors; returns (loaded, dropped messages). Never raises for a bad member.

    A member whose checkpoints say ``data.crop: boxes`` is wired to the detector member of that experiment
    (``boxes_from``); when the bundle has no such detector, or it did not load, the member is dropped."""
    bundle = Path(bundle)
    loaded, dropped = [], []

    def drop(name, why):
        msg = f"member {name!r} dropped: {why}"
        _say(msg, warn=True)
        dropped.append(msg)

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
            loaded.append(LoadedMember(m["name"], m["kind"], preds, box_params=m.get("box_params"),
                                       boxes_from=_crop_detector(preds)))
        except Exception as e:  # noqa: BLE001 - any failure drops the member, never the submission
            drop(m["name"], f"{type(e).__name__}: {e}")
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
            dropped.append(f"member {m.name!r} dropped: its source {m.source!r} was dropped")
    return loaded, dropped


def _predict_member(m: LoadedMember, vols, cd: str, boxes=None):
    """Mean over the member's fold models: (map float32, aux presence (D, C) or None)."""
    acc, pres = None, None
    kw = {} if boxes is None else {"boxes": boxes}
    for p in m.predictors:
        out = p(vols, vols.split, cd, **kw)
        acc = out if acc is None else acc + out
        lp = getattr(p, "last_presence", None)
        if lp is not None:
            pres = lp if pres is None else pres + lp
    n = len(m.predictors)
    return acc / n, (None if pres is None else pres / n)


def _detector_boxes(m: LoadedMember, vols, cd: str) -> pd.DataFrame:
    """The detector member's box table of one case-day, indexed by (case_day, z) as ``load_boxes`` gives it
    to ``tools/predict.py`` (fold models combined like ``predict_boxes`` does for the test split)."""
    params = m.box_params or m.predictors[0].meta["predict"]
    return case_day_boxes(m.predictors, vols, vols.split, cd, params).set_index(["case_day", "z"])


def predict_case_day(members: list[LoadedMember], vols, cd: str, seconds: dict | None = None
                     ) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """Every member on one case-day: (maps name -> float32 (D, C, H, W) pixel / (D, C) classifier, failures
    [(member name, message)]). Detectors run first; a crop member gets its detector's boxes, and fails when
    they failed. ``seconds``: accumulates each member's wall time (detectors included)."""
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
            p, pres = _predict_member(m, vols, cd, boxes.get(m.boxes_from))
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


# ------------------------------------------------------------------------------------------ time budget
def _member_weight(cfg, name: str) -> float:
    """Mean over classes of a member's weight, normalised within its kind."""
    for kind in ("pixel", "classifier"):
        ms = cfg.of_kind(kind)
        for i, m in enumerate(ms):
            if m.name == name:
                return float(cfg.weights(kind)[i].mean())
    return 0.0


def _shed_plan(members: list[LoadedMember], cfg, seconds: dict, n_done: int) -> list[tuple[str, str, float]]:
    """The shedding steps in :data:`SHED_ORDER`: [(step, target, estimated seconds saved per case-day)]."""
    per_cd = {k: v / max(n_done, 1) for k, v in seconds.items()}
    steps = []
    tta = [m for m in members if m.tta]
    if tta:  # TTA multiplies a member's forward passes (flips 2x, gamma 3x): turning it off saves 1 - 1/passes
        steps.append(("tta", ", ".join(sorted(m.name for m in tta)),
                      sum(per_cd.get(m.name, 0.0) * (1 - 1 / m.tta_passes) for m in tta)))
    own = [m for m in members if m.predictors and m.kind in ("pixel", "classifier")]
    n_pixel = sum(m.kind == "pixel" for m in own)
    for m in sorted(own, key=lambda m: (_member_weight(cfg, m.name), m.name)):
        if m.kind == "pixel":
            if n_pixel <= 1:
                continue  # never the last pixel member
            n_pixel -= 1
        cost = per_cd.get(m.name, 0.0) / m.tta_passes
        users = [u for u in own if u.boxes_from and u.boxes_from == m.boxes_from]
        if m.boxes_from and len(users) == 1:  # its detector stops running with it
            cost += per_cd.get(m.boxes_from, 0.0)
        steps.append(("lowest_weight_member", m.name, cost))
    return steps


def _apply_shed(step: str, target: str, members: list[LoadedMember]) -> list[LoadedMember]:
    if step == "tta":
        for m in members:
            for p in m.predictors:
                if getattr(p, "tta", "none") != "none":
                    p.tta = "none"
        return members
    keep = [m for m in members if m.name != target and m.source != target]
    needed = {m.boxes_from for m in keep if m.boxes_from}
    return [m for m in keep if m.kind != "boxes" or m.name in needed]


# ------------------------------------------------------------------------------------------------ run
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


def _rows_to_predict(data_root: Path, debug_case_days: int):
    """(mode, split, slices, rows): the test split in sample order, or, when test/ or the sample is empty
    (Kaggle's public run), debug mode on the first ``debug_case_days`` train case-days."""
    test_slices = discover_split(data_root, "test")
    sample = data_root / "sample_submission.csv"
    sample_empty = not sample.is_file() or pd.read_csv(sample).empty
    if test_slices.empty or sample_empty:
        slices = discover_split(data_root, "train")
        keep = list(dict.fromkeys(slices["case_day"]))[:debug_case_days]
        slices = slices[slices["case_day"].isin(keep)].reset_index(drop=True)
        return "debug", "train", slices, rows_from_slices(slices)
    return "test", "test", test_slices, expected_rows(data_root, "test")


def _fuse_present(cfg, maps: dict, cd: str, shape, strict: bool, failures: list) -> np.ndarray:
    """The ensemble over the members that gave maps for this case-day (weights renormalised over them);
    bits uint8 (D, H, W). A failure raises when ``strict``, else empty masks and a line in ``failures``."""
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
        failures.append(f"{cd}: ensemble failed ({type(e).__name__}: {e}); empty masks written")
        _say(failures[-1], warn=True)
        return np.zeros(shape, np.uint8)


class _Budget:
    """The time budget: after each case-day, project the total from the rate since the last shedding and,
    when over ``hours``, shed work in the declared order (:func:`_shed_plan`) until the projection fits."""

    def __init__(self, cfg, t_start: float, t0: float, hours: float, check_after: int):
        self.cfg, self.t_start, self.t0, self.hours, self.check_after = cfg, t_start, t0, hours, check_after

    def after(self, done: int, left: int, members, window, bar, seconds: dict, shed: list):
        """Returns (members, window) after case-day ``done`` (``left`` to go); appends to ``shed``."""
        n_win = done - window[0]
        rate = (time.time() - window[1]) / max(n_win, 1)
        proj_h = (time.time() - self.t_start + rate * left) / 3600
        budget, total = self.hours, done + left
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(f"projected {proj_h:.2f} h of {budget:g} h")
        if done == 1 or done % 10 == 0 or not left:
            _say(f"{done}/{total} case-days, {time.time() - self.t0:.0f} s elapsed, projected total "
                 f"{proj_h:.2f} h (budget {budget:g} h, Kaggle limit {KAGGLE_LIMIT_H:g} h)")
        if not (left and done >= self.check_after and n_win >= 1 and proj_h > budget):
            return members, window
        over_s = (proj_h - budget) * 3600
        steps = _shed_plan(members, self.cfg, window[2], n_win)
        if not steps and not any("nothing left to shed" in s for s in shed):
            shed.append(f"after {done} case-days: projected {proj_h:.2f} h > budget {budget:g} h "
                        f"and nothing left to shed")
            _say(f"TIME BUDGET: {shed[-1]}", warn=True)
        saved = 0.0
        for step, target, per_cd in steps:
            if saved * left >= over_s:
                break
            members = _apply_shed(step, target, members)
            saved += per_cd
            what = f"TTA off ({target})" if step == "tta" else f"member {target!r} dropped (lowest weight)"
            shed.append(f"after {done} case-days: projected {proj_h:.2f} h > budget {budget:g} h: {what}")
            _say(f"TIME BUDGET: {shed[-1]}", warn=True)
        if saved:
            _merge(seconds, window[2])
            window = (done, time.time(), {})
        return members, window


def run_inference(bundle, data_root, out_csv, debug_case_days: int = 3, device=None,
                  time_budget_h: float = 8.0, budget_check_after: int = 2, clock_start: float | None = None,
                  strict: bool | None = None) -> dict:
    """Write ``out_csv`` (validated) and return a summary dict (mode, case-days, dropped members, failures,
    shed steps, timing, and in debug mode the score and the empty-mask baseline).

    ``device``: None picks one with :func:`pick_device`. ``time_budget_h``: the wall time the whole run may
    take, counted from ``clock_start`` (``time.time()`` at the notebook's start; default: now).
    ``strict``: raise :class:`InferenceError` on any member failure or a score not above the empty
    baseline; default: True in debug mode (the public run), False on the test split (the hidden run).
    """
    setup_offline()
    t_start = clock_start if clock_start is not None else time.time()
    bundle, data_root, out_csv = Path(bundle), Path(data_root), Path(out_csv)
    manifest = json.loads((bundle / "bundle.json").read_text())
    cfg = load_ensemble_config(bundle / manifest.get("ensemble", "ensemble.yaml"))
    mode, split, slices, rows = _rows_to_predict(data_root, debug_case_days)
    strict = (mode == "debug") if strict is None else strict
    _say(f"mode={mode}: {slices['case_day'].nunique()} case-days, {len(rows)} rows; "
         f"{'strict: any member failure raises' if strict else 'failures are dropped and reported'}")
    if device is None:
        device, _ = pick_device()
    members, dropped = load_bundle_members(bundle, manifest["members"], device)
    listed = {m["name"] for m in manifest["members"]}
    for m in cfg.members:
        if m.name not in listed:
            dropped.append(f"member {m.name!r} dropped: in the ensemble but not in bundle.json")
            _say(dropped[-1], warn=True)
    if strict and dropped:
        raise InferenceError(f"public run: {len(dropped)} member(s) could not be used, the hidden run would "
                             f"silently lose them: " + "; ".join(dropped))
    vols = PngVolumes(data_root, split, slices)
    rle: dict[tuple[str, str], str] = {}
    case_days = vols.case_days()
    t0 = time.time()
    failures: list[str] = []
    shed: list[str] = []
    seconds: dict[str, float] = {}  # inference seconds per member (all its folds), summed over case-days
    window = (0, time.time(), {})  # measurements since the last shedding: (first case-day, start, seconds)
    budget = _Budget(cfg, t_start, t0, time_budget_h, budget_check_after)
    bar = progress(case_days, desc="inference", unit="case-day")
    for i, cd in enumerate(bar):
        g = slices[slices["case_day"] == cd]
        shape = (len(g), int(g["height"].iloc[0]), int(g["width"].iloc[0]))
        maps, fails = predict_case_day(members, vols, cd, window[2])
        for name, msg in fails:
            if strict:
                raise InferenceError(f"public run: member {name!r} failed on {cd}: {msg}")
            failures.append(f"{cd}: member {name!r} failed ({msg}); renormalised over the rest")
            _say(failures[-1], warn=True)
        bits = _fuse_present(cfg, maps, cd, shape, strict, failures)
        planes = rle_encode_planes(bits, len(CLASSES))
        for z, id_ in enumerate(g["id"]):
            for c, cls in enumerate(CLASSES):
                rle[(id_, cls)] = planes[z * len(CLASSES) + c]
        members, window = budget.after(i + 1, len(case_days) - i - 1, members, window, bar, seconds, shed)
    _merge(seconds, window[2])
    predicted = [rle.get((i, c), "") for i, c in zip(rows["id"], rows["class"])]
    write_submission(out_csv, rows, predicted)
    validate_submission(out_csv, data_root, split, slices=slices, rows=rows)
    n = max(len(case_days), 1)
    summary = {"mode": mode, "strict": strict, "device": str(device), "case_days": len(case_days),
               "rows": len(rows), "dropped": dropped, "failures": failures, "shed": shed,
               "seconds": round(time.time() - t0, 1), "seconds_per_case_day": round((time.time() - t0) / n, 2),
               "members": [m.name for m in members], "submission": str(out_csv),
               "member_seconds_per_case_day": {k: round(v / n, 3) for k, v in seconds.items()}}
    _say(f"wrote {out_csv} ({len(rows)} rows, validated)")
    if mode == "debug":
        score, base = _debug_scores(data_root, out_csv, rows)
        summary.update(debug_score=score, empty_baseline=base)
        _say(f"debug score on {len(case_days)} train case-days: {score:.4f} (empty masks: {base:.4f})")
    atomic_write_json(report_path(out_csv), summary)
    if dropped or failures or shed:
        _say(f"the run dropped or shed work: see {report_path(out_csv)}", warn=True)
    if strict and mode == "debug" and not summary["debug_score"] > summary["empty_baseline"]:
        raise InferenceError(f"public run: debug score {summary['debug_score']:.4f} is not above the empty-mask "
                             f"baseline {summary['empty_baseline']:.4f}: the ensemble predicts nothing useful")
    return summary


def _merge(total: dict, part: dict) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0.0) + v
