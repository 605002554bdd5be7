"""`python tools/train.py ...` is `kk train ...` (the code: kaggle_kit/commands/train.py)."""
from kaggle_kit.commands import shim

if __name__ == "__main__":
    shim("train")
