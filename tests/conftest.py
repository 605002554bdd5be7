import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("KAGGLE_KIT_NO_PROGRESS", "1")
os.environ.setdefault("KAGGLE_KIT_HOME", str(ROOT / ".pytest_cache" / "kaggle_kit_home"))


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic competition folder (all four geometries, shrunk 4x), built once per session."""
    from kaggle_kit.data.synthetic import make_synthetic

    out = tmp_path_factory.mktemp("synth")
    make_synthetic(out, train_cases=5, test_cases=2, seed=123, size_scale=0.25, max_days=2)
    return out


@pytest.fixture(scope="session")
def synth_cache(synth_root, tmp_path_factory) -> Path:
    from kaggle_kit.data.cache import prepare_cache

    cache = tmp_path_factory.mktemp("cache")
    prepare_cache(synth_root, cache, n_folds=5, seed=0)
    return cache


def run_tool(script: str, *args, check=True, env=None):
    """Run tools/<script> in a subprocess with this interpreter; returns CompletedProcess."""
    import subprocess

    e = dict(os.environ, **(env or {}))
    p = subprocess.run([sys.executable, str(ROOT / "tools" / script), *map(str, args)],
                       capture_output=True, text=True, env=e, cwd=ROOT)
    if check and p.returncode != 0:
        raise AssertionError(f"{script} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p
