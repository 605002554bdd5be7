"""fp32 vs bf16-autocast training steps on this CPU, side by side (``train.cpu_bf16``).

    python benchmarks/bench_cpu_bf16.py                                   # the CPU preset's 2.5D member
    python benchmarks/bench_cpu_bf16.py configs/cls/tiny_cpu.yaml configs/seg25d/tiny_cpu_boxes.yaml

For each config: the family's own net at the config's batch and canvas (NHWC when the config says so), two
copies with the same initial weights, AdamW steps (forward, loss, backward, update) in fp32 and under
``torch.autocast('cpu', torch.bfloat16)`` alternating round by round so that machine load hits both alike.
Prints seconds per step, the bf16/fp32 ratio (< 1: bf16 cheaper), whether the CPU has native bf16 (without
it torch emulates bf16 and the ratio goes above 1: the engine then trains in fp32), and, as a sanity check
of the numerics, the relative difference of the two copies' losses on one fixed batch after the timed steps.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_channels_last import _loss, alternate  # noqa: E402
from bench_config_cost import setup  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*", default=["configs/seg25d/tiny_cpu_boxes.yaml"])
    ap.add_argument("--steps", type=int, default=3, help="steps per round and precision")
    ap.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    a = ap.parse_args()
    from kaggle_kit.env import setup_offline

    setup_offline()
    import torch

    from kaggle_kit.engine.cpu_amp import cpu_bf16_native

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_bf16_native()}")
    print("| config | batch | fp32 s/step | bf16 s/step | bf16/fp32 | loss rel. diff after the steps |")
    print("|---|---|---|---|---|---|")
    out = []
    for spec in a.configs:
        net, _, x, _, _ = setup(spec)
        nets = {"fp32": net, "bf16": copy.deepcopy(net)}
        opts = {k: torch.optim.AdamW(n.parameters(), lr=1e-4) for k, n in nets.items()}

        def step(k, nets=nets, opts=opts, x=x):
            opts[k].zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=k == "bf16"):
                loss = _loss(nets[k](x))
            loss.backward()
            opts[k].step()

        for k in nets:
            nets[k].train()
            step(k)
        t = alternate({k: (lambda k=k: step(k)) for k in nets}, a.rounds, a.steps)
        n = a.rounds * a.steps
        with torch.no_grad():
            l32, l16 = (float(_loss(nets[k].eval()(x))) for k in ("fp32", "bf16"))
        r = {"config": spec, "fp32_s": round(t["fp32"] / n, 4), "bf16_s": round(t["bf16"] / n, 4),
             "ratio": round(t["bf16"] / t["fp32"], 3), "loss_rel_diff": round(abs(l16 - l32) / abs(l32), 5)}
        out.append(r)
        print(f"| {spec} | {'x'.join(map(str, x.shape))} | {r['fp32_s']} | {r['bf16_s']} | **{r['ratio']}x** | "
              f"{r['loss_rel_diff']} |", flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
