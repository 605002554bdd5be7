"""What every subcommand's command line shares: one flag vocabulary and the ``--summary-json`` output.

The vocabulary (the same spelling means the same thing in every ``kk`` subcommand):

    --data-root ROOT   a competition folder (train/, test/, the CSVs)
    --cache CACHE      the prepared cache (``kk prepare``)
    --work-root DIR    training outputs: DIR/<family>/<exp>/fold<K>/
    --pred-root DIR    the probability-map store: DIR/<exp>/<split>/
    --fold F           which folds: ``0``, ``0,1,2`` or ``all`` (train, predict)
    --n-folds N        how many folds (prepare, run)
    --out PATH         what the command writes
    --summary-json P   also write the command's JSON summary (its last stdout line) to P

Old spellings (``--preds``, ``--folds``) still parse as hidden aliases of the new ones, so existing scripts
keep working; ``--help`` shows only the new names.

The ``--summary-json`` file is what the main job (:mod:`kaggle_kit.pipeline`) reads back from each stage:
a file with a fixed set of keys, written atomically, never a line picked out of a log.
"""
from __future__ import annotations

import argparse
import json

from kaggle_kit.utils import atomic_write_json

__all__ = ["Parser", "emit", "spelled", "add_config_path_flags", "config_path_overrides"]


class _Store(argparse._StoreAction):
    """A plain store that also records the spelling used, so an error can name the flag as the user typed it."""

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        spelled = dict(getattr(namespace, "_spelled", {}))
        spelled[self.dest] = option_string
        namespace._spelled = spelled


def spelled(a: argparse.Namespace, dest: str, default: str) -> str:
    """The option string the user typed for ``dest`` (``--folds`` for an old spelling), else ``default``."""
    return (getattr(a, "_spelled", None) or {}).get(dest) or default


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with :meth:`flag` (a flag plus its hidden old spellings) and
    :meth:`summary_json`. A required flag is checked after parsing, so its old spelling satisfies it too."""

    def __init__(self, doc: str | None = None, **kw):
        kw.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(description=doc, **kw)
        self._required: list[tuple[str, str]] = []  # (dest, flag)

    def flag(self, name: str, *old: str, required: bool = False, **kw) -> argparse.Action:
        """``--name`` (shown in --help) and each of ``old`` (hidden, same ``dest``)."""
        dest = kw.pop("dest", name.lstrip("-").replace("-", "_"))
        help_ = kw.pop("help", None)
        kw.setdefault("action", _Store)
        act = self.add_argument(name, dest=dest, help=help_ + " (required)" if required and help_ else help_, **kw)
        for o in old:
            self.add_argument(o, dest=dest, help=argparse.SUPPRESS, **{**kw, "default": argparse.SUPPRESS})
        if required:
            self._required.append((dest, name))
        return act

    def summary_json(self) -> None:
        self.add_argument("--summary-json", metavar="PATH", default=None,
                          help="also write the JSON summary (the last stdout line) to PATH, atomically")

    def _check(self, a: argparse.Namespace) -> argparse.Namespace:
        missing = [flag for dest, flag in self._required if getattr(a, dest, None) is None]
        if missing:
            self.error(f"the following arguments are required: {', '.join(missing)}")
        return a

    def parse_args(self, args=None, namespace=None):  # noqa: D102
        return self._check(super().parse_args(args, namespace))

    def parse_intermixed_args(self, args=None, namespace=None):  # noqa: D102
        return self._check(super().parse_intermixed_args(args, namespace))


def emit(a: argparse.Namespace, summary: dict) -> None:
    """Print ``summary`` as the last stdout line and, with ``--summary-json``, write it there."""
    print(json.dumps(summary), flush=True)
    path = getattr(a, "summary_json", None)
    if path:
        atomic_write_json(path, summary)


#: flags of train / predict that stand for a config key (``--cache C`` = the override ``cache=C``)
CONFIG_PATH_FLAGS = (("--cache", "cache", "prepared cache"), ("--work-root", "work_root", "training outputs"),
                     ("--pred-root", "pred_root", "probability-map store"))


def add_config_path_flags(ap: Parser) -> None:
    for flag, key, what in CONFIG_PATH_FLAGS:
        ap.flag(flag, default=None, help=f"{what}: the same as the override {key}=...")


def config_path_overrides(ap: Parser, a: argparse.Namespace, overrides: list[str]) -> list[str]:
    """``overrides`` with ``key=value`` prepended for every config-path flag given; a flag and an override
    of the same key together are an error (which one should win is not obvious)."""
    given = {o.partition("=")[0].strip() for o in overrides}
    out = []
    for flag, key, _ in CONFIG_PATH_FLAGS:
        value = getattr(a, key)
        if value is None:
            continue
        if key in given:
            ap.error(f"{flag} and the override {key}=... both given: pass one")
        out.append(f"{key}={value}")
    return out + list(overrides)


def config_arg(text: str) -> str:
    """A config path as given, or a shipped config by name (``seg25d/tiny_cpu``, ``seg25d/tiny_cpu.yaml``:
    ``kk cfg --list`` lists them) when no such file exists here; so a wheel install trains without a checkout."""
    from pathlib import Path

    from kaggle_kit.resources import config_root

    if Path(text).expanduser().exists():
        return text
    name = text.removesuffix(".yaml")
    shipped = config_root() / f"{name}.yaml"
    return str(shipped) if shipped.is_file() and ".." not in Path(name).parts else text
