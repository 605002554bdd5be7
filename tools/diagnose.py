"""`python tools/diagnose.py ...` is `kk diagnose ...` (the code: kaggle_kit/commands/diagnose.py)."""
from kaggle_kit.commands import shim

if __name__ == "__main__":
    shim("diagnose")
