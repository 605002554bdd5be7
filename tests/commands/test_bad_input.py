"""Bad input never passes silently and never destroys a user's files (issue 16).

One test (or a few) per numbered item of the issue; each failed on commit 3cd0753 (names that did not
exist then are imported inside the tests, so that each fails on its own). No training here: a half-trained
fold is faked, the training call of tools/train.py is replaced by a stub.
"""
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from kaggle_kit.config import ConfigError, load_config
from kaggle_kit.data.cache import prepare_cache
from kaggle_kit.data.dataset25d import fold_case_days
from kaggle_kit.data.cache import Cache
from kaggle_kit.data.raw import CLASSES, DataError, load_labels
from kaggle_kit.data.synthetic import make_synthetic
from kaggle_kit.io.submission import SubmissionError, attach_geometry, expected_rows, validate_submission
from kaggle_kit.io.submission import write_submission
from kaggle_kit.utils import atomic_write_text

from tests.conftest import ROOT, run_tool

SEG_CFG = ROOT / "configs/seg25d/tiny_cpu.yaml"


def one_error_line(p) -> str:
    """The tool failed with exit 2 and exactly one ``error:`` line on stderr, no traceback."""
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    return lines[0]


@pytest.fixture
def small(tmp_path):
    """A tiny competition folder (3 train cases, 1 test case) and its 3-fold cache, owned by one test."""
    root, cache = tmp_path / "data", tmp_path / "cache"
    make_synthetic(root, train_cases=3, test_cases=1, seed=7, size_scale=0.15, max_days=1)
    prepare_cache(root, cache, n_folds=3, seed=0)
    return root, cache


# ------------------------------------------------------------------ 1. bundle --out never deletes first
def _fake_previous_bundle(path: Path) -> None:
    (path / "checkpoints").mkdir(parents=True)
    (path / "bundle.json").write_text('{"format": 2}\n')
    (path / "checkpoints" / "keep.pth").write_bytes(b"good model")


def test_bundle_out_kept_when_an_input_is_bad(tmp_path):
    """A typo in --ensemble (or any failure) leaves a previous bundle exactly as it was (kill mid-bundle too:
    a stale staging folder is removed by the next build)."""
    from kaggle_kit.deploy.bundle import build_bundle

    out = tmp_path / "bundle"
    _fake_previous_bundle(out)
    stale = tmp_path / ".bundle.abc123.staging"  # what a killed build leaves
    stale.mkdir()
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    with pytest.raises((FileNotFoundError, ConfigError)):
        build_bundle(out, tmp_path / "tunde.yaml", tmp_path / "work_dirs", tmp_path / "preds", wheels=False)
    assert (out / "checkpoints" / "keep.pth").read_bytes() == b"good model"
    assert (out / "bundle.json").is_file()
    assert not stale.exists() and not list(tmp_path.glob(".bundle.*.staging"))


def test_staged_dir_swaps_only_on_success(tmp_path):
    from kaggle_kit.utils import staged_dir

    final = tmp_path / "b"
    final.mkdir()
    (final / "old.txt").write_text("v1")
    with pytest.raises(RuntimeError), staged_dir(final) as tmp:
        (tmp / "new.txt").write_text("v2")
        raise RuntimeError("a bad checkpoint")
    assert [p.name for p in final.iterdir()] == ["old.txt"]
    with staged_dir(final) as tmp:
        (tmp / "new.txt").write_text("v2")
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no staging or previous folder left


@pytest.mark.parametrize("case", ["project", "user_folder", "parent_of_inputs"])
def test_bundle_out_refuses_dangerous_folders(tmp_path, case, monkeypatch):
    from kaggle_kit.deploy import bundle
    from kaggle_kit.deploy.bundle import BundleOutError, build_bundle

    project = tmp_path / "project"  # a stand-in: never point a test that could fail at the real checkout
    (project / "kaggle_kit").mkdir(parents=True)
    monkeypatch.setattr(bundle, "ROOT", project)
    ens = tmp_path / "run" / "tuned.yaml"
    ens.parent.mkdir()
    ens.write_text("members: []\n")
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    out = {"project": project, "user_folder": user, "parent_of_inputs": tmp_path / "run"}[case]
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(BundleOutError, match="--out"):
        build_bundle(out, ens, tmp_path / "run" / "work_dirs", tmp_path / "run" / "preds", wheels=False)
    assert sorted(p.name for p in out.iterdir()) == before
    assert (user / "thesis.tex").read_text() == "years of work"


