"""The main job end to end, on synthetic data or on any folder in the competition layout.

    python tools/run_all.py --work demo_out                      # synthetic data, tiny CPU configs
    python tools/run_all.py --work run1 --data-root ROOT --preset gpu

Stages (each one a tool a user would run by hand; the commands are printed):
generate synthetic data (unless --data-root) -> prepare the cache -> for every family of the preset:
train each fold, predict OOF and test -> score each member's OOF next to the baselines -> tune the
ensemble on OOF -> ensemble the test split -> validate submission.csv -> score it against
ROOT/test_truth.csv when that file exists. The LAST stdout line is one JSON object:
{"oof": {exp: score}, "tuned_oof": score, "test": score|null, "submission": path, ...}.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))  # run_notebook's helpers

# Family configs per preset (in training order: the detector first, since crops may depend on it).
PRESETS = {
    "tiny": ["configs/det_yolo/tiny_cpu.yaml", "configs/cls/tiny_cpu.yaml", "configs/seg25d/tiny_cpu.yaml",
             "configs/seg3d/tiny_cpu.yaml"],
    "gpu": ["configs/det_yolo/gpu_yolov8s.yaml", "configs/cls/gpu_effnet_b2.yaml",
            "configs/seg25d/unetpp_convnext_512.yaml", "configs/seg25d/upernet_mmseg_convnext_448.yaml",
            "configs/seg3d/gpu_segresnet.yaml"],
}
SEARCH = {"tiny": "configs/ensemble/search_default.yaml", "gpu": "configs/ensemble/search_default.yaml"}


class Stages:
    def __init__(self):
        self.times: list[tuple[str, float]] = []

    def run(self, name: str, cmd: list, env=None) -> str:
        t0 = time.time()
        print(f"[run_all] {name}: {' '.join(map(str, cmd))}", flush=True)
        p = subprocess.run([str(c) for c in cmd], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                           env=dict(os.environ, **(env or {})))
        dt = time.time() - t0
        self.times.append((name, dt))
        if p.returncode != 0:
            print(p.stdout[-4000:])
            raise SystemExit(f"[run_all] stage {name!r} failed (exit {p.returncode})")
        print(f"[run_all] {name} done in {dt:.0f} s", flush=True)
        return p.stdout


def last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="demo_out", help="output folder for everything this run writes")
    ap.add_argument("--data-root", default=None, help="competition folder; default: generate synthetic data")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--folds", type=int, default=None, help="number of folds (default: 3 tiny, 5 gpu)")
    ap.add_argument("--train-cases", type=int, default=10)
    ap.add_argument("--test-cases", type=int, default=3)
    ap.add_argument("--size-scale", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bundle-wheels", action="store_true",
                    help="put dependency wheels in the bundle (pip download; the notebook here runs in this venv)")
    ap.add_argument("--families", nargs="*", default=None, help="subset of the preset's configs (by family name)")
    a = ap.parse_args(argv)
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {"KAGGLE_KIT_HOME": str(work / "home"), "KAGGLE_KIT_NO_PROGRESS": os.environ.get("KAGGLE_KIT_NO_PROGRESS", "1")}
    os.environ.update(env)
    py = sys.executable
    st = Stages()
    t_start = time.time()

    if a.data_root is None:
        data = work / "data"
        if not (data / "train.csv").is_file():
            st.run("generate", [py, "tools/make_synthetic.py", data, "--train-cases", a.train_cases, "--test-cases",
                                a.test_cases, "--seed", a.seed, "--size-scale", a.size_scale, "--overwrite"])
    else:
        data = Path(a.data_root).resolve()
    cache, work_root, preds = work / "cache", work / "work_dirs", work / "preds"
    n_folds = a.folds or (3 if a.preset == "tiny" else 5)
    st.run("prepare", [py, "tools/prepare.py", "--data-root", data, "--cache", cache, "--folds", n_folds])

    from kaggle_kit.config import load_config

    common = [f"cache={cache}", f"work_root={work_root}", f"pred_root={preds}"]
    members: dict[str, dict] = {}
    for rel in PRESETS[a.preset]:
        cfg_path = ROOT / rel
        if not cfg_path.is_file():
            print(f"[run_all] skipping {rel}: not in this checkout")
            continue
        cfg = load_config(cfg_path)
        fam = cfg["family"]
        if a.families and fam not in a.families:
            continue
        # experiment names must be unique across families (preds/<exp> has no family level)
        exp_full = cfg.get("exp") or f"{fam}_{cfg_path.stem}"
        ov = common + [f"exp={exp_full}"]
        todo = [k for k in range(n_folds) if not (work_root / fam / exp_full / f"fold{k}" / "best.pth").is_file()]
        if len(todo) < n_folds:
            print(f"[run_all] {fam}: folds {sorted(set(range(n_folds)) - set(todo))} trained already (best.pth)")
        if todo:  # one process for all its folds: imports and start-up paid once
            st.run(f"train {fam} folds {','.join(map(str, todo))}",
                   [py, "tools/train.py", cfg_path, "--fold", ",".join(map(str, todo)), *ov])
        st.run(f"predict {fam} oof+test", [py, "tools/predict.py", cfg_path, "--split", "oof,test", *ov])
        members[exp_full] = {"family": fam, "config": rel}

    # Per-member OOF scores (plain threshold 0.5) and the baselines.
    from kaggle_kit.data.cache import Cache
    from kaggle_kit.io.probmaps import ProbMapStore

    store = ProbMapStore(preds)
    oof_scores: dict[str, float] = {}
    pixel = [e for e in store_exps(preds) if store.manifest(e, "oof")["kind"] == "pixel"]
    for exp in pixel:
        yaml_path = work / "ensembles" / f"single_{exp}.yaml"
        write_yaml(yaml_path, {"members": [{"exp": exp, "kind": "pixel", "weight": 1.0}], "threshold": 0.5})
        out = st.run(f"score {exp} oof", [py, "tools/ensemble.py", yaml_path, "--data-root", data, "--split", "oof",
                                          "--out", work / "oof" / f"{exp}.csv", "--preds", preds, "--cache", cache])
        oof_scores[exp] = last_json(out)["score"]
    # Gating sources (the classifier family and the 2.5D aux heads): per-class OOF ROC-AUC; detectors: the OOF
    # box recall of organ pixels.
    from kaggle_kit.metric.presence import report_exp

    cls_auc: dict[str, dict] = {}
    cls_auc_z5: dict[str, dict] = {}  # after the 5-slice z mean the ensemble's gating.z_window can apply
    for exp in store_exps(preds):
        if store.manifest(exp, "oof")["kind"] == "classifier":
            rep = report_exp(cache, preds, exp, quiet=True)
            cls_auc[exp] = {c: round(v["auc"], 4) for c, v in rep["classes"].items()}
            cls_auc_z5[exp] = {c: round(v, 4) for c, v in rep["z_window_auc"]["5"].items()}
    det_recall: dict[str, float] = {}
    for f in sorted(Path(preds).glob("*/oof/boxes.json")):
        det_recall[f.parent.parent.name] = round(json.loads(f.read_text())["box_recall"]["recall"], 5)
    from kaggle_kit.metric.baselines import empty_baseline, intensity_baseline
    from kaggle_kit.data.dataset25d import fold_case_days

    c = Cache(cache)
    base_empty = empty_baseline(c, c.case_days("train"))["score"]
    intens = []
    for k in range(n_folds):
        intens.append(intensity_baseline(c, fold_case_days(c, k, "train"), fold_case_days(c, k, "val")))
    # pool the folds' intensity baseline by re-scoring is not needed: report the fold mean
    base_int = float(sum(r["score"] for r in intens) / len(intens))

    # Tune the ensemble on OOF (falls back to the plain average at 0.5 when the tuner is absent).
    tuned_yaml = work / "ensembles" / "tuned.yaml"
    tuned_oof = None
    tune_summary = {}
    if (ROOT / "tools/tune_oof.py").is_file() and (ROOT / SEARCH[a.preset]).is_file() and pixel:
        search = work / "ensembles" / "search.yaml"
        write_search(ROOT / SEARCH[a.preset], search, store, preds)
        out = st.run("tune", [py, "tools/tune_oof.py", search, "--data-root", data, "--cache", cache,
                              "--preds", preds, "--out", tuned_yaml])
        tune_summary = last_json(out)
        tuned_oof = tune_summary.get("in_sample")
    elif pixel:
        write_yaml(tuned_yaml, {"members": [{"exp": e, "kind": "pixel", "weight": 1.0} for e in pixel], "threshold": 0.5})
    if pixel:
        out = st.run("ensemble oof", [py, "tools/ensemble.py", tuned_yaml, "--data-root", data, "--split", "oof",
                                      "--out", work / "oof" / "tuned.csv", "--preds", preds, "--cache", cache])
        tuned_oof = last_json(out)["score"]

    # Test submission, as on Kaggle: bundle the checkpoints + tuned YAML, run the notebook headless (no network
    # where `unshare -n` is permitted) on the test split, validate, score against the hidden truth if present.
    # The same YAML applied to the stored test maps by tools/ensemble.py is scored too (train/serve skew check).
    sub = work / "submission.csv"
    test_score = maps_score = None
    nb_summary = {}
    if pixel:
        bundle = work / "bundle"
        st.run("bundle", [py, "tools/bundle.py", "--out", bundle, "--ensemble", tuned_yaml, "--work-root", work_root,
                          "--preds", preds, *([] if a.bundle_wheels else ["--no-wheels"])])
        from run_notebook import can_unshare
        offline = can_unshare()
        out = st.run("notebook" + (" (offline)" if offline else ""),
                     [py, "tools/run_notebook.py", "--bundle", bundle, "--data-root", data, "--out", sub,
                      "--executed", work / "kaggle_kit_inference.executed.ipynb", *(["--offline"] if offline else [])])
        nb_summary = last_json(out).get("summary") or {}
        st.run("validate", [py, "tools/validate_submission.py", sub, "--data-root", data, "--split", "test"])
        sub_maps = work / "submission_from_maps.csv"
        st.run("ensemble test maps", [py, "tools/ensemble.py", tuned_yaml, "--data-root", data, "--split", "test",
                                      "--out", sub_maps, "--preds", preds])
        truth = data / "test_truth.csv"
        if truth.is_file():
            for path in (sub, sub_maps):
                out = st.run(f"score {path.name}", [py, "tools/score.py", "--truth", truth, "--pred", path,
                                                    "--data-root", data, "--split", "test"])
                if path == sub:
                    test_score = last_json(out)["score"]
                else:
                    maps_score = last_json(out)["score"]

    total = time.time() - t_start
    print("\n=== kaggle_kit main job ===")
    print(f"{'stage':<32}{'seconds':>10}")
    for name, dt in st.times:
        print(f"{name:<32}{dt:>10.1f}")
    print(f"{'total':<32}{total:>10.1f}\n")
    print(f"{'OOF score':<32}{'':>10}")
    print(f"{'baseline: empty':<32}{base_empty:>10.4f}")
    print(f"{'baseline: intensity threshold':<32}{base_int:>10.4f}")
    for e, s in oof_scores.items():
        print(f"{e:<32}{s:>10.4f}")
    if tune_summary:
        print(f"{'plain average @0.5':<32}{tune_summary.get('plain_average_05', float('nan')):>10.4f}")
        # the overfitting guard, like for like: mean over held-out folds of each choice
        print(f"\n{'mean over held-out folds':<32}{'score':>10}")
        print(f"{'tuned (nested: tuned without it)':<32}{_fmt(tune_summary.get('held_out_mean')):>10}")
        print(f"{'plain average @0.5':<32}{_fmt(tune_summary.get('plain_average_05_folds_mean')):>10}")
        for e, v in (tune_summary.get("single_members_folds_mean") or {}).items():
            print(f"{e + ' alone @0.5':<32}{_fmt(v):>10}")
    if tuned_oof is not None:
        print(f"{'tuned ensemble (in-sample)':<32}{tuned_oof:>10.4f}")
    for e, aucs in cls_auc.items():
        print(f"classifier {e} OOF ROC-AUC: " + ", ".join(f"{c} {v:.4f}" for c, v in aucs.items())
              + "; after a 5-slice z mean: " + ", ".join(f"{v:.4f}" for v in cls_auc_z5[e].values()))
    for e, r in det_recall.items():
        print(f"detector {e} OOF box recall of organ pixels: {r:.5f}")
    print(f"{'test: notebook submission':<32}{_fmt(test_score):>10}")
    print(f"{'test: tools/ensemble.py on maps':<32}{_fmt(maps_score):>10}")
    if nb_summary:
        print(f"notebook: {nb_summary.get('mode')} mode, {nb_summary.get('case_days')} case-days, "
              f"dropped members: {nb_summary.get('dropped') or 'none'}, "
              f"{nb_summary.get('seconds_per_case_day')} s per case-day in all")
        if nb_summary.get("failures"):  # the notebook renormalised over the other members: say so loudly
            print(f"notebook WARNING: {len(nb_summary['failures'])} member failures, first: {nb_summary['failures'][0]}")
        for m, sec in (nb_summary.get("member_seconds_per_case_day") or {}).items():
            print(f"  {m}: {sec:.2f} s per case-day (all its folds)")
    result = {"oof": oof_scores, "tuned_oof": tuned_oof, "test": test_score, "test_from_maps": maps_score,
              "submission": str(sub) if sub.is_file() else None,
              "baselines": {"empty": base_empty, "intensity": base_int}, "classifier_auc": cls_auc,
              "classifier_auc_z5": cls_auc_z5,
              "detector_box_recall": det_recall, "held_out": tune_summary.get("held_out_mean"),
              "held_out_plain_average_05": tune_summary.get("plain_average_05_folds_mean"),
              "held_out_single_members": tune_summary.get("single_members_folds_mean"),
              "plain_average_05": tune_summary.get("plain_average_05"),
              "inference_seconds_per_case_day": nb_summary.get("member_seconds_per_case_day"),
              "notebook_failures": len(nb_summary.get("failures") or []),
              "seconds": round(total, 1)}
    print(json.dumps(result))
    return 0


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def store_exps(preds: Path) -> list[str]:
    return sorted(p.parent.parent.name for p in Path(preds).glob("*/oof/manifest.json"))


def write_yaml(path: Path, obj: dict) -> None:
    import yaml

    from kaggle_kit.utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))


def write_search(template: Path, out: Path, store, preds: Path) -> None:
    """The search space with this run's members filled in (every OOF experiment in the store)."""
    import yaml

    s = yaml.safe_load(template.read_text())
    s["members"] = [{"exp": e, "kind": k} for e in store_exps(preds)
                    if (k := store.manifest(e, "oof")["kind"]) in ("pixel", "classifier")]
    write_yaml(out, s)


if __name__ == "__main__":
    raise SystemExit(main())
