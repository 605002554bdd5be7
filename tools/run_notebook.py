"""`python tools/run_notebook.py ...` is `kk notebook ...` (the code: kaggle_kit/commands/run_notebook.py)."""
from kaggle_kit.commands import shim

if __name__ == "__main__":
    shim("notebook")
