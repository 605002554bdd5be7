"""Build the offline bundle (upload it as a Kaggle dataset) from a tuned ensemble.

    python tools/bundle.py --out BUNDLE --ensemble TUNED.yaml --work-root work_dirs --preds preds \\
        [--python-version 3.11 --platform manylinux2014_x86_64] [--no-wheels]

Copies each member's fold checkpoints (test-loaded with weights_only=True), the ensemble YAML, the notebook,
and wheels of kaggle_kit and every runtime dependency beyond torch/torchvision; writes bundle.json with
sha256 hashes.
"""
from __future__ import annotations

import argparse
import json
import sys

from kaggle_kit.cli import run
from kaggle_kit.env import setup_offline


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ensemble", required=True, help="tuned ensemble YAML (tools/tune_oof.py output)")
    ap.add_argument("--work-root", default="work_dirs")
    ap.add_argument("--preds", default="preds")
    ap.add_argument("--python-version", default="3.11")
    ap.add_argument("--platform", default="manylinux2014_x86_64")
    ap.add_argument("--no-wheels", action="store_true", help="skip wheels (an environment that has kaggle_kit)")
    ap.add_argument("--checkpoint", choices=["best", "last"], default="best")
    a = ap.parse_args(argv)
    setup_offline()
    from kaggle_kit.deploy.bundle import build_bundle

    try:
        man = build_bundle(a.out, a.ensemble, a.work_root, a.preds, python_version=a.python_version,
                           platform=a.platform, wheels=not a.no_wheels, which=a.checkpoint)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_wheels = sum(1 for f in man["sha256"] if f.startswith("wheels/"))
    print(json.dumps({"out": a.out, "members": [m["name"] for m in man["members"]], "wheels": n_wheels,
                      "files": len(man["sha256"])}))
    return 0


if __name__ == "__main__":
    run(main)
