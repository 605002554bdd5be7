"""What ``kk score`` loads: no module its scoring path does not use, no kernel the chosen metric never
calls, and ``kk score --warmup`` compiling every kernel signature that real scoring runs use (so the first
run after ``make install`` loads compiled code instead of compiling it)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from kaggle_kit.data.synthetic import write_scoring_folder

# modules the scoring path must not import (plots only with --plots; the scipy parts the metric replaced)
HEAVY = ("torch", "torchvision", "matplotlib", "cv2", "PIL", "sklearn", "tqdm", "scipy.ndimage", "scipy.spatial")


def _write_root(root, case_days):
    return write_scoring_folder(root, case_days, pred_name="sub.csv")


def _organs(shape):
    d, h, w = shape
    truth = np.zeros(shape, np.uint8)
    truth[d // 6:d // 2, h // 8:h // 3, w // 7:w // 3] |= 1
    truth[d // 3:5 * d // 6, h // 2:3 * h // 4, w // 2:7 * w // 8] |= 2
    truth[1:d // 3, 3 * h // 4:h - 2, 2:w // 6] |= 4
    return truth, np.roll(truth, 2, axis=2)


def _fragmented(shape, rng):
    """Large truth blobs against a prediction of scattered specks: the run search gives up, the EDT answers."""
    d, h, w = shape
    truth = np.zeros(shape, np.uint8)
    truth[2:d - 2, 5:h - 5, 5:w - 6] = 1
    truth[d // 2:, h // 2:, w // 2:] |= 2
    truth[:d // 2, :h // 2, w // 2:] |= 4
    pred = np.zeros(shape, np.uint8)
    for c in range(3):
        pred |= (rng.random(shape) < 0.01).astype(np.uint8) << c
    return truth, pred


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("score_root")
    t1, p1 = _organs((24, 40, 56))
    t2, p2 = _fragmented((24, 40, 56), rng)
    _write_root(out, [(7, 1, t1, p1), (7, 2, t2, p2)])
    return out


@pytest.fixture(scope="module")
def one_root(tmp_path_factory):
    """One case-day (what the whole-tool benchmark times; several would show a progress bar)."""
    out = tmp_path_factory.mktemp("score_one")
    t, p = _organs((24, 40, 56))
    _write_root(out, [(3, 5, t, p)])
    return out


_DUMP = """
import atexit, json, sys
_OUT = sys.argv[1]
def _dump():
    from kaggle_kit.metric.score_csv import compiled_kernels
    json.dump({"modules": sorted(sys.modules), "kernels": compiled_kernels()}, open(_OUT, "w"))
atexit.register(_dump)
"""


def _run_kk(tmp_path, args):
    out = tmp_path / "dump.json"
    code = _DUMP + f"sys.argv = ['kk', *{list(map(str, args))!r}]\nfrom kaggle_kit.commands import entry\nentry()\n"
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text()), r.stdout


@pytest.mark.parametrize("metric", ["3d", "mlebench"])
def test_score_imports_only_what_it_uses(one_root, tmp_path, metric):
    root = one_root
    dump, stdout = _run_kk(tmp_path, ["score", "--truth", root / "train.csv", "--pred", root / "sub.csv",
                                      "--data-root", root, "--metric", metric])
    assert json.loads(stdout.strip().splitlines()[-1])["n_case_days"] == 1  # it did score
    mods = set(dump["modules"])
    loaded = [m for m in HEAVY if m in mods]
    assert not loaded, f"kk score --metric {metric} imported {loaded}"
    kernels = set(dump["kernels"])
    # the 3D metrics never run the per-slice kernel nor the ORed counts of Scorer('mlebench')
    assert "kernels._scan" in kernels and "kernels._directed_runs" in kernels
    assert not kernels & {"kernels._slices_directed", "mlebench._counts_any"}, kernels


_REAL_RUNS = """
import contextlib, io, json, sys
import numpy as np
from kaggle_kit.commands.score import main
from kaggle_kit.metric.score_csv import compiled_kernels
from kaggle_kit.metric.scorer import Scorer
root = sys.argv[2]
for metric in ("3d", "3d_directed", "2d", "3d_unit_cube", "3d+empty_dice_one", "mlebench"):
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["--truth", root + "/train.csv", "--pred", root + "/sub.csv", "--data-root", root,
                     "--metric", metric]) == 0
rng = np.random.default_rng(1)  # Scorer('mlebench') (the tuner's path): counts and ORed volumes in one pass
t = np.zeros((20, 36, 44), np.uint8); t[3:9, 4:20, 5:30] = 3
p = (rng.random(t.shape) < 0.01).astype(np.uint8) | np.roll(t, 1, 2)
Scorer("mlebench").add("c", p, t)
json.dump(compiled_kernels(), open(sys.argv[1], "w"))
"""


def test_warmup_covers_the_signatures_real_runs_use(root, tmp_path):
    """Every kernel signature real scoring runs dispatch (every metric of kk score, both Hausdorff methods,
    both EDT buffer dtypes) is one that ``warm_kernels`` compiles: run after the warm-up, they compile
    nothing. Each side runs in its own fresh process, so neither sees the other's dispatches."""
    warm_out, real_out = tmp_path / "warm.json", tmp_path / "real.json"
    code = ("import json, sys\nfrom kaggle_kit.metric.score_csv import warm_kernels\n"
            "json.dump(warm_kernels(), open(sys.argv[1], 'w'))\n")
    for args in ([sys.executable, "-c", code, str(warm_out)],
                 [sys.executable, "-c", _REAL_RUNS, str(real_out), str(root)]):
        r = subprocess.run(args, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    warm, real = json.loads(warm_out.read_text()), json.loads(real_out.read_text())
    # the real runs took the data-dependent branches the warm-up forces (else this test proves little)
    edt = real.get("kernels._directed_edt", [])
    assert any("int32, 3" in s for s in edt) and any("int64, 3" in s for s in edt), edt
    assert {"kernels._scan", "kernels._directed_runs", "kernels._slices_directed",
            "mlebench._counts_any"} <= set(real)
    missing = {k: sorted(set(v) - set(warm.get(k, []))) for k, v in real.items()}
    missing = {k: v for k, v in missing.items() if v}
    assert not missing, f"signatures real runs use that the warm-up does not compile: {missing}"


def test_warmup_flag_scores_nothing_and_reports(tmp_path):
    out = tmp_path / "summary.json"
    r = subprocess.run([sys.executable, "-m", "kaggle_kit", "score", "--warmup", "--summary-json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary == json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["warmed"]["kernels._scan"] >= 1 and summary["warmed"]["kernels._directed_edt"] >= 2


def test_score_without_truth_or_pred_is_a_usage_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "kaggle_kit", "score", "--pred", str(tmp_path / "x.csv")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--truth" in r.stderr
