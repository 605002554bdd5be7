"""`python tools/run_all.py ...` is `kk run ...` (the code: kaggle_kit/commands/run_all.py)."""
from kaggle_kit.commands import shim

if __name__ == "__main__":
    shim("run")
