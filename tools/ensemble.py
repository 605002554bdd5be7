"""`python tools/ensemble.py ...` is `kk ensemble ...` (the code: kaggle_kit/commands/ensemble.py)."""
from kaggle_kit.commands import shim

if __name__ == "__main__":
    shim("ensemble")
