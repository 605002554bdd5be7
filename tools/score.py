"""`python tools/score.py ...` is `kk score ...` (the code: kaggle_kit/commands/score.py)."""
from kaggle_kit.commands import shim

if __name__ == "__main__":
    shim("score")
