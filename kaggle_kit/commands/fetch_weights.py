"""Save the pretrained encoder weights every GPU config names into one folder (upload it as a Kaggle dataset).

Run on a machine WITH internet (timm / smp download from their hubs; nothing else in kaggle_kit does):

    python tools/fetch_weights.py --out weights                 # every config under configs/ that names one
    python tools/fetch_weights.py --out weights --spec timm:convnext_small --spec smp:efficientnet-b1
    python tools/fetch_weights.py --list                        # what would be fetched, and for which configs
    python tools/fetch_weights.py --verify weights              # sha256 of every file against manifest.json

Writes ``<out>/<timm|smp>/<name>.safetensors`` and ``<out>/manifest.json`` (sha256, source, licence of each
file). Configs read the folder through ``model.weights_path: ${KAGGLE_KIT_WEIGHTS:-weights}/timm/<name>.safetensors``:
set KAGGLE_KIT_WEIGHTS once (e.g. /kaggle/input/<your weights dataset>) or keep the folder at ./weights.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from kaggle_kit.cli import run
from kaggle_kit.resources import config_root
from kaggle_kit.engine.weights import WeightSpec, save_weights, specs_in_configs, verify_weights

ROOT = config_root()


def _spec(text: str) -> WeightSpec:
    source, sep, name = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"--spec {text!r}: expected SOURCE:NAME, e.g. timm:convnext_small")
    try:
        return WeightSpec(source, name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="weights folder to write (e.g. weights)")
    ap.add_argument("--configs", nargs="*", default=None,
                    help="config files to read model.weights_path from (default: configs/<family>/*.yaml)")
    ap.add_argument("--spec", action="append", type=_spec, default=[],
                    help="SOURCE:NAME to fetch as well (timm:<model> or smp:<encoder>); repeatable")
    ap.add_argument("--overwrite", action="store_true", help="fetch again files the manifest already lists")
    ap.add_argument("--list", action="store_true", help="print what would be fetched and exit")
    ap.add_argument("--verify", metavar="FOLDER", help="check a weights folder against its manifest.json and exit")
    a = ap.parse_args(argv)
    if a.verify:
        problems = verify_weights(a.verify)
        print(json.dumps({"folder": a.verify, "problems": problems}))
        return 1 if problems else 0
    paths = a.configs if a.configs is not None else [
        p for p in sorted(ROOT.glob("*/*.yaml")) if p.parent.name not in ("ensemble", "presets")]
    found = specs_in_configs(paths)
    specs = list(found) + [s for s in a.spec if s not in found]
    if a.list:
        for s in specs:
            print(json.dumps({"file": s.relpath, "configs": [str(Path(c).relative_to(ROOT)) if Path(c).is_relative_to(ROOT)
                                                              else c for c in found.get(s, [])]}))
        return 0
    if not a.out:
        ap.error("--out is required (or --list / --verify)")
    man = save_weights(specs, a.out, overwrite=a.overwrite)
    print(json.dumps({"out": a.out, "files": sorted(man["files"]), "fetched_now": [s.relpath for s in specs]}))
    return 0



if __name__ == "__main__":
    run(main)
