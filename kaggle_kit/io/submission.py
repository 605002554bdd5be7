"""Submission rows, validation and atomic writing.

Expected rows (``id, class``) of a split, in the order the submission must follow:

- ``test``: ``sample_submission.csv`` when non-empty, else ``test.csv`` when present and non-empty, else
  built from the images under ``test/`` (ids by case, day, slice; classes in ``CLASSES`` order);
- ``train`` (OOF runs): ``train.csv`` when present and non-empty, else built from ``train/``.

Every expected id must have an image (its geometry gives the RLE's pixel count).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.data.raw import CLASSES, DataError, discover_split
from kaggle_kit.data.rle import rle_parse
from kaggle_kit.utils import UserError, atomic_path

__all__ = [
    "HEADER",
    "SubmissionError",
    "attach_geometry",
    "bad_rows",
    "expected_rows",
    "rows_from_slices",
    "validate_submission",
    "write_submission",
]

HEADER = ("id", "class", "predicted")
_ROW_SOURCES = {"test": ("sample_submission.csv", "test.csv"), "train": ("train.csv",)}


class SubmissionError(UserError, ValueError):
    """A submission (or its expected rows) that does not fit; the message names the row."""


def rows_from_slices(slices: pd.DataFrame, classes=CLASSES) -> pd.DataFrame:
    """One row per (slice, class) of a ``discover_split`` table, slice-major in its order."""
    ids = np.repeat(slices["id"].to_numpy(dtype=object), len(classes))
    cls = np.tile(np.asarray(classes, dtype=object), len(slices))
    return pd.DataFrame({"id": ids, "class": cls})


def expected_rows(data_root, split: str = "test", slices: pd.DataFrame | None = None) -> pd.DataFrame:
    """The (id, class) rows a submission of ``split`` must have, in order (see the module docstring)."""
    if split not in _ROW_SOURCES:
        raise SubmissionError(f"split must be one of {sorted(_ROW_SOURCES)}, got {split!r}")
    root = Path(data_root)
    for name in _ROW_SOURCES[split]:
        p = root / name
        if not p.is_file():
            continue
        try:
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:  # 0 bytes: no rows, like a header-only file
            continue
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise SubmissionError(f"{p}: not a readable CSV ({' '.join(str(e).split())[:200]}); expected "
                                  "id,class,... with a header") from None
        missing = {"id", "class"} - set(df.columns)
        if missing:
            raise SubmissionError(f"{p}: missing column(s) {sorted(missing)}")
        if len(df):
            rows = df[["id", "class"]].reset_index(drop=True)
            _check_rows(rows, str(p))
            rows.attrs["source"] = str(p)
            return rows
    if slices is None:
        slices = discover_split(root, split)
    rows = rows_from_slices(slices)
    rows.attrs["source"] = f"the images under {root / split}"
    return rows


def _check_rows(rows: pd.DataFrame, source: str) -> None:
    bad = ~rows["class"].isin(CLASSES)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SubmissionError(f"{source}: row {i + 2} has unknown class {rows['class'].iloc[i]!r}; expected {CLASSES}")
    dup = rows.duplicated(["id", "class"])
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise SubmissionError(f"{source}: row {i + 2} repeats ({rows['id'].iloc[i]}, {rows['class'].iloc[i]})")


def attach_geometry(rows: pd.DataFrame, slices: pd.DataFrame, source: str = "rows") -> pd.DataFrame:
    """rows + columns case_day, z, height, width from the slice table; SubmissionError for an id without image
    (naming ``source`` and the file the rows came from, ``rows.attrs["source"]`` of ``expected_rows``)."""
    geo = slices.set_index("id")[["case_day", "z", "height", "width"]]
    missing = ~rows["id"].isin(geo.index)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        origin = rows.attrs.get("source")
        where = f"{source} (from {origin})" if origin and origin != source else source
        raise SubmissionError(f"{where}: row {i + 2} id {rows['id'].iloc[i]!r} has no image "
                              f"({int(missing.sum())} such row(s)); the rows and the image folder must match")
    return rows.join(geo, on="id")


def bad_rows(rows: pd.DataFrame, predicted: list[str], slices: pd.DataFrame) -> dict[int, str]:
    """Row by row: {row position: why} for every prediction that may not stand, the hidden run's check
    before it writes (it empties these rows and keeps the rest). An empty prediction is always valid; a
    non-empty one needs an image for its id (its geometry gives H*W) and an RLE that parses inside it
    (sorted, positive, non-overlapping runs)."""
    geo = slices.set_index("id")[["height", "width"]]
    geo = geo[~geo.index.duplicated()]
    n_pix = (geo["height"].astype(np.int64) * geo["width"].astype(np.int64)).to_dict()
    out = {}
    for i, (id_, cls, rle) in enumerate(zip(rows["id"], rows["class"], predicted)):
        if not str(rle).strip():
            continue
        if id_ not in n_pix:
            out[i] = f"({id_}, {cls}): a prediction for an id with no image"
            continue
        try:
            rle_parse(str(rle), int(n_pix[id_]))
        except ValueError as e:
            out[i] = f"({id_}, {cls}): {e}"
    return out


def write_submission(path, rows: pd.DataFrame, predicted) -> Path:
    """Atomically write ``id,class,predicted`` in ``rows`` order; ``predicted``: list aligned with rows or a
    dict (id, class) -> RLE string. A failure leaves no (partial) file at ``path``."""
    if isinstance(predicted, dict):
        try:
            predicted = [predicted[k] for k in zip(rows["id"], rows["class"])]
        except KeyError as e:
            raise SubmissionError(f"no prediction for row {e.args[0]}") from None
    if len(predicted) != len(rows):
        raise SubmissionError(f"{len(predicted)} predictions for {len(rows)} rows")
    lines = [",".join(HEADER)]
    lines += [f"{i},{c},{p}" for i, c, p in zip(rows["id"], rows["class"], predicted)]
    path = Path(path)
    if path.is_dir():
        raise SubmissionError(f"{path}: is a folder; --out must be a file path (e.g. {path / 'submission.csv'})")
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    return path


def _check_same_rows(sub: pd.DataFrame, rows: pd.DataFrame, sub_path: Path) -> None:
    """SubmissionError naming the first bad row of ``sub`` (CSV line numbers, header = 1): a repeated row,
    a row that is not expected (extra), a missing expected row, or rows out of order; and the file the
    expected rows come from."""
    origin = rows.attrs.get("source", "the expected rows")
    dup = sub.duplicated(["id", "class"])
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((sub["id"] == sub["id"].iloc[i]) & (sub["class"] == sub["class"].iloc[i]))[0])
        raise SubmissionError(f"{sub_path}: row {i + 2} repeats ({sub['id'].iloc[i]}, {sub['class'].iloc[i]}) of "
                              f"row {first + 2}; each (id, class) of {origin} must appear once")
    n = min(len(sub), len(rows))
    s_key = list(zip(sub["id"], sub["class"]))
    r_key = list(zip(rows["id"], rows["class"]))
    diff = [i for i in range(n) if s_key[i] != r_key[i]]
    if diff:
        i = diff[0]
        expected = set(r_key)
        if s_key[i] not in expected:
            raise SubmissionError(f"{sub_path}: row {i + 2} ({s_key[i][0]}, {s_key[i][1]}) is not an expected row "
                                  f"(extra; {origin} has no such row); remove it")
        if r_key[i] not in set(s_key):
            raise SubmissionError(f"{sub_path}: row {i + 2} is ({s_key[i][0]}, {s_key[i][1]}); expected "
                                  f"({r_key[i][0]}, {r_key[i][1]}), which is missing from the submission "
                                  f"({len(sub)} rows, {len(rows)} expected from {origin})")
        raise SubmissionError(f"{sub_path}: row {i + 2} is ({s_key[i][0]}, {s_key[i][1]}); expected "
                              f"({r_key[i][0]}, {r_key[i][1]}) (ids, classes and order must match {origin} exactly)")
    if len(sub) > len(rows):
        i = len(rows)
        raise SubmissionError(f"{sub_path}: {len(sub)} rows; expected {len(rows)} (from {origin}): row {i + 2} "
                              f"({s_key[i][0]}, {s_key[i][1]}) and the rest after it are extra")
    if len(sub) < len(rows):
        i = len(sub)
        raise SubmissionError(f"{sub_path}: {len(sub)} rows; expected {len(rows)} (from {origin}): row {i + 2} "
                              f"({r_key[i][0]}, {r_key[i][1]}) and {len(rows) - len(sub) - 1} more are missing")


def validate_submission(sub_path, data_root, split: str = "test", slices: pd.DataFrame | None = None,
                        rows: pd.DataFrame | None = None, no_image_ok: bool = False) -> dict:
    """Check a submission against the expected rows of ``split`` and every RLE against its slice's geometry.

    Exact header ``id,class,predicted``; same ids and classes in the same order; every RLE parses, with
    sorted, positive, non-overlapping runs inside H*W. Raises SubmissionError naming the first bad row;
    returns ``{"rows": n, "non_empty": k}``. ``slices``/``rows`` restrict the check to a subset of the split
    (the notebook's debug mode on a few train case-days). ``no_image_ok``: a row whose id has no image is
    valid when its prediction is empty (the hidden run's file for a test folder with images missing).
    """
    sub_path = Path(sub_path)
    if not sub_path.is_file():
        raise SubmissionError(f"{sub_path}: not found")
    try:
        sub = pd.read_csv(sub_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise SubmissionError(f"{sub_path}: not a readable CSV ({e})") from None
    if tuple(sub.columns) != HEADER:
        raise SubmissionError(f"{sub_path}: header {list(sub.columns)}; expected {list(HEADER)}")
    if slices is None:
        slices = discover_split(data_root, split)
    if rows is None:
        rows = expected_rows(data_root, split, slices)
    _check_same_rows(sub, rows, sub_path)
    if not len(rows):
        return {"rows": 0, "non_empty": 0}
    if no_image_ok:
        bad = bad_rows(rows, sub["predicted"].tolist(), slices)
        if bad:
            i = min(bad)
            raise SubmissionError(f"{sub_path}: row {i + 2} {bad[i]}")
        return {"rows": len(sub), "non_empty": int((sub["predicted"].str.strip() != "").sum())}
    try:
        geo = attach_geometry(rows, slices, str(sub_path))
    except DataError as e:
        raise SubmissionError(str(e)) from None
    n_pix = (geo["height"].astype(np.int64) * geo["width"].astype(np.int64)).to_numpy()
    non_empty = 0
    for i, rle in enumerate(sub["predicted"].tolist()):
        if not rle.strip():
            continue
        non_empty += 1
        try:
            rle_parse(rle, int(n_pix[i]))
        except ValueError as e:
            raise SubmissionError(f"{sub_path}: row {i + 2} ({sub['id'].iloc[i]}, {sub['class'].iloc[i]}, "
                                  f"{geo['height'].iloc[i]}x{geo['width'].iloc[i]}): {e}") from None
    return {"rows": len(sub), "non_empty": non_empty}
