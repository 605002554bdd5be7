"""``kk``: the one installed command, subcommands in pipeline order (``kk --help`` lists them).

Each subcommand is a module of this package with ``main(argv) -> int``; it is imported only when named, so
``kk --help`` and ``kk cfg`` load no torch. ``tools/<name>.py`` are shims that call the same functions, so
``python tools/ensemble.py ...`` and ``kk ensemble ...`` are one program. Expected errors become one
``error:`` line and exit 2 (:func:`kaggle_kit.cli.run`).
"""
from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "TOOLS", "main", "entry", "shim"]

#: subcommand -> (module under kaggle_kit.commands, one line of what it does), in pipeline order
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("make_synthetic", "write a synthetic competition folder (the exact layout) for tests and demos"),
    "prepare": ("prepare", "build the cache (per case-day volumes, slice index, folds) from a competition folder"),
    "train": ("train", "train folds of one family from its config"),
    "predict": ("predict", "write a family's OOF / test probability maps (raw geometry) into the store"),
    "tune": ("tune_oof", "choose the ensemble and every post-processing number from the OOF maps"),
    "ablate": ("ablate_members", "each member's marginal contribution to the tuned held-out score"),
    "ensemble": ("ensemble", "stored maps + a tuned ensemble YAML -> submission.csv"),
    "score": ("score", "score a submission or OOF CSV against a truth file"),
    "validate": ("validate_submission", "check a submission's ids, order and every RLE"),
    "diagnose": ("diagnose", "where each class is lost: members, post-processing, height in the volume"),
    "presence": ("presence", "AUC report of a classifier's (or aux head's) OOF slice presence"),
    "bundle": ("bundle", "build the offline Kaggle bundle (checkpoints, ensemble, wheels)"),
    "notebook": ("run_notebook", "run the Kaggle inference notebook headless, as Kaggle would"),
    "weights": ("fetch_weights", "save pretrained encoder weights (on a machine with internet)"),
    "run": ("run_all", "the main job end to end: data -> members -> tune -> bundle -> notebook -> score"),
    "cfg": ("cfg", "print a family's commented default config (or any shipped config)"),
}
#: tools/<file>.py -> subcommand
TOOLS = {mod: sub for sub, (mod, _) in COMMANDS.items() if mod not in ("cfg", "presence")}


def _module(sub: str):
    mod = COMMANDS[sub][0]
    if mod == "presence":
        return importlib.import_module("kaggle_kit.metric.presence")
    return importlib.import_module(f"kaggle_kit.commands.{mod}")


def _usage() -> str:
    w = max(map(len, COMMANDS))
    lines = ["usage: kk COMMAND [args ...]   (kk COMMAND --help for its flags)", "",
             "kaggle_kit: train, tune and submit for the UW-Madison GI Tract Image Segmentation competition.", "",
             "commands, in pipeline order:"]
    lines += [f"  {s:<{w}}  {doc}" for s, (_, doc) in COMMANDS.items()]
    lines += ["", "the real path: kk prepare -> kk train (each family, each fold) -> kk predict -> kk tune -> kk bundle",
              "the whole job on synthetic data: kk run   (docs/getting-started.md)"]
    return "\n".join(lines)


def main(argv=None) -> int:
    """``kk COMMAND args``: run one subcommand; ``kk``/``kk --help``: the pipeline; ``kk --version``."""
    from kaggle_kit import __version__
    from kaggle_kit.cli import run

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"kaggle_kit {__version__}")
        return 0
    sub, rest = argv[0], argv[1:]
    if sub not in COMMANDS:
        from kaggle_kit.utils import did_you_mean

        print(f"error: unknown command {sub!r}; {did_you_mean(sub, COMMANDS)} (kk --help lists them)", file=sys.stderr)
        return 2
    sys.argv[0] = f"kk {sub}"  # argparse's prog: 'kk train' in usage lines and errors
    run(_module(sub).main, rest)
    return 0  # run() exits


def entry() -> None:
    """The console script ``kk`` (pyproject.toml ``[project.scripts]``)."""
    sys.exit(main())


def shim(sub: str) -> None:
    """``tools/<name>.py``: the same program as ``kk <sub>``, with the same arguments."""
    sys.exit(main([sub, *sys.argv[1:]]))
