"""`python tools/predict.py ...` is `kk predict ...` (the code: kaggle_kit/commands/predict.py)."""
from kaggle_kit.commands import shim

if __name__ == "__main__":
    shim("predict")
