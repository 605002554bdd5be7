"""The tuning report: markdown + PNG plots + the numbers as JSON, next to the tuned ensemble YAML.

Input: the dict :func:`kaggle_kit.tune.search.tune_oof` returns. Plots (matplotlib, Agg backend):
``thresholds.png`` (score vs threshold per class), ``weights.png`` (weight sweeps per class and member),
``sweeps.png`` (every other per-class sweep), ``folds.png`` (per fold: in-sample vs held-out, next to the
plain average and the best single member on the held-out fold), ``steps.png`` (the gain of each group of
numbers over the plain average at 0.5, in-sample and held out). Every curve is the score of the whole
ensemble with only that number changed from the tuned setting.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from kaggle_kit.data.raw import CLASSES
from kaggle_kit.post.steps import PARAMS
from kaggle_kit.tune.metric_reruns import markdown as metric_reruns_markdown
from kaggle_kit.utils import atomic_write_json, atomic_write_text

__all__ = ["write_report", "write_tuned_yaml"]

# the per-class sweeps plotted in sweeps.png and their titles (thresholds and weights have their own plots)
_STAGE_TITLES = {"classifier_weights": "classifier weights",
                 **{p.name: p.label for p in PARAMS if p.per_class and p.name != "threshold"}}
_GLOBALS = tuple(p.name for p in PARAMS if not p.per_class)


def _f(v, nd: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def write_tuned_yaml(path, ensemble: dict, summary: dict, search_path: str = "", report_dir: str = "") -> None:
    """The tuned ensemble YAML with a header saying where its numbers come from."""
    import yaml

    held = summary.get("held_out_mean")
    head = [
        "# Tuned on out-of-fold maps by tools/tune_oof.py" + (f" from {search_path}" if search_path else ""),
        f"# in-sample score {summary['in_sample']:.5f} over {summary['n_case_days']} case-days ({summary['metric']})"
        + (f"; held-out {held:.5f} +- {summary['held_out_std']:.5f} over {summary['n_folds']} folds"
           if held is not None else ""),
        f"# plain average @0.5 {summary['plain_average_05']:.5f}; best single member "
        + ", ".join(f"{k} {v:.5f}" for k, v in summary["best_single_member"].items()),
    ]
    if report_dir:
        head.append(f"# report: {report_dir}/report.md")
    head.append("# Run it: python tools/ensemble.py THIS.yaml --data-root ROOT --split test --out submission.csv")
    atomic_write_text(path, "\n".join(head) + "\n" + yaml.safe_dump(ensemble, sort_keys=False))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _sweeps(res: dict, stage: str) -> list[dict]:
    return [s for s in res["sweeps"] if s["stage"] == stage]


def _plot_thresholds(res, out: Path) -> bool:
    sw = _sweeps(res, "threshold")
    if not sw:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    thr = res["ensemble"]["threshold"]
    for s in sw:
        order = np.argsort(s["values"])
        x, y = np.array(s["values"])[order], np.array(s["scores"])[order]
        line, = ax.plot(x, y, marker="o", ms=3, label=s["class"])
        t = thr[s["class"]] if isinstance(thr, dict) else thr
        ax.plot([t], [y[np.argmin(np.abs(x - t))]], marker="*", ms=12, color=line.get_color())
    ax.set_xlabel("threshold of the class (others at their tuned values)")
    ax.set_ylabel("OOF score (all folds)")
    ax.set_title("Score vs threshold per class (star: chosen)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "thresholds.png", dpi=110)
    plt.close(fig)
    return True


def _plot_weights(res, out: Path, members: list[str]) -> bool:
    sw = _sweeps(res, "weights")
    if not sw or len(members) < 2:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(sw), figsize=(4.2 * len(sw), 3.6), squeeze=False)
    for ax, s in zip(axes[0], sw):
        vals = np.array([np.array(v) / sum(v) for v in s["values"]])
        scores = np.array(s["scores"])
        for m, name in enumerate(members):
            xs = np.unique(np.round(vals[:, m], 6))
            prof = [scores[np.abs(vals[:, m] - x) < 1e-6].max() for x in xs]
            ax.plot(xs, prof, marker="o", ms=3, label=name)
        ax.set_title(f"{s['class'] or 'all classes'}: best score at each weight", fontsize=10)
        ax.set_xlabel("normalised weight of the member")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("OOF score (all folds)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Weight grid of round {sw[0].get('round', 1)} of the full fit (the other numbers as they were then)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "weights.png", dpi=110)
    plt.close(fig)
    return True


def _plot_other_sweeps(res, out: Path) -> bool:
    stages = [st for st in _STAGE_TITLES if _sweeps(res, st)]
    globals_ = [s for s in res["sweeps"] if s["stage"] in _GLOBALS]
    n = len(stages) + len(globals_)
    if not n:
        return False
    plt = _plt()
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    flat = axes.ravel()
    for ax, st in zip(flat, stages):
        for s in _sweeps(res, st):
            ax.plot(range(len(s["labels"])), s["scores"], marker="o", ms=3, label=s["class"] or "all classes")
            ax.set_xticks(range(len(s["labels"])), s["labels"], rotation=45, fontsize=7)
        ax.set_title(f"{_STAGE_TITLES[st]} (round {_sweeps(res, st)[0].get('round', '?')})", fontsize=9)
        ax.grid(alpha=0.3)
    for ax, s in zip(flat[len(stages):], globals_):
        ax.bar(range(len(s["labels"])), s["scores"], color="tab:gray")
        lo, hi = min(s["scores"]), max(s["scores"])
        ax.set_ylim(lo - (hi - lo + 1e-4), hi + (hi - lo + 1e-4) * 0.5)
        ax.set_xticks(range(len(s["labels"])), s["labels"], fontsize=7)
        ax.set_title(f"{s['stage']} (all classes, round {s.get('round', '?')})", fontsize=9)
    for ax in flat[n:]:
        ax.axis("off")
    flat[0].legend(fontsize=7)
    fig.suptitle("Sweeps of the other numbers in the full fit (first value: the one current then)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "sweeps.png", dpi=100)
    plt.close(fig)
    return True


def _plot_folds(res, out: Path) -> bool:
    folds = res["folds"]
    if not folds:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(folds) + 2), 3.8))
    x = np.arange(len(folds))
    series = [("in-sample (training folds)", [f["in_sample"] for f in folds]),
              ("held-out fold", [f["held_out"] for f in folds]),
              ("plain average @0.5 (held-out fold)", [f["plain_average_05"] for f in folds]),
              ("best single member (held-out fold)", [max(f["single_members"].values()) for f in folds])]
    wbar = 0.8 / len(series)
    for i, (label, ys) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * wbar, ys, wbar, label=label)
    ys_all = [y for _, ys in series for y in ys]
    lo, hi = min(ys_all), max(ys_all)
    ax.set_ylim(max(0.0, lo - 0.1 * (hi - lo) - 0.01), hi + 0.45 * (hi - lo) + 0.01)  # room for the legend
    ax.set_xticks(x, [f"fold {f['fold']}" for f in folds])
    ax.set_ylabel("score")
    ax.set_title("Nested evaluation: each fold held out from its own tuning")
    ax.legend(fontsize=7, loc="upper center", ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "folds.png", dpi=110)
    plt.close(fig)
    return True


def _plot_steps(res, out: Path) -> bool:
    steps = res["steps"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    x = np.arange(len(steps))
    base = steps[0]["in_sample"]
    ax.bar(x - 0.2, [s["in_sample"] - base for s in steps], 0.4, label="in-sample (all folds)")
    if "held_out_mean" in steps[0]:
        b0 = steps[0]["held_out_mean"]
        ax.bar(x + 0.2, [s["held_out_mean"] - b0 for s in steps], 0.4,
               yerr=[s["held_out_std"] for s in steps], capsize=3, label="held-out mean (± std over folds)")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, [s["step"] for s in steps], rotation=20, fontsize=8)
    ax.set_ylabel("score gain over plain average @0.5")
    ax.set_title("Cumulative gain of each group of tuned numbers")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "steps.png", dpi=110)
    plt.close(fig)
    return True


def _yaml_value(ens: dict, p):
    """A number's value in the tuned ensemble mapping (None when not written: neutral)."""
    v = ens
    for k in p.path:
        v = v.get(k) if isinstance(v, dict) else None
    return v


