"""Build the offline bundle (upload it as a Kaggle dataset) from a tuned ensemble.

    kk bundle --out BUNDLE --ensemble TUNED.yaml --work-root work_dirs --pred-root preds \\
        [--target kaggle|local] [--dataset-id USER/SLUG] [--no-wheels]

Copies each member's fold checkpoints (test-loaded with weights_only=True), the ensemble YAML, the notebook,
and wheels of kaggle_kit and of every runtime dependency its members need beyond torch/torchvision, for the
target image: ``kaggle`` (default: CPython 3.12, glibc 2.35, x86_64) or ``local`` (this interpreter). A
dependency with no wheel for the target is an error listing all of them. Writes bundle.json (sha256 of every
file) and dataset-metadata.json, so the folder uploads as it is:
    kaggle datasets create -p BUNDLE --dir-mode zip        (later: kaggle datasets version -p BUNDLE -m MSG --dir-mode zip)
"""
from __future__ import annotations

import sys

from kaggle_kit.cli import run
from kaggle_kit.commands._common import Parser, emit
from kaggle_kit.env import setup_offline


def main(argv=None) -> int:
    ap = Parser(__doc__)
    ap.add_argument("--out", required=True, help="bundle folder to write")
    ap.add_argument("--ensemble", required=True, help="tuned ensemble YAML (tools/tune_oof.py output)")
    ap.add_argument("--work-root", default="work_dirs", help="training outputs (<work-root>/<family>/<exp>/fold<K>/)")
    ap.flag("--pred-root", "--preds", default="preds", help="probability-map store (the members' OOF manifests)")
    ap.add_argument("--target", choices=["kaggle", "local"], default="kaggle",
                    help="image the wheels are for: kaggle = CPython 3.12 / manylinux_2_35 x86_64; local = this Python")
    ap.add_argument("--dataset-id", default=None,
                    help="Kaggle dataset id USER/SLUG for dataset-metadata.json (default $KAGGLE_USERNAME/kaggle-kit-bundle)")
    ap.add_argument("--title", default=None, help="Kaggle dataset title (default: from the slug)")
    ap.add_argument("--license", default="other", help="Kaggle dataset licence name (default: other)")
    ap.add_argument("--no-wheels", action="store_true", help="skip wheels (an environment that has kaggle_kit)")
    ap.add_argument("--checkpoint", choices=["best", "last"], default=None,
                    help="fold checkpoints to ship (default: the one each member's OOF maps were predicted with)")
    ap.summary_json()
    a = ap.parse_args(argv)
    setup_offline()
    from kaggle_kit.deploy.bundle import build_bundle

    try:
        man = build_bundle(a.out, a.ensemble, a.work_root, a.pred_root, target=a.target, wheels=not a.no_wheels,
                           which=a.checkpoint, dataset_id=a.dataset_id, title=a.title, license_name=a.license)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_wheels = sum(1 for f in man["sha256"] if f.startswith("wheels/"))
    emit(a, {"out": a.out, "members": [m["name"] for m in man["members"]], "target": man["target"]["name"],
             "wheels": n_wheels, "files": len(man["sha256"])})
    return 0



if __name__ == "__main__":
    run(main)
