"""Scoring a submission (or OOF) CSV against a truth file: CSV -> per case-day volumes -> metric -> report.

Geometry comes from the image files (``discover_split``): a case-day's volume is (D, H, W) with its slices
in slice order. Both files are validated before anything is scored, and a problem raises ``DataError``
naming the file, its line numbers and the (id, class) rows:

- missing columns, an unknown class, an id that does not parse;
- duplicated (id, class) rows;
- ids without an image in the split (their geometry is unknown);
- (id, class) rows missing for a scored slice (every slice of a scored case-day needs its three rows);
- an RLE that does not parse or does not fit its slice (H x W).

Which case-days are scored: those of the truth file, or only those present in the prediction with
``only_pred_case_days`` (an OOF file of one fold against the full train.csv).

A truth file in submission form (a ``predicted`` column, no ``segmentation`` and no image sizes: e.g. an
untouched sample_submission.csv) is refused. :func:`score_files_mlebench` grades as MLE-bench does instead
(rows paired by position, runs past the image end cut, the grader's invalid RLEs: see
:mod:`kaggle_kit.metric.mlebench_grade`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.data.raw import CLASSES, DataError, discover_split, parse_id
from kaggle_kit.data.rle import rle_parse
from kaggle_kit.metric.mlebench_grade import GradeResult, grade_frames
from kaggle_kit.metric.scorer import MetricConfig, Scorer

__all__ = [
    "RleTable",
    "check_truth_columns",
    "compiled_kernels",
    "read_rle_table",
    "report_json",
    "report_mlebench",
    "report_tables",
    "score_files",
    "score_files_mlebench",
    "volume_from_table",
    "warm_kernels",
    "write_plots",
]

_MAX_LISTED = 10  # rows named in one error message


def _listing(items, total=None) -> str:
    items = list(items)
    total = len(items) if total is None else total
    shown = ", ".join(map(str, items[:_MAX_LISTED]))
    more = f" ... and {total - _MAX_LISTED} more" if total > _MAX_LISTED else ""
    return f"{shown}{more}"


@dataclass
class RleTable:
    """A validated CSV of RLE rows: ``rows`` has columns id, class, rle, line (1-based CSV line), case_day,
    slice; ``runs`` maps a row's position to its parsed 0-based (starts, lengths), for non-empty RLEs."""

    path: str
    rows: pd.DataFrame
    runs: dict
    _by_case_day: dict | None = None

    def positions(self, case_day: str) -> np.ndarray:
        """Row positions of one case-day."""
        if self._by_case_day is None:
            self._by_case_day = {cd: np.asarray(v) for cd, v in
                                 self.rows.groupby("case_day", sort=False).indices.items()}
        return self._by_case_day.get(case_day, np.zeros(0, np.int64))


def check_truth_columns(path, columns) -> None:
    """A truth file is in train.csv form (id,class,segmentation) or MLE-bench's answers form (id,class,
    predicted,image_height,image_width). A ``predicted`` column without ``segmentation`` or image sizes is
    a submission (e.g. an untouched sample_submission.csv): DataError naming the file."""
    cols = set(columns)
    if "predicted" in cols and "segmentation" not in cols and not {"image_height", "image_width"} <= cols:
        raise DataError(f"{path}: has a 'predicted' column and no 'segmentation': this is a submission (or "
                        "sample_submission.csv), not a truth file; give train.csv or a file in its "
                        "id,class,segmentation form")