def test_bundle_tool_bad_yaml_is_one_line(tmp_path):
    """Item 8 too: bad YAML in bundle.py names the file and line; --out untouched."""
    bad = tmp_path / "tuned.yaml"
    bad.write_text("members:\n  - {exp: a, kind: pixel\n")
    out = tmp_path / "bundle"
    _fake_previous_bundle(out)
    p = run_tool("bundle.py", "--out", out, "--ensemble", bad, "--work-root", tmp_path, "--preds", tmp_path,
                 "--no-wheels", check=False)
    line = one_error_line(p)
    assert str(bad) in line and "line" in line
    assert (out / "checkpoints" / "keep.pth").is_file()


# ------------------------------------------------------------------ 2. fold numbers range-checked
def test_fold_numbers_checked_everywhere(small, tmp_path):
    root, cache = small
    from kaggle_kit.data.cache import check_folds

    with pytest.raises(DataError, match=r"fold 7 .*folds.csv has folds 0\.\.2"):
        fold_case_days(Cache(cache), 7, "train")
    assert check_folds(cache, [0, 2, "all"]) == [0, 2, "all"]
    ov = [f"cache={cache}", f"work_root={tmp_path / 'work'}", f"pred_root={tmp_path / 'preds'}"]
    p = run_tool("train.py", SEG_CFG, "--fold", 7, *ov, check=False)
    assert "--fold 7" in one_error_line(p)
    assert not (tmp_path / "work" / "seg25d" / "tiny_cpu" / "fold7").exists()  # nothing made, nothing saved
    p = run_tool("predict.py", SEG_CFG, "--split", "oof", "--folds", 7, *ov, check=False)
    assert "--folds 7" in one_error_line(p)
    p = run_tool("prepare.py", "--data-root", root, "--cache", cache, "--folds", 5, check=False)
    line = one_error_line(p)
    assert "has 3 folds" in line and "--refold" in line
    assert pd.read_csv(cache / "folds.csv")["fold"].nunique() == 3


# ------------------------------------------------------------------ 3. every config validated
def test_user_config_outside_configs_is_validated(tmp_path):
    user = tmp_path / "my_experiments" / "exp1.yaml"
    user.parent.mkdir()
    user.write_text(f"_base_: {SEG_CFG}\ntrain:\n  epocs: 3\n")
    with pytest.raises(ConfigError, match=r"'train\.epocs'.*exp1\.yaml.*did you mean 'train\.epochs'"):
        load_config(user)
    user.write_text(f"_base_: {SEG_CFG}\ntrain:\n  batch_size: sixteen\n")
    with pytest.raises(ConfigError, match=r"'train\.batch_size'.*exp1\.yaml.*must be int"):
        load_config(user)
    user.write_text(f"_base_: {SEG_CFG}\ntrain:\n  lr: 3e-3\n")  # YAML 1.1 would read a string here
    assert load_config(user)["train"]["lr"] == pytest.approx(0.003)
    cfg = load_config(SEG_CFG, ["train.lr=3e-3", "train.weight_decay=1E-2"])
    assert cfg["train"]["lr"] == 0.003 and cfg["train"]["weight_decay"] == 0.01
    assert load_config(SEG_CFG, ["train.epochs=3"])["train"]["epochs"] == 3  # ints stay ints
    with pytest.raises(ConfigError, match=r"override 'train\.lr=abc'.*plain number"):
        load_config(SEG_CFG, ["train.lr=abc"])


def test_config_without_a_known_family_fails(tmp_path):
    c = tmp_path / "c.yaml"
    c.write_text("family: seg25", encoding="utf-8")
    with pytest.raises(ConfigError, match="did you mean 'seg25d'"):
        load_config(c)


