"""Each member's marginal contribution to the tuned held-out score: tune the same OOF maps with every member,
then without each one in turn, with tools/tune_oof.py's nested search (tune on all folds but one, score the
held-out fold, rotate).

    kk ablate SEARCH.yaml --cache CACHE --pred-root PREDS [--out ablation.json] [--workers 2]

SEARCH.yaml: a search space (configs/ensemble/search_default.yaml, or ``kk run``'s WORK/ensembles/search.yaml);
``members: auto`` means every experiment with OOF maps under --pred-root. One line per variant on stdout (held-out
mean ± std over folds, plain average at 0.5 on the held-out folds, in-sample, members the tuner kept); the LAST
line is a JSON object {"variants": {name: {...}}, "marginal": {exp: held_out(all) - held_out(without exp)}}.
A variant that leaves no pixel member is skipped. Exit code 2 and one ``error:`` line on bad input.
"""
from __future__ import annotations

import json
from pathlib import Path

from kaggle_kit.cli import run
from kaggle_kit.commands._common import Parser
from kaggle_kit.config import read_yaml_file
from kaggle_kit.tune.evaluate import load_oof
from kaggle_kit.tune.search import SearchError, tune_oof
from kaggle_kit.tune.space import parse_search_space
from kaggle_kit.utils import atomic_write_json
from kaggle_kit.commands.tune_oof import _available


def variants(members: list[dict]) -> dict[str, list[dict]]:
    """{"all": members, "without <exp>": the others, ...}, skipping a variant with no pixel member."""
    out = {"all": members}
    for m in members:
        rest = [x for x in members if x["exp"] != m["exp"]]
        if any(x["kind"] == "pixel" for x in rest):
            out[f"without {m['exp']}"] = rest
    return out


def ablate(search: dict, source: str, cache, preds, workers: int = 2, log=print) -> dict:
    """Tune every variant of ``search``'s members; returns {"variants": ..., "marginal": ...}."""
    available = _available(Path(preds))
    full = parse_search_space(search, source, available)
    members = [{"exp": e, "kind": "pixel"} for e in full.pixel] + [{"exp": e, "kind": "classifier"}
                                                                  for e in full.classifier]
    rows = {}
    for name, mem in variants(members).items():
        space = parse_search_space(dict(search, members=mem), f"{source} ({name})", available)
        data = load_oof(cache, preds, space.pixel, space.classifier, space.floor_thr, workers=workers)
        s = tune_oof(space, data, workers=workers, verify=False, log=lambda msg: None)["summary"]
        rows[name] = {"held_out_mean": s["held_out_mean"], "held_out_std": s["held_out_std"],
                      "plain_average_05_folds_mean": s.get("plain_average_05_folds_mean"),
                      "in_sample": s["in_sample"], "members_kept": s["members_kept"]}
        log(f"{name:40} held-out {s['held_out_mean']:.4f} ± {s['held_out_std']:.4f}  plain average (held-out) "
            f"{s.get('plain_average_05_folds_mean', float('nan')):.4f}  in-sample {s['in_sample']:.4f}  "
            f"kept {', '.join(s['members_kept'])}")
    base = rows["all"]["held_out_mean"]
    marginal = {m["exp"]: base - rows[f"without {m['exp']}"]["held_out_mean"]
                for m in members if f"without {m['exp']}" in rows}
    return {"variants": rows, "marginal": marginal}


def main(argv=None) -> int:
    ap = Parser(__doc__)
    ap.add_argument("search", help="search-space YAML")
    ap.add_argument("--cache", required=True, help="cache with the train masks and folds.csv")
    ap.flag("--pred-root", "--preds", default="preds", help="probability-map store (<pred-root>/<exp>/oof/)")
    ap.add_argument("--out", default=None, help="also write the JSON result here")
    ap.add_argument("--workers", type=int, default=2, help="processes (threads where the OS does not fork) over case-days")
    a = ap.parse_args(argv)
    search = read_yaml_file(a.search, "search space", SearchError)
    res = ablate(search, str(a.search), a.cache, a.pred_root, a.workers)
    for exp, v in res["marginal"].items():
        print(f"marginal contribution of {exp}: {v:+.4f}")
    if a.out:
        atomic_write_json(a.out, res)
    print(json.dumps(res))
    return 0



if __name__ == "__main__":
    run(main)
