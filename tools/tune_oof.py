"""`python tools/tune_oof.py ...` is `kk tune ...` (the code: kaggle_kit/commands/tune_oof.py)."""
from kaggle_kit.commands import shim

if __name__ == "__main__":
    shim("tune")
