"""`python tools/fetch_weights.py ...` is `kk weights ...` (the code: kaggle_kit/commands/fetch_weights.py)."""
from kaggle_kit.commands import shim

if __name__ == "__main__":
    shim("weights")
