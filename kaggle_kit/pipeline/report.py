"""The main job's human-readable report (stdout, before its final JSON line)."""
from __future__ import annotations

from kaggle_kit.pipeline.results import PipelineResult

__all__ = ["print_report"]


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def print_report(res: PipelineResult) -> None:
    sc, tune, sub = res.scores, res.tune, res.submission
    ts = tune.summary if tune else None
    print("\n=== kaggle_kit main job ===")
    print(f"{'stage':<32}{'seconds':>10}")
    for name, dt in res.stage_seconds:
        print(f"{name:<32}{dt:>10.1f}")
    print(f"{'total':<32}{res.seconds:>10.1f}\n")
    print(f"{'OOF score':<32}{'':>10}  (all OOF case-days; each member alone @0.5, search metric "
          f"{ts.metric if ts else 'n/a'})")
    print(f"{'baseline: empty':<32}{sc.baseline_empty:>10.4f}")
    print(f"{'baseline: intensity threshold':<32}{sc.baseline_intensity:>10.4f}")
    if ts:
        for e, s in ts.single_members.items():
            print(f"{e:<32}{s:>10.4f}")
        print(f"{'plain average @0.5':<32}{ts.plain_average_05:>10.4f}")
        # the overfitting guard, like for like: mean over held-out folds of each choice
        print(f"\n{'mean over held-out folds':<32}{'score':>10}  (search metric {ts.metric}"
              + (f", the surrogate for {ts.target_metric}: exact numbers by metric below)" if ts.target_metric else ")"))
        print(f"{'tuned (nested: tuned without it)':<32}{_fmt(ts.held_out_mean):>10}")
        print(f"{'plain average @0.5':<32}{_fmt(ts.plain_average_05_folds_mean):>10}")
        for e, v in (ts.single_members_folds_mean or {}).items():
            print(f"{e + ' alone @0.5':<32}{_fmt(v):>10}")
        print(f"{'tuned ensemble (in-sample)':<32}{tune.tuned_oof:>10.4f}")
    for e, aucs in sc.classifier_auc.items():
        print(f"classifier {e} OOF ROC-AUC: " + ", ".join(f"{c} {v:.4f}" for c, v in aucs.items())
              + "; after a 5-slice z mean: " + ", ".join(f"{v:.4f}" for v in sc.classifier_auc_z5[e].values()))
    for e, rec in sc.detector_box_recall.items():
        print(f"detector {e} OOF box recall of organ pixels: {rec:.5f}")
    for e, pads in sc.box_pad.items():
        print(f"crop member {e}: box pad per fold " + ", ".join(f"{k}: {v:.4f}" for k, v in sorted(pads.items())))
    print(f"{'test: notebook submission':<32}{_fmt(sub.test):>10}")
    print(f"{'test: kk ensemble on maps':<32}{_fmt(sub.test_from_maps):>10}")
    nb = sub.notebook
    if nb:
        print(f"notebook: {nb.mode} mode, {nb.case_days} case-days, dropped members: {nb.dropped or 'none'}, "
              f"{nb.seconds_per_case_day} s per case-day in all")
        if nb.failures:  # the notebook renormalised over the other members: say so loudly
            print(f"notebook WARNING: {len(nb.failures)} member failures, first: {nb.failures[0]}")
        for m, sec in nb.member_seconds_per_case_day.items():
            print(f"  {m}: {sec:.2f} s per case-day (all its folds)")
    if res.tuned_oof_by_metric:
        print("tuned ensemble OOF by metric: " + ", ".join(f"{m} {v:.4f}" for m, v in res.tuned_oof_by_metric.items())
              + f" (tuned for {res.data.tuning_metric})")
    if ts and ts.held_out_by_metric:
        print("held-out folds (each tuned without it), exact, by metric: " + ", ".join(
            f"{m} {_fmt(v)}" for m, v in ts.held_out_by_metric.items()))
    if res.budget:
        b = res.budget
        print(f"\n{'budget: plan vs actual':<32}{'planned s':>10}{'actual s':>10}")
        for row in b["stages"]:
            pl = "" if row["planned_s"] is None else f"{row['planned_s']:.0f}"
            print(f"{row['stage']:<32}{pl:>10}{row['actual_s']:>10.0f}")
        print(f"{'total':<32}{b['planned_total_s']:>10.0f}{b['actual_total_s']:>10.0f}   budget {b['budget_s']:.0f} s "
              f"({b['over_budget_pct']:+.1f} %), {b['replans']} plans: {b['plan_json']}")
        for d in b["dropped"]:
            print(f"budget: member {d['member']} dropped: {d['why']}")
