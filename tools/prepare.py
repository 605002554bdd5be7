"""`python tools/prepare.py ...` is `kk prepare ...` (the code: kaggle_kit/commands/prepare.py)."""
from kaggle_kit.commands import shim

if __name__ == "__main__":
    shim("prepare")
