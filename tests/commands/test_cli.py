"""The front door: ``kk`` and its subcommands, the ``tools/*.py`` shims, the package list, the flag vocabulary."""
import json
import re
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import ROOT

from kaggle_kit.commands import COMMANDS, TOOLS, main

SHIMS = sorted(p.name for p in (ROOT / "tools").glob("*.py"))


def _kk(argv, capsys) -> tuple[int, str, str]:
    """``kk ARGV`` in this process: (exit code, stdout, stderr)."""
    argv0 = sys.argv[0]
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv[0] = argv0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("shim", SHIMS)
def test_every_shim_answers_help(shim):
    """``python tools/X.py --help`` is ``kk SUB --help`` of the subcommand the shim names."""
    p = subprocess.run([sys.executable, str(ROOT / "tools" / shim), "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    sub = TOOLS[shim.removesuffix(".py")]
    assert p.stdout.startswith(f"usage: kk {sub} "), p.stdout[:200]


def test_every_shim_is_a_command():
    assert {s.removesuffix(".py") for s in SHIMS} == set(TOOLS)


@pytest.mark.parametrize("sub", list(COMMANDS))
def test_every_subcommand_answers_help(sub, capsys):
    code, out, err = _kk([sub, "--help"], capsys)
    assert code == 0, err
    assert out.startswith(f"usage: kk {sub}"), out[:200]
    # one vocabulary: the old spellings parse (hidden aliases) but never show in --help
    assert not re.search(r"--preds\b|--folds\b", out), f"kk {sub} --help shows an old flag spelling"


def test_kk_help_lists_every_command_in_order(capsys):
    code, out, _ = _kk(["--help"], capsys)
    assert code == 0
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and line.split()[0] in COMMANDS]
    assert listed == list(COMMANDS)


def test_unknown_subcommand_exits_2_with_a_suggestion(capsys):
    code, out, err = _kk(["trian", "--fold", "0"], capsys)
    assert code == 2 and out == ""
    assert "unknown command 'trian'" in err and "did you mean 'train'?" in err


def test_package_list_is_every_package_folder():
    """pyproject's [tool.setuptools] packages = the folders of kaggle_kit/ with an __init__.py, plus the package
    data mapped from the top level (configs, the notebook); a new sub-package missing there would be left out of
    the wheel."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    pkg = ROOT / "kaggle_kit"
    folders = {".".join(("kaggle_kit",) + p.parent.relative_to(pkg).parts) for p in pkg.rglob("__init__.py")}
    assert "kaggle_kit.commands" in folders and "kaggle_kit.post.kernels" in folders  # the walk itself works
    assert set(cfg["packages"]) == folders | {"kaggle_kit.configs", "kaggle_kit.notebook"}
    assert len(cfg["packages"]) == len(set(cfg["packages"]))
    for name, folder in cfg["package-dir"].items():
        assert name in cfg["packages"] and (ROOT / folder).is_dir()


def test_kk_cfg_prints_the_family_default(capsys):
    code, out, _ = _kk(["cfg", "seg25d"], capsys)
    assert code == 0
    assert out == (ROOT / "configs" / "seg25d" / "default.yaml").read_text()


def test_kk_cfg_unknown_name(capsys):
    code, _, err = _kk(["cfg", "seg25"], capsys)
    assert code == 2 and "did you mean 'seg25d'" in err


# ------------------------------------------------------------------ the flag vocabulary: new names, old aliases
@pytest.mark.parametrize("flag", ["--n-folds", "--folds"])
def test_prepare_fold_count_both_spellings(flag, tmp_path, capsys):
    """--n-folds is the count; the old --folds reaches the same argument (and the error names what was typed)."""
    code, _, err = _kk(["prepare", "--data-root", str(tmp_path), "--cache", str(tmp_path / "c"), flag, "0"], capsys)
    assert code == 2 and f"{flag} must be at least 1, got 0" in err


@pytest.mark.parametrize("flag", ["--fold", "--folds"])
def test_predict_fold_selection_both_spellings(flag, synth_cache, tmp_path, capsys):
    """--fold selects folds (old: --folds); --cache stands for the override cache=..., so the fold is checked
    against that cache's folds.csv."""
    cfg = ROOT / "configs" / "seg25d" / "tiny_cpu.yaml"
    code, _, err = _kk(["predict", str(cfg), "--split", "oof", flag, "7", "--cache", str(synth_cache),
                        "--work-root", str(tmp_path / "w"), "--pred-root", str(tmp_path / "p")], capsys)
    assert code == 2
    assert f"{flag} 7 does not exist" in err and str(synth_cache) in err


def test_a_path_flag_and_its_override_together_are_an_error(tmp_path, capsys):
    cfg = ROOT / "configs" / "seg25d" / "tiny_cpu.yaml"
    code, _, err = _kk(["train", str(cfg), "--fold", "0", "--cache", str(tmp_path), f"cache={tmp_path}"], capsys)
    assert code == 2 and "--cache and the override cache=... both given" in err


def test_train_requires_fold_in_either_spelling(capsys):
    code, _, err = _kk(["train", "x.yaml"], capsys)
    assert code == 2 and "required: --fold" in err


@pytest.mark.parametrize("flag", ["--pred-root", "--preds"])
def test_ensemble_pred_root_both_spellings(flag, synth_root, tmp_path, capsys):
    """--pred-root (old: --preds) is where the maps are read: a store without the member's maps is named."""
    ens = tmp_path / "ens.yaml"
    ens.write_text("members:\n  - {exp: nosuch, kind: pixel, weight: 1.0}\nthreshold: 0.5\n")
    store = tmp_path / f"store{flag}"
    code, _, err = _kk(["ensemble", str(ens), "--data-root", str(synth_root), "--split", "test",
                        "--out", str(tmp_path / "sub.csv"), flag, str(store)], capsys)
    assert code == 2 and str(store) in err
    assert not (tmp_path / "sub.csv").exists()


def test_summary_json_is_the_last_stdout_line(tmp_path, capsys):
    """--summary-json writes the same object the last stdout line holds (what kk run reads back)."""
    out, summary = tmp_path / "data", tmp_path / "s" / "synth.json"
    code, stdout, err = _kk(["synth", "--out", str(out), "--train-cases", "1", "--test-cases", "1",
                             "--size-scale", "0.1", "--max-days", "1", "--summary-json", str(summary)], capsys)
    assert code == 0, err
    last = json.loads(stdout.strip().splitlines()[-1])
    assert json.loads(summary.read_text()) == last
    assert (out / "train.csv").is_file() and last  # it did write the folder


def test_synth_takes_its_folder_once(tmp_path, capsys):
    code, _, err = _kk(["synth", str(tmp_path / "a"), "--out", str(tmp_path / "b")], capsys)
    assert code == 2 and "OUT or --out" in err