def read_rle_table(path, slices: pd.DataFrame | None = None, classes=CLASSES, truth: bool = False) -> RleTable:
    """Read and validate ``id,class,predicted`` (a submission) or ``id,class,segmentation`` (train.csv form).

    slices: the image table of the split (``discover_split``); with it, ids without an image and RLEs
    that do not fit their slice are errors. truth: the file is a truth file (:func:`check_truth_columns`).
    Raises DataError naming the offending lines.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if truth:
        check_truth_columns(path, df.columns)
    rle_col = next((c for c in ("predicted", "segmentation") if c in df.columns), None)
    missing = {"id", "class"} - set(df.columns)
    if missing or rle_col is None:
        raise DataError(f"{path}: columns {list(df.columns)}; expected id,class,predicted or id,class,segmentation")
    df = df.rename(columns={rle_col: "rle"})[["id", "class", "rle"]]
    df["line"] = np.arange(len(df)) + 2
    bad = ~df["class"].isin(classes)
    if bad.any():
        b = df[bad]
        raise DataError(f"{path}: {int(bad.sum())} row(s) with an unknown class (expected one of {list(classes)}): "
                        + _listing(f"line {ln} ({i}, {c!r})" for ln, i, c in zip(b["line"], b["id"], b["class"])))
    bad_ids = []
    parsed = []
    for ln, id_ in zip(df["line"], df["id"]):
        try:
            parsed.append(parse_id(id_))
        except DataError:
            bad_ids.append(f"line {ln} ({id_!r})")
            parsed.append((0, 0, 0))
    if bad_ids:
        raise DataError(f"{path}: {len(bad_ids)} id(s) do not parse as caseN_dayM_slice_SSSS: {_listing(bad_ids)}")
    df["case_day"] = [f"case{c}_day{d}" for c, d, _ in parsed]
    df["slice"] = [s for _, _, s in parsed]
    dup = df.duplicated(["id", "class"], keep=False)
    if dup.any():
        groups = df[dup].groupby(["id", "class"], sort=False)["line"].apply(list)
        raise DataError(f"{path}: {len(groups)} duplicated (id, class) row(s): "
                        + _listing(f"({i}, {c}) at lines {lines}" for (i, c), lines in groups.items()))
    runs = {}
    if slices is not None:
        geo = slices.set_index("id")[["height", "width"]]
        unknown = ~df["id"].isin(geo.index)
        if unknown.any():
            u = df[unknown]
            raise DataError(f"{path}: {int(unknown.sum())} row(s) with no image in the split: "
                            + _listing(f"line {ln} ({i})" for ln, i in zip(u["line"], u["id"])))
        hw = geo.reindex(df["id"]).to_numpy()
        errors = []
        for pos, (rle, ln, id_, cls) in enumerate(zip(df["rle"], df["line"], df["id"], df["class"])):
            if not rle.strip():
                continue
            h, w = int(hw[pos, 0]), int(hw[pos, 1])
            try:
                runs[pos] = rle_parse(rle, h * w)
            except ValueError as e:
                errors.append(f"line {ln} ({id_}, {cls}): {e} (slice {h}x{w})")
        if errors:
            raise DataError(f"{path}: {len(errors)} RLE(s) do not fit their slice: {_listing(errors)}")
    return RleTable(str(path), df, runs)


def _require_rows(table: RleTable, slices: pd.DataFrame, classes) -> None:
    """Every (slice, class) of ``slices`` must have a row in ``table``."""
    need = pd.MultiIndex.from_product([slices["id"], list(classes)], names=["id", "class"])
    have = pd.MultiIndex.from_frame(table.rows[["id", "class"]])
    missing = need.difference(have)
    if len(missing):
        missing = sorted(missing, key=lambda t: (t[0], list(classes).index(t[1])))
        cds = sorted({parse_id(i)[:2] for i, _ in missing})
        raise DataError(f"{table.path}: {len(missing)} (id, class) row(s) missing for scored slices "
                        f"(in {len(cds)} case-day(s)): " + _listing(f"({i}, {c})" for i, c in missing))


def volume_from_table(table: RleTable, case_day_slices: pd.DataFrame, classes=CLASSES) -> np.ndarray:
    """uint8 (D, H, W) bit flags (bit i = classes[i]) of one case-day from a validated table.

    case_day_slices: its rows of the image table (sorted here by slice).
    """
    g = case_day_slices.sort_values("slice")
    d, h, w = len(g), int(g["height"].iloc[0]), int(g["width"].iloc[0])
    vol = np.zeros((d, h * w), np.uint8)
    z_of = dict(zip(g["id"], range(d)))
    bit_of = {c: np.uint8(1 << i) for i, c in enumerate(classes)}
    rows = table.rows
    ids, cls = rows["id"].to_numpy(), rows["class"].to_numpy()
    for pos in table.positions(g["case_day"].iloc[0]):
        r = table.runs.get(int(pos))
        if r is None:
            continue
        starts, lengths = r
        # every pixel of every run, without a Python loop over the runs
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
        vol[z_of[ids[pos]], offsets] |= bit_of[cls[pos]]
    return vol.reshape(d, h, w)


def score_files(truth_csv, pred_csv, data_root, split: str = "train", cfg: MetricConfig | str = "3d",
                only_pred_case_days: bool = False, classes=CLASSES, progress_bar: bool = True):
    """Score ``pred_csv`` against ``truth_csv`` on the images of ``data_root/split``.

    Returns (scorer, tables): the filled :class:`Scorer` and dict(slices=image table of the scored
    case-days, truth=RleTable, pred=RleTable) for reports and plots. Raises DataError (module docstring).
    """
    slices = discover_split(data_root, split)
    if slices.empty:
        raise DataError(f"{Path(data_root) / split}: no images")
    truth = read_rle_table(truth_csv, slices, classes, truth=True)
    pred = read_rle_table(pred_csv, slices, classes)
    case_days = list(dict.fromkeys(truth.rows["case_day"]))
    if only_pred_case_days:
        in_pred = set(pred.rows["case_day"])
        case_days = [cd for cd in case_days if cd in in_pred]
        extra = sorted(in_pred - set(case_days))
        if extra:
            raise DataError(f"{pred.path}: case-day(s) not in the truth file {truth.path}: {_listing(extra)}")
    else:
        extra = ~pred.rows["case_day"].isin(case_days)
        if extra.any():
            e = pred.rows[extra]
            raise DataError(f"{pred.path}: {int(extra.sum())} row(s) of case-days absent from the truth file "
                            f"{truth.path} (pass --only-pred-case-days to score a subset the other way round): "
                            + _listing(f"line {ln} ({i})" for ln, i in zip(e["line"], e["id"])))
    if not case_days:
        raise DataError(f"{pred.path}: no case-day to score")
    scored = slices[slices["case_day"].isin(case_days)]
    _require_rows(truth, scored, classes)
    _require_rows(pred, scored, classes)
    scorer = Scorer(cfg, n_classes=len(classes), classes=classes)
    groups = dict(tuple(scored.groupby("case_day", sort=False)))
    it = case_days
    if progress_bar and len(case_days) > 1:  # no bar (nor tqdm's import) for one case-day
        from kaggle_kit.utils import progress

        it = progress(case_days, desc="score", unit="case-day")
    for cd in it:
        g = groups[cd]
        scorer.add(cd, volume_from_table(pred, g, classes), volume_from_table(truth, g, classes))
    return scorer, {"slices": scored, "truth": truth, "pred": pred}


def score_files_mlebench(truth_csv, pred_csv, data_root=None, split: str = "train",
                         only_pred_case_days: bool = False) -> GradeResult:
    """MLE-bench's grade of ``pred_csv`` against ``truth_csv`` (:func:`kaggle_kit.metric.mlebench_grade.grade_frames`).

    truth_csv: MLE-bench's answers (id, class, predicted, image_height, image_width) or train.csv form
    (id, class, segmentation) with each row's size from the images of ``data_root/split``. Rows are paired
    by position, as the grader does. only_pred_case_days: keep only the truth rows of the case-days in
    ``pred_csv`` and pair the prediction's rows with them by (id, class) (an OOF file of one fold, which
    is not a submission). Raises DataError (InvalidSubmission where the grader would reject the file).
    """
    truth_csv, pred_csv = Path(truth_csv), Path(pred_csv)
    for p in (truth_csv, pred_csv):
        if not p.is_file():
            raise DataError(f"{p}: file not found")
    ans = pd.read_csv(truth_csv, dtype=str, keep_default_na=False)
    check_truth_columns(truth_csv, ans.columns)
    rle_col = next((c for c in ("segmentation", "predicted") if c in ans.columns), None)
    if rle_col is None or not {"id", "class"} <= set(ans.columns):
        raise DataError(f"{truth_csv}: columns {list(ans.columns)}; expected id,class,segmentation")
    ans = ans.rename(columns={rle_col: "predicted"})
    sub = pd.read_csv(pred_csv, dtype=str, keep_default_na=False)
    if "predicted" not in sub.columns and "segmentation" in sub.columns:
        sub = sub.rename(columns={"segmentation": "predicted"})
    if only_pred_case_days:
        if not {"id", "class"} <= set(sub.columns):
            raise DataError(f"{pred_csv}: columns {list(sub.columns)}; expected id,class,predicted")
        cd_of = lambda ids: ids.str.split("_slice_").str[0]  # noqa: E731
        ans = ans[cd_of(ans["id"]).isin(set(cd_of(sub["id"])))].reset_index(drop=True)
        if ans.empty:
            raise DataError(f"{pred_csv}: none of its case-days is in the truth file {truth_csv}")
        keyed = sub.drop_duplicates(["id", "class"]).set_index(["id", "class"])
        want = pd.MultiIndex.from_frame(ans[["id", "class"]])
        missing = want.difference(keyed.index)
        if len(missing):
            raise DataError(f"{pred_csv}: {len(missing)} (id, class) row(s) of its case-days missing: "
                            + _listing(missing))
        extra = keyed.index.difference(want)
        if len(extra):
            raise DataError(f"{pred_csv}: {len(extra)} (id, class) row(s) not in the truth file {truth_csv}: "
                            + _listing(extra))
        sub = keyed.reindex(want).reset_index()
    if not {"image_height", "image_width"} <= set(ans.columns):
        if data_root is None:
            raise DataError(f"{truth_csv}: no image_height/image_width columns; pass --data-root so that each "
                            "row's size comes from its image")
        slices = discover_split(data_root, split)
        geo = slices.set_index("id")[["height", "width"]]
        unknown = ~ans["id"].isin(geo.index)
        if unknown.any():
            u = ans[unknown]
            raise DataError(f"{truth_csv}: {int(unknown.sum())} row(s) with no image in {Path(data_root) / split}: "
                            + _listing(f"line {i + 2} ({v})" for i, v in zip(u.index, u["id"])))
        hw = geo.reindex(ans["id"]).to_numpy()
        ans["image_height"], ans["image_width"] = hw[:, 0], hw[:, 1]
    return grade_frames(sub, ans, who=str(pred_csv))


def report_mlebench(g: GradeResult, worst: int = 10) -> str:
    """Text report of :func:`score_files_mlebench` ending with one JSON line: score, dice, hausdorff,
    metric, counts, per_class {class: dice, n_dice_rows}, worst_case_days (highest hd first) and
    rows_paired_with_another_id (positions whose (id, class) differ from the answer row's)."""
    lines = [f"metric mlebench (MLE-bench's grader): score {_fmt(g.score)}  dice {_fmt(g.dice)}  "
             f"hausdorff {_fmt(g.hausdorff)}  ({len(g.hd_case_days)} case-days, {g.n_dice_rows} dice rows, "
             f"{g.n_hd_terms} hd terms)"]
    if g.mismatched_rows:
        lines.append(f"WARNING: {len(g.mismatched_rows)} row(s) hold another (id, class) than the answer row at "
                     f"their position (first at line {g.mismatched_rows[0] + 2}); MLE-bench pairs rows by "
                     "position, so they were scored against those answer rows")
    per_class = {}
    lines += ["", f"{'class':<12} {'dice':>9} {'dice_rows':>9}"]
    for name in dict.fromkeys(g.classes.tolist()):
        v = g.dice_rows[g.classes == name]
        n = int(np.isfinite(v).sum())
        d = float(np.nanmean(v)) if n else float("nan")
        per_class[name] = {"dice": d, "n_dice_rows": n}
        lines.append(f"{name:<12} {_fmt(d):>9} {n:>9}")
    ranked = sorted(g.hd_case_days, key=lambda t: (-(t[1] if not math.isnan(t[1]) else -1.0), t[0]))
    n = min(worst, len(ranked))
    lines += ["", f"worst {n} of {len(ranked)} case-days by the grader's Hausdorff term (nan: both empty):"]
    lines += [f"{cd:<20} {_fmt(v):>9}" for cd, v in ranked[:n]]
    js = {"score": g.score, "dice": g.dice, "hausdorff": g.hausdorff, "metric": "mlebench",
          "n_case_days": len(g.hd_case_days), "n_dice_rows": g.n_dice_rows, "n_hd_terms": g.n_hd_terms,
          "per_class": per_class, "worst_case_days": [{"case_day": cd, "hd": v} for cd, v in ranked[:n]],
          "rows_paired_with_another_id": len(g.mismatched_rows)}
    lines.append(json.dumps(_json_safe(js)))
    return "\n".join(lines)


def _fmt(v) -> str:
    return "   nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def report_tables(scorer: Scorer, worst: int = 10) -> str:
    """Text tables: one row per class, then the ``worst`` case-days (lowest score first)."""
    r = scorer.result()
    head = (f"metric {r['metric']}: score {r['score']:.5f}  dice {r['dice']:.5f}  hausdorff {r['hausdorff']:.5f}"
            f"  ({r['n_case_days']} case-days, {r['n_dice_rows']} dice rows, {r['n_hd_terms']} hd terms)")
    lines = [head, ""]
    keys = ("dice", "hausdorff", "score", "iou", "precision", "recall")
    lines.append(f"{'class':<12} " + " ".join(f"{k:>9}" for k in keys) + f" {'dice_rows':>9} {'hd_terms':>8}")
    for name, pc in r["per_class"].items():
        lines.append(f"{name:<12} " + " ".join(f"{_fmt(pc[k]):>9}" for k in keys)
                     + f" {pc['n_dice_rows']:>9} {pc['n_hd_terms']:>8}")
    table = scorer.case_day_table()
    n = min(worst, len(table))
    lines += ["", f"worst {n} of {len(table)} case-days (hd = normalised Hausdorff distance):"]
    cols = [c for c in table.columns if c != "case_day"]
    lines.append(f"{'case_day':<16} " + " ".join(f"{c[:16]:>16}" for c in cols))
    for row in table.head(n).itertuples(index=False):
        lines.append(f"{row[0]:<16} " + " ".join(f"{_fmt(v):>16}" for v in row[1:]))
    return "\n".join(lines)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def report_json(scorer: Scorer, worst: int = 5) -> str:
    """One-line JSON: score, dice, hausdorff, counts, per_class and the ``worst`` case-days (NaN -> null)."""
    r = dict(scorer.result())
    table = scorer.case_day_table()
    r["worst_case_days"] = [{"case_day": cd, "score": s} for cd, s in
                            zip(table["case_day"].head(worst), table["score"].head(worst))]
    return json.dumps(_json_safe(r), sort_keys=False)


def warm_kernels() -> dict[str, list[str]]:
    """Compile (or load from numba's on-disk cache) every kernel a scoring run can call, with the argument
    types the real calls pass, so that the first real run loads compiled code instead of compiling it
    (``kk score --warmup``, run by ``make install``).

    The kernels are reached through their real entry points (``Scorer.add`` of every Hausdorff variant,
    ``grade_frames``'s one-class volumes) on tiny volumes, and the branches the data decide in a real run
    are taken explicitly: both Hausdorff methods (runs, and the EDT a run search falls back to) with both
    EDT buffer dtypes (int32, and int64 for large unit-cube weights), for the three-class scan of the
    default metric (per-slice boxes strided) and the one-class scan of the grader's volumes (boxes
    contiguous). Returns {kernel: [signature, ...]} of what this process holds compiled.
    """
    from kaggle_kit.metric import kernels, mlebench

    # 3 slices, every class present in both, the prediction off by a little: both directed terms run
    truth = np.zeros((3, 6, 7), np.uint8)
    truth[0:2, 1:4, 1:4] |= 1
    truth[1:3, 2:5, 3:6] |= 2
    truth[:, 0:2, 5:7] |= 4
    pred = np.roll(truth, 1, axis=2)
    pred[2, 5, 0] |= 7
    for name in ("3d", "3d_directed", "2d", "3d_unit_cube", "mlebench"):
        Scorer(name).add("warmup", pred, truth)
    for p, t, n in ((pred, truth, 3), (mlebench._as_mask(pred, "pred"), mlebench._as_mask(truth, "truth"), 1)):
        sc = kernels.scan(p, t, n)
        for method in ("runs", "edt"):
            for weights in ((1, 1, 1), (1 << 26, 1 << 26, 1 << 26)):  # int32 and int64 EDT buffers
                kernels.directed_from_scan(sc, p, t, 0, n, weights, method)
                kernels.directed_from_scan(sc, p, t, n, 0, weights, method)
            kernels.slices_from_scan(sc, p, t, 0, n, (1, 1), method)
    mlebench.counts_and_any(pred, truth, 3)
    return compiled_kernels()


def compiled_kernels() -> dict[str, list[str]]:
    """{kernel: [signature, ...]} of the metric kernels this process holds compiled (or loaded from the
    cache); kernels never called are absent."""
    from kaggle_kit.metric import kernels, mlebench

    held = {}
    for mod in (kernels, mlebench):
        for name, obj in vars(mod).items():
            if hasattr(obj, "signatures") and hasattr(obj, "py_func") and obj.signatures:
                held[f"{mod.__name__.rsplit('.', 1)[-1]}.{name}"] = [str(s) for s in obj.signatures]
    return held


_COLORS = ("tab:orange", "tab:green", "tab:blue", "tab:purple")
_POPCOUNT = np.array([i.bit_count() for i in range(256)], np.int64)


def write_plots(scorer: Scorer, tables: dict, out_dir, worst: int = 3, slices_per_case_day: int = 4,
                classes=CLASSES) -> list[Path]:
    """PNGs in ``out_dir``: ``per_class.png`` (bars of every per-class value) and, for each of the ``worst``
    case-days, ``worst_<k>_<case_day>.png``: the slices with most wrong pixels, image with the truth filled
    and the prediction outlined per class. Returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kaggle_kit.data.raw import read_slice_png

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    r = scorer.result()
    keys = ("dice", "hausdorff", "score", "iou", "precision", "recall")
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(classes)
    for i, name in enumerate(classes):
        vals = [r["per_class"][name][k] for k in keys]
        ax.bar(np.arange(len(keys)) + (i - (len(classes) - 1) / 2) * width, np.nan_to_num(vals), width,
               label=name, color=_COLORS[i % len(_COLORS)])
    ax.set_xticks(np.arange(len(keys)), keys)
    ax.set_ylim(0, 1)
    ax.set_title(f"per class ({r['metric']}): score {r['score']:.4f}, dice {r['dice']:.4f}, "
                 f"hd {r['hausdorff']:.4f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(out_dir / "per_class.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    table = scorer.case_day_table()
    slices = tables["slices"]
    for k, cd in enumerate(table["case_day"].head(worst)):
        g = slices[slices["case_day"] == cd].sort_values("slice")
        pred = volume_from_table(tables["pred"], g, classes)
        truth = volume_from_table(tables["truth"], g, classes)
        wrong = _POPCOUNT[pred ^ truth].reshape(len(g), -1).sum(1)  # wrong (pixel, class) pairs per slice
        zs = sorted(np.argsort(-wrong, kind="stable")[:slices_per_case_day])
        fig, axes = plt.subplots(1, len(zs), figsize=(3.2 * len(zs), 3.6), squeeze=False)
        for ax, z in zip(axes[0], zs):
            row = g.iloc[z]
            try:
                img = read_slice_png(row["path"]).astype(np.float32)
                img /= max(float(np.percentile(img, 99.5)), 1.0)
            except DataError:
                img = np.zeros(pred.shape[1:], np.float32)
            ax.imshow(np.clip(img, 0, 1), cmap="gray", interpolation="nearest")
            for i in range(len(classes)):
                t = (truth[z] >> i) & 1
                p = (pred[z] >> i) & 1
                color = matplotlib.colors.to_rgba(_COLORS[i % len(_COLORS)])
                if t.any():
                    ax.imshow(np.where(t[..., None] > 0, np.array(color[:3] + (0.35,)), 0), interpolation="nearest")
                if p.any() and 0 < p.sum() < p.size:
                    ax.contour(p, levels=[0.5], colors=[color], linewidths=1.0)
            ax.set_title(f"slice {int(row['slice'])}: {int(wrong[z])} px wrong", fontsize=8)
            ax.axis("off")
        rec = table[table["case_day"] == cd].iloc[0]
        fig.suptitle(f"{cd}: score {rec['score']:.3f} (truth filled, prediction outlined)", fontsize=9)
        fig.tight_layout()
        written.append(out_dir / f"worst_{k + 1}_{cd}.png")
        fig.savefig(written[-1], dpi=90)
        plt.close(fig)
    return written
