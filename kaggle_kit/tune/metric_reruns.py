"""Exact re-runs of tuned settings under several metrics, and tuning for MLE-bench's grader.

Whichever metric the tuner optimises, its report shows the held-out score under both the Kaggle-style
default and ``mlebench`` side by side: each fold's tuned setting is re-run on its held-out case-days through
the ensemble's own path (``fuse_case_day`` -> ``Scorer``, as ``tools/ensemble.py --split oof`` and
``tune.evaluate.verify_setting`` do), one fusion per case-day scored under every metric at once. Every exact
re-run of a tuning run (these, the mlebench candidates below and the train/serve check of the written
setting) is one :func:`rerun` pass: each case-day's maps read once, case-days fused on worker threads.

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
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from kaggle_kit.data.cache import Cache
from kaggle_kit.io.probmaps import read_probmap
from kaggle_kit.metric.scorer import MetricConfig, Scorer
from kaggle_kit.post.ensemble import fuse_case_day, parse_ensemble_config
from kaggle_kit.utils import progress

__all__ = ["MAX_CANDIDATES", "METRICS", "SURROGATE", "exact_choices", "mapping_key", "markdown", "rerun",
           "search_metric", "select_and_hold_out"]

METRICS = ("default", "mlebench")
SURROGATE = {"mlebench": "3d_unit_cube"}  # Hausdorff variant the per-class search optimises instead
MAX_CANDIDATES = 4  # step settings of the full fit re-scored for the exact mlebench choice


def search_metric(target: MetricConfig) -> MetricConfig:
    """The metric the per-class search sums for ``target``: itself, or its surrogate (:data:`SURROGATE`)
    with the same Dice rule and weights."""
    sub = SURROGATE.get(target.hd_variant)
    if sub is None:
        return target
    return replace(target, hd_variant=sub)


def mapping_key(ens: dict) -> str:
    """What identifies an ensemble mapping for fusion: every key but ``metric``, as canonical JSON."""
    return json.dumps({k: v for k, v in ens.items() if k != "metric"}, sort_keys=True, default=str)


def _metric_name(m) -> str:
    return m.name if isinstance(m, MetricConfig) else str(m)


def rerun(jobs: dict, cache, preds_root, metrics=METRICS, workers: int = 2, order=None) -> dict:
    """Score ensemble mappings exactly as ``tools/ensemble.py --split oof`` does.

    jobs: {label: (ensemble mapping, case-day names)} scored under ``metrics``, or {label: (mapping,
    case-day names, metrics)} under the job's own list; a metric is a name or a MetricConfig (the result
    is keyed by the name as given, or by ``MetricConfig.name``). One read of each case-day's maps serves
    every job; each distinct mapping (its ``metric`` key aside) is fused once per case-day and scored
    under every metric its jobs ask for (jobs asking the same score share one Scorer).

    Case-days run in ``order`` (default: the cache's), as ``verify_setting`` runs its list: ``workers``
    threads read and fuse them (at most ``2 * workers`` in flight), and the main thread adds them to the
    Scorers in that order, so every sum accumulates as in a one-thread run and the scores are the same
    bit for bit for any ``workers``. Returns {label: {metric: Scorer.result()}}.
    """
    specs = {}
    for label, job in jobs.items():
        ens, cds, ms = (*job, metrics) if len(job) == 2 else job
        cds, ms = list(cds), list(ms)
        if len(set(cds)) != len(cds):
            raise ValueError(f"job {label!r} lists a case-day twice")
        cfgs_m = {_metric_name(m): (m if isinstance(m, MetricConfig) else MetricConfig.from_name(m)) for m in ms}
        if len(cfgs_m) != len(ms):
            raise ValueError(f"job {label!r} names a metric twice")
        specs[label] = (ens, cds, cfgs_m)
    cfgs = {}  # mapping key -> its config, parsed for fusion (the metric is the Scorer's)
    for ens, _, _ in specs.values():
        cfgs.setdefault(mapping_key(ens), parse_ensemble_config({**ens, "metric": "default"}, "<tuned>"))
    scorers: dict = {}  # (mapping key, case-days, MetricConfig) -> Scorer
    wanted: dict = {}  # case-day -> {mapping key: [Scorer]}
    picks = {}  # label -> {metric name: Scorer}
    for label, (ens, cds, cfgs_m) in specs.items():
        k, picks[label] = mapping_key(ens), {}
        for name, m in cfgs_m.items():
            sk = (k, frozenset(cds), m)
            if sk not in scorers:
                scorers[sk] = Scorer(m, n_classes=len(cfgs[k].classes))
                for cd in cds:
                    wanted.setdefault(cd, {}).setdefault(k, []).append(scorers[sk])
            picks[label][name] = scorers[sk]
    cache_obj = Cache(cache)
    index = cache_obj.index("train")
    groups = {cd: g for cd, g in index.groupby("case_day", sort=False)}
    missing = sorted(set(wanted) - set(groups))
    if missing:
        raise KeyError(f"case-day(s) not in the cache: {missing[:5]}")
    seq = cache_obj.case_days("train") if order is None else list(order)
    run = [cd for cd in seq if cd in wanted]
    if len(set(run)) != len(wanted):
        raise ValueError(f"case-day(s) not in `order`: {sorted(set(wanted) - set(run))[:5]}")

    geometry = {}  # case-day -> (D, H, W), raw slice numbers in z order
    for cd in run:
        g = groups[cd].sort_values("z")
        geometry[cd] = (len(g), int(g["height"].iloc[0]), int(g["width"].iloc[0])), g["slice"].tolist()

    def fuse(cd):  # worker thread: the case-day's truth and each of its mappings' bits
        (d, h, w), numbers = geometry[cd]
        loaded, bits = {}, {}
        for k in wanted[cd]:
            cfg = cfgs[k]
            c = len(cfg.classes)
            maps = {}
            for m in cfg.members:
                if (m.exp, m.kind) not in loaded:
                    shape = (d, c, h, w) if m.kind == "pixel" else (d, c)
                    loaded[(m.exp, m.kind)] = read_probmap(preds_root, m.exp, "oof", cd, shape, numbers)
                maps[m.name] = loaded[(m.exp, m.kind)]
            bits[k], _ = fuse_case_day(cfg, maps, cd, (d, h, w))
        return np.asarray(cache_obj.mask("train", cd, mmap=False)), bits

    bar = progress(total=len(run), desc="exact re-run", unit="case-day")
    for cd, (truth, bits) in _in_order(fuse, run, max(1, int(workers))):
        for k, by_k in wanted[cd].items():
            for s in by_k:
                s.add(cd, bits[k], truth)
        bar.update()
    bar.close()
    return {label: {name: s.result() for name, s in by_m.items()} for label, by_m in picks.items()}


def _in_order(fn, items: list, workers: int):
    """(item, fn(item)) in the order of ``items``, ``fn`` running on ``workers`` threads with at most
    ``2 * workers`` items submitted and not yet consumed (what bounds the memory of their results)."""
    if workers == 1:
        for it in items:
            yield it, fn(it)
        return
    pending: deque = deque()
    todo = iter(items)
    with ThreadPoolExecutor(workers) as ex:
        try:
            while True:
                while len(pending) < 2 * workers and (it := next(todo, _END)) is not _END:
                    pending.append((it, ex.submit(fn, it)))
                if not pending:
                    return
                it, fut = pending.popleft()
                yield it, fut.result()
        finally:  # an error, or the consumer stopped: do not start what is still queued
            for _, fut in pending:
                fut.cancel()


_END = object()


def exact_choices(candidates, target: MetricConfig, max_candidates: int = MAX_CANDIDATES) -> list:
    """The (label, mapping) candidates :func:`select_and_hold_out` chooses among for ``target``: the distinct
    mappings (of identical ones the later label, which says more), the last ``max_candidates`` of them;
    none unless ``target`` is mlebench (the tuned setting is kept without a choice)."""
    if target.hd_variant != "mlebench":
        return []
    uniq: dict = {}
    for label, ens in candidates:
        uniq.pop(mapping_key(ens), None)
        uniq[mapping_key(ens)] = (label, ens)
    return list(uniq.values())[-max_candidates:]


def select_and_hold_out(candidates, folds, all_case_days, cache, preds_root, target: MetricConfig,
                        max_candidates: int = MAX_CANDIDATES, metrics=METRICS, also=None, workers: int = 2,
                        order=None) -> dict:
    """The exact part of a tuning run (module docstring), in one :func:`rerun` pass.

    candidates: [(step label, ensemble mapping)] of the full fit, plain average first, tuned setting last;
    folds: [(fold, its tuned ensemble mapping, held-out case-day names)]. With ``target`` mlebench the
    candidates (:func:`exact_choices`) are re-scored on ``all_case_days`` and the best by mlebench is
    chosen; otherwise the last (the tuned setting) is kept without a re-run. ``also``: {label: a
    :func:`rerun` job} more jobs for the same pass (the caller's check of each mapping it may write);
    ``workers``, ``order``: as for :func:`rerun`. Returns {"candidates": [{step, <metric>: score}] (empty
    without a choice), "chosen": label, "ensemble": chosen mapping, "held_out": [{fold, n_case_days,
    <metric>: score}], "held_out_mean" and "held_out_std": {metric: over folds}, "target": name,
    "selected_exactly": bool}, and with ``also`` "also": {label: {metric: Scorer.result()}}.
    """
    select = target.hd_variant == "mlebench"
    cands = exact_choices(candidates, target, max_candidates)
    jobs = {f"cand:{label}": (ens, all_case_days) for label, ens in cands}
    jobs.update({f"fold:{k}": (ens, cds) for k, ens, cds in folds})
    jobs.update({("also", label): job for label, job in (also or {}).items()})
    res = rerun(jobs, cache, preds_root, metrics, workers, order)
    rows = [{"step": label, **{m: res[f"cand:{label}"][m]["score"] for m in metrics}} for label, _ in cands]
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
    out = {"candidates": rows, "chosen": label, "ensemble": ens, "held_out": held, "held_out_mean": mean,
           "held_out_std": std, "target": target.name, "selected_exactly": select}
    if also is not None:
        out["also"] = {label: res[("also", label)] for label in also}
    return out


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
