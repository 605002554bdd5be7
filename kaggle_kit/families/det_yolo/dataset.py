"""16-bit slices -> 8-bit YOLO images, the YOLO dataset folder, and the letterbox used at predict time.

One conversion everywhere (:func:`yolo_image`): the 2.5D family's volume normalisation
(``dataset25d.normalise(..., "volume", volume_scale(img))``, i.e. / the 99.5th percentile of the case-day,
clipped to [0, 1.5]) mapped linearly to 0..255. ``channels="stack"`` puts the slices z-s, z, z+s
(clamped at the ends) into the three channels, ``"gray"`` repeats slice z. The PNGs written for training and
the arrays fed to the network at predict time come from this one function.

Layout (a pure function of work_root and exp; all folds share the images)::

    <work_root>/det_yolo/<exp>/data/images/<case_day>/<z:04d>.png   uint8 (H, W, 3), raw resolution
    <work_root>/det_yolo/<exp>/data/labels/<case_day>/<z:04d>.txt   "0 cx cy w h" (normalised) or empty
    <work_root>/det_yolo/<exp>/data/meta.json                       parameters + data fingerprint (written last)
    <work_root>/det_yolo/<exp>/fold<K>/{train.txt, val.txt, data.yaml}   the fold's image lists

Labels: one box per slice, class 0. ``organs``: the tight box of all organ pixels (+ ``label_margin``);
a slice in the annotated range without organs is a background image (empty label file). ``body``: the
slice's body box. ``train_slices="anno_range"`` keeps only slices between the first and last annotated
slice of annotated case-days (outside it organs may be visible but unlabelled); ``"all"`` keeps every slice.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from kaggle_kit.data.cache import Cache
from kaggle_kit.data.dataset25d import fold_case_days, normalise, volume_scale
from kaggle_kit.utils import atomic_path, atomic_write_json, atomic_write_text, progress, short_hash
from kaggle_kit.io.boxes import mask_box, truth_boxes_volume
from kaggle_kit.io.boxes import expand_box

__all__ = [
    "CHANNELS",
    "PAD_VALUE",
    "dataset_params",
    "dataset_root",
    "image_path",
    "letterbox",
    "write_fold_lists",
    "write_yolo_dataset",
    "yolo_image",
]

CHANNELS = ("stack", "gray")
PAD_VALUE = 114  # ultralytics' letterbox grey
_NORM_MAX = 1.5  # dataset25d.normalise("volume") clips to [0, 1.5]


def yolo_image(img: np.ndarray, z: int, vscale: float, channels: str = "stack", stride: int = 2) -> np.ndarray:
    """uint8 (H, W, 3) image of slice ``z`` of a uint16 (D, H, W) volume, channel order as stored in the PNG.

    ultralytics reads PNGs with OpenCV (this order = "BGR") and reverses the channels before the network;
    :func:`to_network` does the same for in-memory arrays.
    """
    if channels == "stack":
        ids = np.clip(np.array([z - stride, z, z + stride]), 0, img.shape[0] - 1)
    elif channels == "gray":
        ids = np.array([z, z, z])
    else:
        raise KeyError(f"unknown channels {channels!r}; options: {list(CHANNELS)}")
    x = normalise(np.asarray(img[ids]), "volume", vscale)  # float32 (3, H, W) in [0, 1.5]
    u8 = np.rint(x * (255.0 / _NORM_MAX)).astype(np.uint8)
    return np.ascontiguousarray(u8.transpose(1, 2, 0))


def letterbox(im: np.ndarray, imgsz: int) -> tuple[np.ndarray, tuple[float, float, int, int]]:
    """ultralytics' validation pre-processing: long side resized to ``imgsz`` (``load_image``: ceil, linear),
    then centred grey padding to (imgsz, imgsz) (``LetterBox(scaleup=False)``).

    Returns (uint8 (imgsz, imgsz, 3), (ry, rx, top, left)): a raw pixel (y, x) lands at (y*ry + top, x*rx + left).
    """
    import cv2

    h0, w0 = im.shape[:2]
    r = imgsz / max(h0, w0)
    if r != 1:
        w, h = min(int(np.ceil(w0 * r)), imgsz), min(int(np.ceil(h0 * r)), imgsz)
        im = cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)
    h, w = im.shape[:2]
    dh, dw = (imgsz - h) / 2, (imgsz - w) / 2
    top, left = round(dh - 0.1), round(dw - 0.1)
    out = np.full((imgsz, imgsz, im.shape[2]), PAD_VALUE, np.uint8)
    out[top:top + h, left:left + w] = im
    return out, (h / h0, w / w0, top, left)


def dataset_root(work_root, exp: str) -> Path:
    return Path(work_root) / "det_yolo" / exp / "data"


def image_path(root: Path, case_day: str, z: int) -> Path:
    return Path(root) / "images" / case_day / f"{z:04d}.png"


def dataset_params(data_cfg: dict) -> dict:
    """The ``data`` keys that change the written images or labels."""
    keys = ("mode", "channels", "stride", "label_margin", "body_frac", "train_slices", "exclude_faulty")
    return {k: data_cfg[k] for k in keys}


def _slices_for_training(idx, params: dict):
    """Index rows whose images/labels go into the YOLO dataset."""
    keep = np.ones(len(idx), bool)
    if params["exclude_faulty"] and "faulty" in idx:
        keep &= ~idx["faulty"].astype(bool).to_numpy()
    if params["train_slices"] == "anno_range":
        lo, hi, s = idx["first_anno"].to_numpy(), idx["last_anno"].to_numpy(), idx["slice"].to_numpy()
        keep &= (hi > 0) & (s >= lo) & (s <= hi)
    elif params["train_slices"] != "all":
        raise KeyError(f"unknown train_slices {params['train_slices']!r}; options: ['anno_range', 'all']")
    return idx[keep]


def _labels(img, mask, params: dict) -> list[tuple[int, int, int, int] | None]:
    """One box per slice (raw pixels) or None for a background slice."""
    D, H, W = img.shape
    if params["mode"] == "organs":
        out = []
        for z in range(D):
            b = mask_box(np.asarray(mask[z]))
            out.append(None if b is None else expand_box(b, (H, W), params["label_margin"]))
        return out
    boxes = truth_boxes_volume(img, None, "body", params["label_margin"], params["body_frac"])
    return [tuple(int(v) for v in b) for b in boxes]


def write_yolo_dataset(cache: Cache, root, data_cfg: dict, force: bool = False) -> dict:
    """Write (or reuse) the YOLO images and labels of every train case-day kept by ``data_cfg``.

    Reused when ``meta.json`` records the same parameters and data fingerprint. Returns the meta dict, whose
    ``slices`` maps case_day -> list of z written.
    """
    import cv2

    root = Path(root)
    params = dataset_params(data_cfg)
    if params["mode"] not in ("organs", "body"):
        raise KeyError(f"unknown box mode {params['mode']!r}; options: ['organs', 'body']")
    key = short_hash(sorted(params.items()), cache.fingerprint())
    meta_path = root / "meta.json"
    if meta_path.is_file() and not force:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            return meta
    meta_path.unlink(missing_ok=True)
    idx = _slices_for_training(cache.index("train"), params)
    slices: dict[str, list[int]] = {}
    n_pos = 0
    for cd, g in progress(list(idx.groupby("case_day", sort=False)), desc="yolo dataset", unit="case-day"):
        img = cache.image("train", cd)
        mask = cache.mask("train", cd) if params["mode"] == "organs" else None
        labels = _labels(img, mask, params)
        scale = volume_scale(img)
        H, W = img.shape[1:]
        zs = sorted(int(z) for z in g["z"])
        for z in zs:
            ok, png = cv2.imencode(".png", yolo_image(img, z, scale, params["channels"], params["stride"]),
                                   [cv2.IMWRITE_PNG_COMPRESSION, 1])
            if not ok:
                raise OSError(f"could not encode {image_path(root, cd, z)}")
            with atomic_path(image_path(root, cd, z)) as tmp:
                tmp.write_bytes(png.tobytes())
            b = labels[z]
            if b is None:
                text = ""
            else:
                y0, y1, x0, x1 = b
                text = f"0 {(x0 + x1) / 2 / W:.6f} {(y0 + y1) / 2 / H:.6f} {(x1 - x0) / W:.6f} {(y1 - y0) / H:.6f}\n"
                n_pos += 1
            atomic_write_text(root / "labels" / cd / f"{z:04d}.txt", text)
        slices[cd] = zs
    meta = {"key": key, "params": params, "fingerprint": cache.fingerprint(), "slices": slices,
            "images": sum(len(v) for v in slices.values()), "with_box": n_pos}
    atomic_write_json(meta_path, meta)
    return meta


def write_fold_lists(cache: Cache, root, fold_dir, fold, meta: dict) -> Path:
    """Write ``train.txt`` / ``val.txt`` (absolute image paths) and ``data.yaml`` for ``fold``; returns the yaml.

    ``fold="all"``: every case-day trains; ``val.txt`` repeats the training list (ultralytics needs one; the
    trainer runs with ``val=False`` then).
    """
    root, fold_dir = Path(root).resolve(), Path(fold_dir)
    parts = {}
    for part in ("train", "val"):
        cds = fold_case_days(cache, fold, "train" if fold == "all" else part)
        paths = [str(image_path(root, cd, z)) for cd in cds for z in meta["slices"].get(cd, [])]
        if not paths:
            raise ValueError(f"fold {fold}: no {part} images in the YOLO dataset (check data.train_slices)")
        parts[part] = fold_dir / f"{part}.txt"
        atomic_write_text(parts[part], "\n".join(paths) + "\n")
    data = {"path": str(root), "train": str(parts["train"].resolve()), "val": str(parts["val"].resolve()),
            "nc": 1, "names": {0: "roi"}, "channels": 3}
    out = fold_dir / "data.yaml"
    atomic_write_text(out, yaml.safe_dump(data, sort_keys=False))
    return out
