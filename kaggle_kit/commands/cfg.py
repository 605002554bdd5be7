"""Print a shipped config, comments included: a family's flat default (the schema every override is checked
against) or any other config by name.

    kk cfg seg25d                  # configs/seg25d/default.yaml: every key, its type and why
    kk cfg seg25d/tiny_cpu_boxes   # one shipped config (its _base_ is not expanded; --resolved expands it)
    kk cfg --list                  # every shipped config
"""
from __future__ import annotations

import argparse
import sys

from kaggle_kit.config import CONFIG_ROOT, ConfigError, dump_config, load_config
from kaggle_kit.utils import did_you_mean


def _shipped() -> list[str]:
    return sorted(str(p.relative_to(CONFIG_ROOT).with_suffix("")) for p in CONFIG_ROOT.glob("**/*.yaml"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", help="a family (its default.yaml) or FAMILY/NAME of a shipped config")
    ap.add_argument("--list", action="store_true", help="list every shipped config")
    ap.add_argument("--resolved", action="store_true", help="print the config with its _base_ chain merged")
    a = ap.parse_args(argv)
    if a.list or not a.name:
        print("\n".join(_shipped()))
        return 0
    name = a.name.removesuffix(".yaml")
    path = CONFIG_ROOT / name / "default.yaml" if (CONFIG_ROOT / name).is_dir() else CONFIG_ROOT / f"{name}.yaml"
    if not path.is_file():
        families = sorted(p.parent.name for p in CONFIG_ROOT.glob("*/default.yaml"))
        raise ConfigError(f"no shipped config {a.name!r} under {CONFIG_ROOT}; {did_you_mean(name, families + _shipped())}")
    if a.resolved:
        sys.stdout.write(dump_config(load_config(path)))
    else:
        sys.stdout.write(path.read_text())
    return 0