# ------------------------------------------------------------------ 4. a data root that does not exist
def test_missing_data_root_is_an_error(tmp_path, synth_root):
    ens = tmp_path / "e.yaml"
    ens.write_text("members: [{exp: x, kind: pixel, weight: 1.0}]\nthreshold: 0.5\n")
    out = tmp_path / "sub.csv"
    p = run_tool("ensemble.py", ens, "--data-root", tmp_path / "nope", "--out", out, check=False)
    assert "data root not found" in one_error_line(p) and not out.exists()
    out.write_text("id,class,predicted\n")
    p = run_tool("validate_submission.py", out, "--data-root", tmp_path / "nope", check=False)
    assert "data root not found" in one_error_line(p)
    p = run_tool("prepare.py", "--data-root", synth_root, "--cache", tmp_path / "c", "--splits", "trian",
                 check=False)
    assert "did you mean 'train'" in one_error_line(p) and not (tmp_path / "c").exists()


# ------------------------------------------------------------------ 5. the fingerprint sees content changes
def test_cache_sees_changed_pixels_of_same_size(small):
    root, cache = small
    png = sorted((root / "train").rglob("*.png"))[3]
    img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    stored = [cv2.IMWRITE_PNG_COMPRESSION, 0]  # no compression: the size depends on the shape only
    cv2.imwrite(str(png), img, stored)
    prepare_cache(root, cache)
    size = png.stat().st_size
    new = (img.astype(np.int64) * 0 + 1234).astype(np.uint16)
    cv2.imwrite(str(png), new, stored)
    assert png.stat().st_size == size  # same size, other pixels
    st = png.stat()
    os.utime(png, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # a coarse clock could tie otherwise
    s = prepare_cache(root, cache)
    assert s["train"]["written"] == 1
    cd = png.parent.parent.name
    z = sorted(png.parent.glob("*.png")).index(png)
    assert (Cache(cache).image("train", cd)[z] == 1234).all()


def test_prepare_one_split_keeps_the_others_fingerprints(small):
    root, cache = small
    before = json.loads((cache / "fingerprint.json").read_text())["case_days"]
    assert any(k.startswith("train/") for k in before) and any(k.startswith("test/") for k in before)
    p = run_tool("prepare.py", "--data-root", root, "--cache", cache, "--splits", "test")
    assert json.loads(p.stdout.strip().splitlines()[-1])["test"]["skipped"] >= 1
    after = json.loads((cache / "fingerprint.json").read_text())["case_days"]
    assert after == before


# ------------------------------------------------------------------ 6. run_all: one work folder per data set
def test_run_all_work_folder_per_data(tmp_path, synth_root):
    from kaggle_kit.commands import run_all

    demo = run_all.parse_args([])
    other = run_all.parse_args(["--data-root", str(synth_root)])
    assert run_all.default_work(demo) != run_all.default_work(other)  # make demo / make demo DATA=ROOT
    seeds = {run_all.default_work(run_all.parse_args(["--seed", s])) for s in ("1", "2", "3")}
    assert len(seeds | {run_all.default_work(demo)}) == 4  # make demo SEED=N: one work folder per data seed
    assert run_all.default_work(demo) == Path("demo_out")
    work = tmp_path / "w"
    r = run_all.setup(["--work", str(work)])  # synthetic: claims the folder
    assert r.data == work.resolve() / "data"
    with pytest.raises(run_all.WorkFolderError, match="other data"):
        run_all.setup(["--work", str(work), "--data-root", str(synth_root)])
    with pytest.raises(run_all.WorkFolderError, match="train_cases=10"):
        run_all.setup(["--work", str(work), "--train-cases", "4"])
    with pytest.raises(DataError, match="data root not found"):
        run_all.setup(["--work", str(tmp_path / "w2"), "--data-root", str(tmp_path / "nope")])
    # the command line: one error line, exit 2, before any stage runs
    p = run_tool("run_all.py", "--work", work, "--data-root", synth_root, check=False)
    assert "other data" in one_error_line(p) and "[run_all] prepare" not in p.stdout


def test_run_all_refuses_models_of_changed_data(small, tmp_path):
    """The same data root with other content since the folds were trained: the models are not reused."""
    from kaggle_kit.commands import run_all

    root, cache = small
    work = tmp_path / "w"
    r = run_all.setup(["--work", str(work), "--data-root", str(root)])
    (work / "cache").symlink_to(cache, target_is_directory=True)
    run_all.check_models_match_data(r)  # first run: records the train fingerprint
    done = work / "work_dirs" / "seg25d" / "e" / "fold0" / "done.json"
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    run_all.check_models_match_data(r)  # same data: reuse is fine
    png = sorted((root / "train").rglob("*.png"))[0]
    st = png.stat()
    os.utime(png, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    prepare_cache(root, cache)
    with pytest.raises(run_all.WorkFolderError, match="train data changed"):
        run_all.check_models_match_data(r)


# ------------------------------------------------------------------ 7. a fold is finished when training returned
def test_half_trained_fold_is_not_skipped(tmp_path):
    from kaggle_kit.commands import run_all

    wr = tmp_path / "work_dirs"
    for k in (0, 1):  # both folds have best.pth (written at the first validation) ...
        d = wr / "seg25d" / "e" / f"fold{k}"
        d.mkdir(parents=True)
        (d / "best.pth").write_bytes(b"x")
        (d / "last.pth").write_bytes(b"x")
    (wr / "seg25d" / "e" / "fold1" / "done.json").write_text("{}")  # ... only fold 1 finished
    assert run_all.unfinished_folds(wr, "seg25d", "e", 3) == [0, 2]


def test_train_tool_marks_a_fold_done_only_when_training_returns(small, tmp_path, monkeypatch):
    from kaggle_kit.commands import train
    from kaggle_kit import registry

    root, cache = small
    wr = tmp_path / "work"

    class Fam:
        fail = True

        def train(self, cfg, fold, exp, resume=False):
            (wr / "seg25d" / exp / f"fold{fold}" / "best.pth").write_bytes(b"first validation")
            if self.fail:
                raise KeyboardInterrupt  # killed mid-training

    monkeypatch.setattr(registry, "resolve", lambda kind, name: Fam())
    args = [str(SEG_CFG), "--fold", "0", f"cache={cache}", f"work_root={wr}", f"pred_root={tmp_path / 'p'}"]
    done = wr / "seg25d" / "tiny_cpu" / "fold0" / "done.json"
    with pytest.raises(KeyboardInterrupt):
        train.main(args)
    assert not done.exists()
    Fam.fail = False
    assert train.main(args) == 0 and json.loads(done.read_text())["fold"] == 0
    Fam.fail = True  # a re-train that is interrupted is not finished either
    with pytest.raises(KeyboardInterrupt):
        train.main(args)
    assert not done.exists()


# ------------------------------------------------------------------ 8. raw tracebacks -> one error line
def test_yaml_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"_base_: {SEG_CFG}\ntrain:\n  epochs: [3\n  lr: 0.1\n")
    p = run_tool("train.py", bad, "--fold", 0, check=False)
    line = one_error_line(p)
    assert str(bad) in line and "line 4" in line


class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def test_bad_checkpoints_in_predict_are_one_line(small, tmp_path):
    root, cache = small
    wr = tmp_path / "work"
    ov = [f"cache={cache}", f"work_root={wr}", f"pred_root={tmp_path / 'preds'}", "predict.checkpoint=last"]
    ck = wr / "seg25d" / "tiny_cpu" / "fold0" / "last.pth"
    ck.parent.mkdir(parents=True)
    import torch

    torch.save({"state_dict": {"w": torch.zeros(3)}, "meta": {"family": "seg25d"}}, ck)
    good = ck.read_bytes()
    for content in (good[: len(good) // 2], pickle.dumps(_Evil())):  # truncated; carrying code
        ck.write_bytes(content)
        p = run_tool("predict.py", SEG_CFG, "--split", "oof", "--folds", 0, *ov, check=False)
        line = one_error_line(p)
        assert str(ck) in line and "not a loadable inference checkpoint" in line


def test_ensemble_out_folder_and_make_synthetic_into_folder(tmp_path, synth_root):
    ens = tmp_path / "e.yaml"
    ens.write_text("members: [{exp: x, kind: pixel, weight: 1.0}]\nthreshold: 0.5\n")
    folder = tmp_path / "outdir"
    folder.mkdir()
    p = run_tool("ensemble.py", ens, "--data-root", synth_root, "--out", folder, check=False)
    assert "is a folder" in one_error_line(p)
    with pytest.raises(SubmissionError, match="is a folder"):  # the writer itself, whoever calls it
        write_submission(folder, pd.DataFrame({"id": [], "class": []}), [])
    (folder / "mine.txt").write_text("keep")
    p = run_tool("make_synthetic.py", folder, "--train-cases", 1, "--test-cases", 0, check=False)
    assert "not empty" in one_error_line(p) and (folder / "mine.txt").read_text() == "keep"


def test_cli_sorts_expected_from_unexpected():
    from kaggle_kit.cli import format_error, is_expected
    assert is_expected(DataError("x")) and is_expected(FileNotFoundError(2, "No such file", "/a/b"))
    assert not is_expected(TypeError("bug")) and not is_expected(ValueError("bug"))
    assert format_error(FileNotFoundError(2, "No such file or directory", "/a/b")) == \
        "error: no such file or directory: /a/b; check the path"
    code = ("from kaggle_kit.cli import run\n"
            "def main(argv): raise TypeError('a bug')\n"
            "run(main)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 1 and "Traceback" in p.stderr  # a bug keeps its traceback


# ------------------------------------------------------------------ 9. atomic writes honour the umask
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_honour_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        write_submission(tmp_path / "s.csv", pd.DataFrame({"id": ["a"], "class": ["stomach"]}), [""])
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == mode
    assert (tmp_path / "s.csv").stat().st_mode & 0o777 == mode


# ------------------------------------------------------------------ 10. messages that say where
def test_empty_train_csv_named(tmp_path):
    p = tmp_path / "train.csv"
    p.write_bytes(b"")
    with pytest.raises(DataError, match=rf"{p}: empty file"):
        load_labels(p)


def test_zero_byte_sample_submission_is_no_rows(small):
    root, _ = small
    want = expected_rows(root, "test")
    (root / "sample_submission.csv").write_bytes(b"")
    (root / "test.csv").unlink(missing_ok=True)
    got = expected_rows(root, "test")  # from the test images, as for a header-only file
    assert got[["id", "class"]].equals(want[["id", "class"]]) and len(got) > 0


def test_validator_names_first_bad_row_and_source(synth_root, tmp_path):
    rows = expected_rows(synth_root, "test")
    good = rows.assign(predicted="")
    path = tmp_path / "s.csv"
    src = str(synth_root / "sample_submission.csv")

    def err(df) -> str:
        df.to_csv(path, index=False)
        with pytest.raises(SubmissionError) as e:
            validate_submission(path, synth_root)
        return str(e.value)

    missing = err(good.drop(index=4))  # a missing row in the middle
    assert "row 6" in missing and good["id"].iloc[4] in missing and "missing" in missing and src in missing
    extra = pd.concat([good.iloc[:3], pd.DataFrame([{"id": "case999_day0_slice_0001", "class": "stomach",
                                                     "predicted": ""}]), good.iloc[3:]])
    msg = err(extra)
    assert "row 5" in msg and "case999_day0_slice_0001" in msg and "extra" in msg
    dup = pd.concat([good.iloc[:6], good.iloc[[2]], good.iloc[6:-1]])
    msg = err(dup)
    assert "row 8 repeats" in msg and "row 4" in msg


def test_expected_rows_without_image_name_their_file(synth_root, tmp_path):
    rows = expected_rows(synth_root, "test")
    slices = pd.DataFrame(columns=["id", "case_day", "z", "height", "width"])
    with pytest.raises(SubmissionError, match=r"from .*sample_submission\.csv\): row 2"):
        attach_geometry(rows, slices, "expected rows")


def test_image_without_label_rows_names_the_label_file(tmp_path):
    root = tmp_path / "d"
    make_synthetic(root, train_cases=2, test_cases=0, seed=3, size_scale=0.15, max_days=1)
    lab = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    victim = lab["id"].iloc[0]
    lab[lab["id"] != victim].to_csv(root / "train.csv", index=False)
    with pytest.raises(DataError, match=rf"{root / 'train.csv'}: no rows for id {victim}"):
        prepare_cache(root, tmp_path / "c", n_folds=2)


# ------------------------------------------------------------------ 11. temp files left by a kill are removed
def test_stale_temps_removed_by_the_next_run(small):
    root, cache = small
    cd = sorted((cache / "train").iterdir())[0]
    stale = cd / ".img.npy.k1ll3d.tmp"  # a prepare killed while writing
    stale.write_bytes(b"\0" * 1000)
    past = time.time() - 600
    os.utime(stale, (past, past))
    sub = cache.parent / "submission.csv"
    stale_sub = cache.parent / ".submission.csv.x7y8z9.tmp"  # an ensemble killed while writing
    stale_sub.write_text("id,class,predicted\n")
    os.utime(stale_sub, (past, past))
    fresh = cache.parent / ".other.csv.abc.tmp"  # another file's temp, or one of a running writer: kept
    fresh.write_text("")
    prepare_cache(root, cache)
    assert not stale.exists()
    write_submission(sub, pd.DataFrame({"id": ["a"], "class": [CLASSES[0]]}), [""])
    assert not stale_sub.exists() and fresh.exists() and sub.is_file()
    from kaggle_kit.utils import remove_stale_temps

    young = cache.parent / ".z.tmp"
    young.write_text("")  # created after this process started: never touched
    assert remove_stale_temps(cache.parent) == 0 and young.exists()


# ------------------------------------------------------------------ 11. a read-only --out is not replaced (issue 32)
@pytest.fixture
def as_nobody():
    """Run the block with the effective uid of ``nobody`` when root (permissions do not bind root), in a
    fresh world-writable folder under /tmp; yields that folder."""
    import contextlib
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    os.chmod(folder, 0o777)

    @contextlib.contextmanager
    def block():
        if os.geteuid() != 0:
            yield
            return
        os.seteuid(65534)
        try:
            yield
        finally:
            os.seteuid(0)

    yield folder, block
    shutil.rmtree(folder, ignore_errors=True)


def test_existing_out_without_write_permission_is_refused_like_cp(as_nobody):
    """A 0444 submission is neither replaced nor re-moded; ``cp`` onto it fails the same way; the error
    is one line naming the file."""
    from kaggle_kit.cli import format_error

    folder, block = as_nobody
    out = folder / "submission.csv"
    rows = pd.DataFrame({"id": ["a"], "class": ["stomach"]})
    with block():
        out.write_text("id,class,predicted\nmine,stomach,\n")
        os.chmod(out, 0o444)
        (folder / "src.csv").write_text("x\n")
        cp = subprocess.run(["cp", str(folder / "src.csv"), str(out)], capture_output=True, text=True)
        with pytest.raises(PermissionError) as info:
            write_submission(out, rows, [""])
        with pytest.raises(PermissionError):
            atomic_write_text(out, "other")
    assert cp.returncode != 0 and "Permission denied" in cp.stderr  # what cp does, as the same user
    assert out.read_text() == "id,class,predicted\nmine,stomach,\n" and out.stat().st_mode & 0o777 == 0o444
    assert list(folder.glob(".submission.csv.*.tmp")) == []
    line = format_error(info.value)
    assert line.startswith("error: permission denied") and str(out) in line and "write elsewhere" in line


def test_replacing_a_writable_out_keeps_its_mode(tmp_path):
    """Like ``cp`` onto an existing file: the new content keeps the old file's mode (not 0666 & ~umask)."""
    out = tmp_path / "submission.csv"
    out.write_text("old\n")
    os.chmod(out, 0o640)
    write_submission(out, pd.DataFrame({"id": ["a"], "class": ["stomach"]}), [""])
    assert out.read_text() == "id,class,predicted\na,stomach,\n" and out.stat().st_mode & 0o777 == 0o640
