"""`python tools/bundle.py ...` is `kk bundle ...` (the code: kaggle_kit/commands/bundle.py)."""
from kaggle_kit.commands import shim

if __name__ == "__main__":
    shim("bundle")