def _class_table(ens: dict, classes) -> list[str]:
    def get(v, c):
        return v.get(c) if isinstance(v, dict) else v

    rows = [(p.label, _yaml_value(ens, p)) for p in PARAMS if p.per_class]
    out = ["| number | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for name, v in rows:
        out.append(f"| {name} | " + " | ".join("off" if v is None else str(get(v, c)) for c in classes) + " |")
    for m in ens["members"]:
        weights = " | ".join(str(get(m["weight"], c)) for c in classes)
        out.append(f"| weight {m['exp']} ({m['kind']}) | {weights} |")
    return out


def _scores_section(res: dict, tuned_yaml: str, search_path: str) -> list[str]:
    """Header, the scores table (tuned, plain average, single members), both metrics, the skew check."""
    md: list[str] = []
    s = res["summary"]
    fm = s.get("single_members_folds_mean") or {}
    best = max(fm, key=fm.get) if fm else None
    md += ["# OOF tuning report", ""]
    md.append(f"Search space: `{search_path or 'n/a'}`; tuned ensemble: `{tuned_yaml or 'n/a'}`; "
              f"metric `{s['metric']}`"
              + (f" (the per-class surrogate searched for `{s['target_metric']}`: the scores below are the "
                 f"surrogate's, the exact `{s['target_metric']}` ones are in the both-metrics section)"
                 if s.get("target_metric") else "") + "; "
              f"{s['n_case_days']} case-days in {s['n_folds']} folds.")
    md += ["", "## Scores", "", "| | all case-days | held-out folds (mean ± std) |", "|---|---|---|"]
    ho = f"{_f(s['held_out_mean'])} ± {_f(s['held_out_std'])}" if s["held_out_mean"] is not None else "n/a"
    md.append(f"| **tuned ensemble** | {_f(s['in_sample'])} (in-sample) | {ho} |")
    if s.get("held_out_pooled") is not None:
        md.append(f"| tuned, each fold by its own fit (pooled) | {_f(s['held_out_pooled'])} | |")
    md.append(f"| plain average @0.5 | {_f(s['plain_average_05'])} | {_f(s.get('plain_average_05_folds_mean'))} |")
    for e, v in s["single_members"].items():
        mark = " (best single)" if e in s["best_single_member"] else ""
        md.append(f"| {e} alone @0.5{mark} | {_f(v)} | {_f(fm.get(e))} |")
    if s["held_out_mean"] is not None and best is not None:
        md += ["", (f"Held-out mean of the tuned ensemble minus the best single member's fold mean: "
                   f"{s['held_out_mean'] - fm[best]:+.4f}; minus the plain average's: "
                   f"{s['held_out_mean'] - s['plain_average_05_folds_mean']:+.4f}. In-sample minus held-out "
                   f"mean (the optimism of choosing on the same folds): "
                   f"{np.mean([f['in_sample'] for f in res['folds']]) - s['held_out_mean']:+.4f}.")]
    if s.get("metric_reruns"):  # held out under both metrics side by side, exact (tune.metric_reruns)
        md += metric_reruns_markdown(s["metric_reruns"])
    if "skew" in s:
        md += ["", (f"Train/serve skew check: the tuned YAML re-run through `fuse_case_day` + `Scorer` (the code of "
                   f"`tools/ensemble.py --split oof`) scores {s['in_sample']:.12f}; the search's own number is "
                   f"{s['in_sample_search']:.12f} (difference {s['skew']:.1e}).")]
    md += ["", "Per class (in-sample): " + "; ".join(
        f"{c} dice {_f(v['dice'])}, hd {_f(v['hausdorff'])}, score {_f(v['score'])}"
        for c, v in s["per_class"].items())]
    return md


def _tuned_section(res: dict) -> list[str]:
    """The tuned numbers per class and the global ones."""
    md: list[str] = []
    s, ens = res["summary"], res["ensemble"]
    md += ["", "## Tuned numbers", "", (f"Members kept: {', '.join(s['members_kept'])}; dropped (weight 0 for every "
           f"class, or a classifier no step uses): {', '.join(s['members_dropped']) or 'none'}."), ""]
    md += _class_table(ens, CLASSES)
    md += ["", "Global: " + ", ".join(f"{p.label} {'off' if _yaml_value(ens, p) is None else _yaml_value(ens, p)}"
                                      for p in PARAMS if not p.per_class) + "."]
    return md


def _steps_section(res: dict, plots: dict) -> list[str]:
    """The cumulative gain of each step group."""
    md: list[str] = []
    st = res["steps"]
    held = "held_out_mean" in st[0]
    md += ["", "## Gain of each step", "",
           "Cumulative, from the plain average at 0.5 to the tuned ensemble, one group of numbers at a time. The "
           "numbers were chosen jointly, so a group can show a loss on its own (e.g. thresholds tuned for "
           "gated masks) that a later group recovers.", "",
           "| step | in-sample | gain |" + (" held-out mean | gain |" if held else ""),
           "|---|---|---|" + ("---|---|" if held else "")]
    for row in st:
        line = f"| {row['step']} | {_f(row['in_sample'])} | {row['in_sample'] - st[0]['in_sample']:+.4f} |"
        if held:
            line += f" {_f(row['held_out_mean'])} | {row['held_out_mean'] - st[0]['held_out_mean']:+.4f} |"
        md.append(line)
    if plots["steps"]:
        md += ["", "![steps](steps.png)"]
    return md


def _folds_section(res: dict, plots: dict) -> list[str]:
    """The nested evaluation: one row per held-out fold."""
    md: list[str] = []
    if res["folds"]:
        md += ["", "## Nested evaluation", "",
               ("Each row: tuned on the other folds, scored on this one (the plain average and the single members "
               "need no tuning: their scores on the same fold)."), "",
               "| fold | case-days | in-sample | held-out | plain avg @0.5 | best single | rounds "
               "| thresholds chosen |",
               "|---|---|---|---|---|---|---|---|"]
        for f in res["folds"]:
            thr = f["ensemble"]["threshold"]
            thr_s = ", ".join(f"{v}" for v in thr.values()) if isinstance(thr, dict) else str(thr)
            md.append(f"| {f['fold']} | {f['n_case_days']} | {_f(f['in_sample'])} | {_f(f['held_out'])} | "
                      f"{_f(f['plain_average_05'])} | {_f(max(f['single_members'].values()))} | {f['rounds']} "
                      f"| {thr_s} |")
        if plots["folds"]:
            md += ["", "![folds](folds.png)"]
    return md


def _sweeps_section(plots: dict) -> list[str]:
    """The sweep plots around the tuned setting."""
    md: list[str] = []
    md += ["", "## Sweeps around the tuned setting", ""]
    for name in ("thresholds", "weights", "sweeps"):
        if plots[name]:
            md.append(f"![{name}]({name}.png)")
            md.append("")
    return md


def _ceilings_section(extra: dict | None) -> list[str]:
    """Each member's highest OOF probability per fold and class, and the capped outputs among them."""
    rows = (extra or {}).get("ceilings")
    if not rows:
        return []
    capped = {(r["member"], r["fold"], r["class"]): r["above"] for r in extra.get("capped", [])}
    md = ["", "## Probability ceilings", "",
          ("Each pixel member's highest OOF probability per fold and class (folds whose truth holds the class). "
           "A ceiling below a candidate threshold deletes the class on that whole fold at that threshold: a capped "
           "output (e.g. a dead head). \"< floor\": never reaches the lowest candidate."), "",
          "| member | fold | class | truth voxels | ceiling | candidate thresholds above it |", "|---|---|---|---|---|---|"]
    for r in rows:
        above = capped.get((r["member"], r["fold"], r["class"]))
        ceil = "< floor" if r["ceiling"] is None else f"{r['ceiling']:.3f}"
        md.append(f"| {r['member']} | {r['fold']} | {r['class']} | {r['truth_voxels']} | "
                  f"{'**' + ceil + '**' if above else ceil} | {', '.join(map(str, above)) if above else ''} |")
    return md + [""]


def _search_section(res: dict, extra: dict | None) -> list[str]:
    """How the search ran and what it cost."""
    md: list[str] = []
    t = res["timing"]
    runs = ", ".join(f"{r['name']}: {r['rounds']} round(s)" + ("" if r["converged"] else ", not converged")
                     for r in res["runs"])
    md += ["## Search", "",
           f"Coordinate ascent, {len(res['runs'])} run(s) in lockstep ({runs}); "
           f"{t['class_candidates']} distinct (class, setting) candidates evaluated on every case-day in "
           f"{t['passes']} passes. Time: search {t['search_s']:.1f} s, step gains + sweeps "
           f"{t['steps_and_sweeps_s']:.1f} s" + (f", exact re-run {t['verify_s']:.1f} s" if "verify_s" in t else "")
           + f", total {t['total_s']:.1f} s"
           + (f" (+ loading {extra['load_s']:.1f} s)" if extra and "load_s" in extra else "") + "."]
    return md


def write_report(res: dict, out_dir, tuned_yaml: str = "", search_path: str = "", extra: dict | None = None) -> Path:
    """Write ``report.md``, the PNGs and ``tuning.json`` under ``out_dir``; returns the markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pixel = list(res["summary"]["single_members"])
    plots = {"thresholds": _plot_thresholds(res, out), "weights": _plot_weights(res, out, pixel),
             "sweeps": _plot_other_sweeps(res, out), "folds": _plot_folds(res, out), "steps": _plot_steps(res, out)}
    md = (_scores_section(res, tuned_yaml, search_path) + _tuned_section(res) + _steps_section(res, plots)
          + _folds_section(res, plots) + _sweeps_section(plots) + _ceilings_section(extra) + _search_section(res, extra))
    path = out / "report.md"
    atomic_write_text(path, "\n".join(md) + "\n")
    atomic_write_json(out / "tuning.json", json.loads(json.dumps({**res, "extra": extra or {}}, default=_jsonable)))
    return path


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, tuple):
        return list(v)
    return str(v)
