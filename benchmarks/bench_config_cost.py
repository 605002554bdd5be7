"""Training-step and inference cost of model configs side by side (the same family, other sizes or widths).

    python benchmarks/bench_config_cost.py        # the CPU preset's 2.5D member: session 7's decoder vs today's
    python benchmarks/bench_config_cost.py configs/seg25d/tiny_cpu.yaml configs/seg25d/tiny_cpu_boxes.yaml
    python benchmarks/bench_config_cost.py "configs/seg25d/tiny_cpu_boxes.yaml::model.extra.decoder_channels=[64,32,16,16,8]"

Each spec is a config path, optionally followed by ``::key=value`` overrides (as tools/train.py takes them).
For each: the family's own builder, the config's batch size and canvas, channels_last when the config says so,
AdamW steps (forward, backward, update) timed after warm-up, the specs alternating round by round so that
machine load hits all alike; then eval-mode inference at the config's predict batch size. Prints seconds per
step and per batch, parameters, and each spec's time as a ratio of the FIRST spec's (< 1: cheaper).
Multiply a member's measured training time by the step ratio (and by its epochs ratio) to budget it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_channels_last import _loss, alternate, build  # noqa: E402

DEFAULT = ["configs/seg25d/tiny_cpu_boxes.yaml::model.extra.decoder_channels=[256,128,64,32,16]",
           "configs/seg25d/tiny_cpu_boxes.yaml"]


def parse_spec(spec: str) -> tuple[str, list[str]]:
    path, *overrides = spec.split("::")
    return path, overrides


def setup(spec: str):
    """(net, optimiser, train input, predict input, number of parameters) of one spec, on the CPU."""
    import torch

    from kaggle_kit.config import load_config
    from kaggle_kit.engine.memory_format import channels_last, to_channels_last

    path, overrides = parse_spec(spec)
    cfg = load_config(ROOT / path, overrides)
    torch.manual_seed(0)
    net, x = build(cfg, int(cfg["train"]["batch_size"]))
    pb = int(cfg["predict"].get("batch_size") or x.shape[0])
    xp = torch.randn(pb, *x.shape[1:])
    if cfg["train"].get("channels_last", True):
        net, x, xp = to_channels_last(net), channels_last(x), channels_last(xp)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    return net, opt, x, xp, sum(p.numel() for p in net.parameters())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("specs", nargs="*", default=DEFAULT, help="CONFIG[::key=value...]; the first is the reference")
    ap.add_argument("--steps", type=int, default=3, help="steps per round and spec")
    ap.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    a = ap.parse_args()
    if len(a.specs) < 2:
        ap.error("give at least two specs to compare")
    from kaggle_kit.env import setup_offline

    setup_offline()
    import torch

    runs = {s: setup(s) for s in a.specs}

    def step(s):
        net, opt, x, _, _ = runs[s]
        opt.zero_grad(set_to_none=True)
        _loss(net(x)).backward()
        opt.step()

    def infer(s):
        net, _, _, xp, _ = runs[s]
        with torch.inference_mode():
            net(xp)

    for s, (net, *_) in runs.items():
        net.train()
        step(s)
        step(s)
    train = alternate({s: (lambda s=s: step(s)) for s in runs}, a.rounds, a.steps)
    for s, (net, *_) in runs.items():
        net.eval()
        infer(s)
    pred = alternate({s: (lambda s=s: infer(s)) for s in runs}, a.rounds, a.steps)
    n = a.rounds * a.steps
    ref = a.specs[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu; {n} steps per spec")
    print("| spec | params | train batch | s/step | ratio | predict batch | s/batch | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    out = []
    for s, (_, _, x, xp, n_par) in runs.items():
        r = {"spec": s, "params": n_par, "s_per_step": round(train[s] / n, 4),
             "step_ratio": round(train[s] / train[ref], 3), "s_per_batch": round(pred[s] / n, 4),
             "predict_ratio": round(pred[s] / pred[ref], 3)}
        out.append(r)
        print(f"| {s} | {n_par / 1e6:.2f} M | {'x'.join(map(str, x.shape))} | {r['s_per_step']} | "
              f"**{r['step_ratio']}x** | {'x'.join(map(str, xp.shape))} | {r['s_per_batch']} | "
              f"**{r['predict_ratio']}x** |", flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
