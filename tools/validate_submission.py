"""`python tools/validate_submission.py ...` is `kk validate ...` (the code: kaggle_kit/commands/validate_submission.py)."""
from kaggle_kit.commands import shim

if __name__ == "__main__":
    shim("validate")
