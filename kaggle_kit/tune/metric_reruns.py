"""Exact re-runs of tuned settings under several metrics, and tuning for MLE-bench's grader.

Whichever metric the tuner optimises, its report shows the held-out score under both the Kaggle-style
default and ``mlebench`` side by side: each fold's tuned setting is re-run on its held-out case-days through
the ensemble's own path (``fuse_case_day`` -> ``Scorer``, as ``tools/ensemble.py --split oof`` and
``tune.evaluate.verify_setting`` do), one fusion per case-day scored under every metric at once.

Tuning FOR ``mlebench`` (``metric: mlebench`` in the search YAML), what is exact and what is not:

- the coordinate search sums statistics per (case-day, class), but mlebench's Hausdorff term ORs the three
  classes of a case-day into one volume, so it does not decompose per class. The search therefore
  optimises a SURROGATE (:data:`SURROGATE`): mlebench's Dice part exactly (the same rows, the same
  both-empty rule) plus a per-class Hausdorff term normalised to the unit cube (``3d_unit_cube``);
- EXACT (the grader's own number): the final choice among the full fit's step settings (the plain average,
  then the setting after each step group: at most ``max_candidates`` distinct ones, the most tuned kept)
  by their mlebench OOF score on all case-days (in-sample; ties go to the later step), the tuned YAML's
  in-sample score, and every held-out number labelled ``mlebench``;
- not nested: that final exact choice is made once, on all OOF case-days; each fold's held-out number is
  the fold's surrogate-tuned setting, re-scored exactly.
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from kaggle_kit.data.cache import Cache
from kaggle_kit.io.probmaps import read_probmap
from kaggle_kit.metric.scorer import MetricConfig, Scorer
from kaggle_kit.post.ensemble import fuse_case_day, parse_ensemble_config
from kaggle_kit.utils import progress

__all__ = ["METRICS", "SURROGATE", "markdown", "rerun", "search_metric", "select_and_hold_out"]

METRICS = ("default", "mlebench")
SURROGATE = {"mlebench": "3d_unit_cube"}  # Hausdorff variant the per-class search optimises instead


def search_metric(target: MetricConfig) -> MetricConfig:
    """The metric the per-class search sums for ``target``: itself, or its surrogate (:data:`SURROGATE`)
    with the same Dice rule and weights."""
    sub = SURROGATE.get(target.hd_variant)
    if sub is None:
        return target
    return replace(target, hd_variant=sub)


def _key(ens: dict) -> str:
    return json.dumps({k: v for k, v in ens.items() if k != "metric"}, sort_keys=True, default=str)


def rerun(jobs: dict, cache, preds_root, metrics=METRICS) -> dict:
    """Score ensemble mappings exactly as ``tools/ensemble.py --split oof`` does.

    jobs: {label: (ensemble mapping, case-day names)}. Each distinct mapping is fused once per case-day
    (maps read once per case-day for all mappings) and scored under every metric; case-days run in the
    cache's order, as ``verify_setting``. Returns {label: {metric: Scorer.result()}}.
    """
    cfgs = {}
    for ens, _ in jobs.values():
        cfgs.setdefault(_key(ens), parse_ensemble_config({**ens, "metric": "default"}, "<tuned>"))
    wanted: dict = {}  # case-day -> {mapping key: [labels]}
    for label, (ens, cds) in jobs.items():
        for cd in cds:
            wanted.setdefault(cd, {}).setdefault(_key(ens), []).append(label)
    scorers = {label: {m: Scorer(m, n_classes=len(cfgs[_key(ens)].classes)) for m in metrics}
               for label, (ens, _) in jobs.items()}
    cache_obj = Cache(cache)
    index = cache_obj.index("train")
    groups = {cd: g for cd, g in index.groupby("case_day", sort=False)}
    order = [cd for cd in cache_obj.case_days("train") if cd in wanted]
    missing = sorted(set(wanted) - set(order))
    if missing:
        raise KeyError(f"case-day(s) not in the cache: {missing[:5]}")
    for cd in progress(order, desc="exact re-run", unit="case-day"):
        g = groups[cd].sort_values("z")
        d, h, w = len(g), int(g["height"].iloc[0]), int(g["width"].iloc[0])
        numbers = g["slice"].tolist()
        truth = np.asarray(cache_obj.mask("train", cd))
        loaded: dict = {}
        for k, labels in wanted[cd].items():
            cfg = cfgs[k]
            c = len(cfg.classes)
            maps = {}
            for m in cfg.members:
                if (m.exp, m.kind) not in loaded:
                    shape = (d, c, h, w) if m.kind == "pixel" else (d, c)
                    loaded[(m.exp, m.kind)] = read_probmap(preds_root, m.exp, "oof", cd, shape, numbers)
                maps[m.name] = loaded[(m.exp, m.kind)]
            bits, _ = fuse_case_day(cfg, maps, cd, (d, h, w))
            for label in labels:
                for s in scorers[label].values():
                    s.add(cd, bits, truth)
    return {label: {m: s.result() for m, s in by_m.items()} for label, by_m in scorers.items()}


def select_and_hold_out(candidates, folds, all_case_days, cache, preds_root, target: MetricConfig,
                        max_candidates: int = 4, metrics=METRICS) -> dict:
    """The exact part of a tuning run (module docstring).

    candidates: [(step label, ensemble mapping)] of the full fit, plain average first, tuned setting last;
    folds: [(fold, its tuned ensemble mapping, held-out case-day names)]. With ``target`` mlebench the
    candidates are re-scored on ``all_case_days`` and the best by mlebench is chosen; otherwise the last
    (the tuned setting) is kept without a re-run. Returns {"candidates": [{step, <metric>: score}] (empty
    without a choice), "chosen": label, "ensemble": chosen mapping, "held_out": [{fold, n_case_days,
    <metric>: score}], "held_out_mean" and "held_out_std": {metric: over folds}, "target": name,
    "selected_exactly": bool}.
    """
    select = target.hd_variant == "mlebench"
    uniq: dict = {}
    for label, ens in candidates:  # later steps replace earlier identical settings (the label says more)
        uniq.pop(_key(ens), None)
        uniq[_key(ens)] = (label, ens)
    cands = list(uniq.values())
    cands = cands[-max_candidates:] if select else []
    jobs = {f"cand:{label}": (ens, all_case_days) for label, ens in cands}
    jobs.update({f"fold:{k}": (ens, cds) for k, ens, cds in folds})
    res = rerun(jobs, cache, preds_root, metrics)
    rows = [{"step": label, **{m: res[f"cand:{label}"][m]["score"] for m in metrics}} for label, _ in cands]
    best = len(rows) - 1
    if not select:
        label, ens = candidates[-1]
    elif rows:
        scores = [r[target.name] for r in rows]
        tol = 1e-12 * max(1.0, abs(max(scores)))
        best = max(i for i, s in enumerate(scores) if s >= max(scores) - tol)  # ties: the later step
        label, ens = cands[best]
    held = [{"fold": k, "n_case_days": len(cds), **{m: res[f"fold:{k}"][m]["score"] for m in metrics}}
            for k, _, cds in folds]
    mean = {m: (float(np.mean([h[m] for h in held])) if held else None) for m in metrics}
    std = {m: (float(np.std([h[m] for h in held])) if held else None) for m in metrics}
    return {"candidates": rows, "chosen": label, "ensemble": ens, "held_out": held, "held_out_mean": mean,
            "held_out_std": std, "target": target.name, "selected_exactly": select}


def markdown(both: dict) -> list[str]:
    """Report lines: held-out per fold under every metric side by side, then the exact candidates."""
    metrics = [m for m in METRICS if m in both["held_out_mean"]]
    md = ["", "## Held-out score under both metrics (exact re-run of each fold's tuned setting)", "",
          f"Tuned for `{both['target']}`"
          + (f" (search objective: the surrogate `{SURROGATE['mlebench']}` per class, Dice exact; the final "
             "choice below by the exact mlebench score)" if both["selected_exactly"] else "") + ".", "",
          "| fold | case-days | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for h in both["held_out"]:
        md.append(f"| {h['fold']} | {h['n_case_days']} | " + " | ".join(f"{h[m]:.4f}" for m in metrics) + " |")
    if both["held_out"]:
        md.append("| **mean** | | " + " | ".join(f"**{both['held_out_mean'][m]:.4f}**" for m in metrics) + " |")
    if not both["candidates"]:
        return md
    md += ["", "In-sample (all OOF case-days), exact, the candidates of the final choice:", "",
           "| setting | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for r in both["candidates"]:
        mark = " (chosen)" if r["step"] == both["chosen"] else ""
        md.append(f"| {r['step']}{mark} | " + " | ".join(f"{r[m]:.4f}" for m in metrics) + " |")
    return md
