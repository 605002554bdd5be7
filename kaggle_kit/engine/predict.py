"""Prediction driver shared by the families: OOF (each fold's model on its held-out case-days) and test
(mean over the chosen folds' models), written into the probability-map store with a manifest."""
from __future__ import annotations

from kaggle_kit.data.cache import Cache
from kaggle_kit.data.dataset25d import fold_case_days
from kaggle_kit.io.probmaps import ProbMapStore
from kaggle_kit.paths import inference_checkpoint
from kaggle_kit.utils import progress
from kaggle_kit.data.raw import CLASSES

__all__ = ["available_folds", "fold_plan", "predict_split"]


def available_folds(cache: Cache) -> list[int]:
    return sorted(int(f) for f in cache.folds()["fold"].unique())


def fold_plan(cache: Cache, split: str, folds) -> tuple[str, list[tuple[list, list[str]]]]:
    """Which models predict which case-days: (cache split, [(fold list, case-days)]). ``oof``: each fold's
    model on its held-out case-days; ``test``: the mean of the ``folds`` models (``"all"``: the model trained
    on every case) on every test case-day."""
    if split == "oof":
        return "train", [([f], fold_case_days(cache, f, "val")) for f in folds]
    if split == "test":
        return "test", [(["all"] if folds == "all" else list(folds), cache.case_days("test"))]
    raise KeyError(f"unknown split {split!r}; options: ['oof', 'test']")


def predict_split(*, family: str, kind: str, exp: str, split: str, cache_dir, work_root, pred_root,
                  make_predictor, settings: dict, folds=None, which: str = "last", aux_exp: str | None = None,
                  boxes_for=None) -> dict:
    """Run ``make_predictor(ckpt_path, **settings)`` models and write maps for ``split`` ("oof" or "test").

    ``make_predictor``: the family's own (what the notebook calls); ``settings``: its
    ``predictor_settings(cfg)``, recorded verbatim as the manifest's ``predictor`` (``tta`` also as ``tta``), which
    the bundle hands to the notebook's predictors: both paths build the same predictors from one dict.

    A predictor is called as ``pred(cache, cache_split, case_day, boxes=...)`` and returns float32
    (D, C, H, W) (pixel) or (D, C) (classifier) in raw geometry; a pixel predictor with an aux head also
    exposes ``last_presence`` (D, C), written as a classifier map under ``aux_exp`` when given.
    ``folds``: list of ints; for "test" the string "all" uses the model trained on every case.
    Returns a summary dict.
    """
    cache = Cache(cache_dir)
    store = ProbMapStore(pred_root)
    folds = available_folds(cache) if folds is None else folds
    cache_split, plan = fold_plan(cache, split, folds)
    boxes = boxes_for(cache_split) if boxes_for else None
    n = 0
    for fold_list, case_days in plan:
        preds = [make_predictor(inference_checkpoint(work_root, family, exp, f, which), **settings)
                 for f in fold_list]
        for cd in progress(case_days, desc=f"{exp} {split} folds {fold_list}", unit="case-day"):
            acc, pres = None, None
            for p in preds:
                m = p(cache, cache_split, cd, boxes=boxes)
                acc = m if acc is None else acc + m
                lp = getattr(p, "last_presence", None)
                if lp is not None:
                    pres = lp if pres is None else pres + lp
            store.write(exp, split, cd, acc / len(preds))
            if aux_exp and pres is not None:
                store.write(aux_exp, split, cd, pres / len(preds))
            n += 1
    fold_ints = [] if folds == "all" else [int(f) for f in folds]
    tta = settings.get("tta", "none")
    extra = {"trained_on_all": folds == "all", "checkpoint": which, "predictor": dict(settings)}
    store.write_manifest(exp, split, family=family, kind=kind, classes=list(cache_classes()), folds=fold_ints,
                         tta=tta, data_fingerprint=cache.fingerprint(), **extra)
    if aux_exp:
        store.write_manifest(aux_exp, split, family=family + "_aux", kind="classifier", classes=list(cache_classes()),
                             folds=fold_ints, tta=tta, data_fingerprint=cache.fingerprint(), **extra)
    return {"exp": exp, "split": split, "case_days": n, "folds": folds}


def cache_classes():
    return CLASSES
